/**
 * Agent Cards, generated from the agent's metadata for both protocol versions, naming the agent's
 * SPIFFE ID, and signed (A2A §8.4: JWS over the RFC 8785 canonical card) with the key of the
 * agent's X.509-SVID. The signature's protected header carries the SVID chain (`x5c`), so a caller
 * can check that the card was signed by the identity it connected to: verify the chain against the
 * trust bundle, compare the leaf's SPIFFE ID, then the signature.
 */
import { HexrError } from "@hexr/core";
import { createHash, createPrivateKey, createPublicKey, sign, verify, X509Certificate, type KeyObject } from "node:crypto";
import { cardSigningPayload } from "./jcs.js";
import type { ProtocolVersion } from "./service.js";

/** The `capabilities.extensions` entry that names the agent's SPIFFE identity. */
export const SPIFFE_EXTENSION_URI = "https://hexr.dev/a2a/extensions/spiffe-identity/v1";

export interface AgentSkillInput {
  id: string;
  name: string;
  description: string;
  tags?: string[];
  examples?: string[];
  inputModes?: string[];
  outputModes?: string[];
}

/** What `hexrAgent({...})` knows about the agent. */
export interface AgentMetadata {
  name: string;
  description: string;
  version?: string;
  skills?: AgentSkillInput[];
  /** Skills shown only in the extended card, to authenticated callers. */
  extendedSkills?: AgentSkillInput[];
  streaming?: boolean;
  provider?: { organization: string; url: string };
  documentationUrl?: string;
  iconUrl?: string;
  defaultInputModes?: string[];
  defaultOutputModes?: string[];
}

export interface CardOptions {
  metadata: AgentMetadata;
  /** The interface URL callers post JSON-RPC to. */
  url: string;
  spiffeId?: string;
  /** How callers authenticate at `url`: mTLS with an SVID (the mesh) or a bearer token (the ingress). */
  security: "mtls" | "bearer" | "none";
  extended?: boolean;
}

const DEFAULT_MODES = ["text/plain", "application/json"];

function skills(opts: CardOptions): Array<Record<string, unknown>> {
  const list = [...(opts.metadata.skills ?? []), ...(opts.extended ? (opts.metadata.extendedSkills ?? []) : [])];
  if (list.length === 0) {
    // A card must list skills; an agent that declared none offers its one handler.
    list.push({ id: "default", name: opts.metadata.name, description: opts.metadata.description, tags: ["hexr"] });
  }
  return list.map((s) => ({
    id: s.id,
    name: s.name,
    description: s.description,
    tags: s.tags?.length ? s.tags : ["hexr"],
    ...(s.examples?.length ? { examples: s.examples } : {}),
    ...(s.inputModes?.length ? { inputModes: s.inputModes } : {}),
    ...(s.outputModes?.length ? { outputModes: s.outputModes } : {}),
  }));
}

function spiffeExtension(spiffeId: string): Record<string, unknown> {
  return {
    uri: SPIFFE_EXTENSION_URI,
    description: "The SPIFFE identity this agent proves with its X.509-SVID (mTLS) and signs this card with.",
    params: { spiffeId, trustDomain: new URL(spiffeId).host },
  };
}

const hasExtended = (m: AgentMetadata) => (m.extendedSkills?.length ?? 0) > 0;

/** The v1.0 card (ProtoJSON). Never contains default values, so every canonicalizer agrees on it. */
export function buildCardV1(opts: CardOptions): Record<string, unknown> {
  const m = opts.metadata;
  const card: Record<string, unknown> = {
    name: m.name,
    description: m.description,
    supportedInterfaces: [
      { url: opts.url, protocolBinding: "JSONRPC", protocolVersion: "1.0" },
      { url: opts.url, protocolBinding: "JSONRPC", protocolVersion: "0.3" },
    ],
    version: m.version ?? "1.0.0",
    capabilities: {
      streaming: m.streaming !== false,
      pushNotifications: false,
      extendedAgentCard: hasExtended(m),
      ...(opts.spiffeId ? { extensions: [spiffeExtension(opts.spiffeId)] } : {}),
    },
    defaultInputModes: m.defaultInputModes ?? DEFAULT_MODES,
    defaultOutputModes: m.defaultOutputModes ?? DEFAULT_MODES,
    skills: skills(opts),
  };
  if (m.provider) card["provider"] = m.provider;
  if (m.documentationUrl) card["documentationUrl"] = m.documentationUrl;
  if (m.iconUrl) card["iconUrl"] = m.iconUrl;
  if (opts.security === "mtls") {
    card["securitySchemes"] = {
      "spiffe-mtls": {
        mtlsSecurityScheme: {
          description: opts.spiffeId
            ? `Mutual TLS with an X.509-SVID of the same trust domain; this agent presents ${opts.spiffeId}`
            : "Mutual TLS with an X.509-SVID of the same trust domain",
        },
      },
    };
    card["securityRequirements"] = [{ schemes: { "spiffe-mtls": { list: [] } } }];
  } else if (opts.security === "bearer") {
    card["securitySchemes"] = {
      "hexr-bearer": {
        httpAuthSecurityScheme: {
          scheme: "Bearer",
          bearerFormat: "Hexr API key or JWT-SVID",
          description: "Authorization: Bearer <Hexr API key or JWT-SVID for this platform>",
        },
      },
    };
    card["securityRequirements"] = [{ schemes: { "hexr-bearer": { list: [] } } }];
  }
  return card;
}

/**
 * The v0.3 card, for clients that send no `A2A-Version`: v0.3 top-level fields plus the v1.0
 * `supportedInterfaces`, so a v1.0 client that fetched it without the header still picks 1.0.
 */
export function buildCardV03(opts: CardOptions): Record<string, unknown> {
  const m = opts.metadata;
  const card: Record<string, unknown> = {
    protocolVersion: "0.3.0",
    name: m.name,
    description: m.description,
    url: opts.url,
    preferredTransport: "JSONRPC",
    version: m.version ?? "1.0.0",
    capabilities: {
      streaming: m.streaming !== false,
      pushNotifications: false,
      stateTransitionHistory: false,
      ...(opts.spiffeId ? { extensions: [spiffeExtension(opts.spiffeId)] } : {}),
    },
    defaultInputModes: m.defaultInputModes ?? DEFAULT_MODES,
    defaultOutputModes: m.defaultOutputModes ?? DEFAULT_MODES,
    skills: skills(opts),
    supportsAuthenticatedExtendedCard: hasExtended(m),
    supportedInterfaces: [
      { url: opts.url, protocolBinding: "JSONRPC", protocolVersion: "1.0" },
      { url: opts.url, protocolBinding: "JSONRPC", protocolVersion: "0.3" },
    ],
  };
  if (m.provider) card["provider"] = m.provider;
  if (m.documentationUrl) card["documentationUrl"] = m.documentationUrl;
  if (m.iconUrl) card["iconUrl"] = m.iconUrl;
  if (opts.security === "mtls") {
    card["securitySchemes"] = {
      "spiffe-mtls": { type: "mutualTLS", description: "Mutual TLS with an X.509-SVID of the same trust domain" },
    };
    card["security"] = [{ "spiffe-mtls": [] }];
  } else if (opts.security === "bearer") {
    card["securitySchemes"] = {
      "hexr-bearer": { type: "http", scheme: "bearer", bearerFormat: "Hexr API key or JWT-SVID" },
    };
    card["security"] = [{ "hexr-bearer": [] }];
  }
  return card;
}

export const buildCard = (version: ProtocolVersion, opts: CardOptions) =>
  version === "1.0" ? buildCardV1(opts) : buildCardV03(opts);

// ---- signing ----

export interface CardSigner {
  /** JWK thumbprint (RFC 7638) of the signing key. */
  kid: string;
  alg: "ES256" | "ES384" | "RS256";
  /** The SVID chain, leaf first, standard base64 DER (the JWS `x5c` header). */
  x5c: string[];
  sign(data: Buffer): Buffer;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

function jwkThumbprint(key: KeyObject): string {
  const jwk = key.export({ format: "jwk" }) as Record<string, string>;
  const members =
    jwk["kty"] === "EC" ? { crv: jwk["crv"], kty: "EC", x: jwk["x"], y: jwk["y"] } : { e: jwk["e"], kty: "RSA", n: jwk["n"] };
  return createHash("sha256").update(JSON.stringify(members)).digest("base64url");
}

/** An X.509-SVID: as the Workload API hands it out (DER chain + PKCS#8 key), or parsed. */
export type SvidKeyMaterial =
  { certChainDer: Buffer[]; privateKeyPkcs8Der: Buffer } | { certificates: X509Certificate[]; privateKey: KeyObject };

/** A card signer holding the SVID's key, whose chain goes into the signature header. */
export function signerFromSvid(svid: SvidKeyMaterial): CardSigner {
  const key =
    "privateKey" in svid ? svid.privateKey : createPrivateKey({ key: svid.privateKeyPkcs8Der, format: "der", type: "pkcs8" });
  const chain = "certificates" in svid ? svid.certificates.map((c) => c.raw) : svid.certChainDer;
  const pub = createPublicKey(key);
  const details = key.asymmetricKeyDetails ?? {};
  let alg: CardSigner["alg"];
  if (key.asymmetricKeyType === "ec") {
    if (details.namedCurve === "prime256v1") alg = "ES256";
    else if (details.namedCurve === "secp384r1") alg = "ES384";
    else throw new HexrError("a2a.card_key_unsupported", `SVID key curve ${details.namedCurve} cannot sign an agent card`);
  } else if (key.asymmetricKeyType === "rsa") alg = "RS256";
  else throw new HexrError("a2a.card_key_unsupported", `SVID key type ${key.asymmetricKeyType} cannot sign an agent card`);
  const hash = alg === "ES384" ? "sha384" : "sha256";
  return {
    kid: jwkThumbprint(pub),
    alg,
    x5c: chain.map((d) => d.toString("base64")),
    sign: (data) => sign(hash, data, alg === "RS256" ? key : { key, dsaEncoding: "ieee-p1363" }),
  };
}

/** Returns the card with one JWS signature (flattened: `protected` + `signature`) by `signer`. */
export function signCard(card: Record<string, unknown>, signer: CardSigner): Record<string, unknown> {
  const header = { alg: signer.alg, typ: "JOSE", kid: signer.kid, x5c: signer.x5c };
  const protectedB64 = b64url(JSON.stringify(header));
  const payloadB64 = b64url(cardSigningPayload(card));
  const signature = b64url(signer.sign(Buffer.from(`${protectedB64}.${payloadB64}`)));
  const { signatures: _old, ...rest } = card;
  return { ...rest, signatures: [{ protected: protectedB64, signature }] };
}

export interface VerifiedCard {
  spiffeId: string;
  kid: string;
}

export interface VerifyCardOptions {
  /** X.509 authorities of the trust domain (the SPIFFE bundle), DER or PEM. */
  trustAnchors: Array<Buffer | string>;
  /** When given, the signing SVID must carry this SPIFFE ID (the peer the caller connected to). */
  expectedSpiffeId?: string;
  clock?: () => number;
}

function spiffeIdOf(cert: X509Certificate): string | undefined {
  const uris = (cert.subjectAltName ?? "")
    .split(/,\s*/)
    .filter((s) => s.startsWith("URI:"))
    .map((s) => s.slice(4));
  return uris.length === 1 && uris[0]!.startsWith("spiffe://") ? uris[0] : undefined;
}

function validAt(cert: X509Certificate, now: number): boolean {
  return Date.parse(cert.validFrom) <= now && now <= Date.parse(cert.validTo);
}

/**
 * Verifies that one of the card's signatures was made by an SVID chaining to the trust anchors
 * (and carrying `expectedSpiffeId`, when given). Throws `a2a.card_signature_invalid` otherwise.
 */
export function verifyCardSignature(card: Record<string, unknown>, opts: VerifyCardOptions): VerifiedCard {
  const now = (opts.clock ?? Date.now)();
  const anchors = opts.trustAnchors.map((a) => new X509Certificate(a));
  const sigs = Array.isArray(card["signatures"]) ? (card["signatures"] as Array<Record<string, unknown>>) : [];
  if (sigs.length === 0)
    throw new HexrError("a2a.card_unsigned", "the agent card carries no signature", { kind: "permission_denied" });
  const payloadB64 = b64url(cardSigningPayload(card));
  const reasons: string[] = [];
  for (const s of sigs) {
    try {
      if (typeof s["protected"] !== "string" || typeof s["signature"] !== "string") throw new Error("malformed signature entry");
      const header = JSON.parse(Buffer.from(s["protected"], "base64url").toString("utf8")) as Record<string, unknown>;
      const alg = header["alg"];
      if (alg !== "ES256" && alg !== "ES384" && alg !== "RS256") throw new Error(`algorithm ${String(alg)} is not accepted`);
      if (typeof header["kid"] !== "string") throw new Error("kid missing");
      const x5c = header["x5c"];
      if (!Array.isArray(x5c) || x5c.length === 0 || !x5c.every((c) => typeof c === "string"))
        throw new Error("x5c chain missing");
      const chain = (x5c as string[]).map((c) => new X509Certificate(Buffer.from(c, "base64")));
      const leaf = chain[0]!;
      if (leaf.ca) throw new Error("the signing certificate is a CA");
      let cur = leaf;
      if (!validAt(cur, now)) throw new Error("the signing SVID is expired or not yet valid");
      for (const next of chain.slice(1)) {
        if (!next.ca || !cur.checkIssued(next) || !cur.verify(next.publicKey) || !validAt(next, now))
          throw new Error("broken certificate chain");
        cur = next;
      }
      const anchored = anchors.some(
        (a) => a.fingerprint256 === cur.fingerprint256 || (cur.checkIssued(a) && cur.verify(a.publicKey) && validAt(a, now)),
      );
      if (!anchored) throw new Error("the chain does not lead to the trust bundle");
      const spiffeId = spiffeIdOf(leaf);
      if (!spiffeId) throw new Error("the signing certificate is not an SVID");
      if (opts.expectedSpiffeId && spiffeId !== opts.expectedSpiffeId)
        throw new Error(`signed by ${spiffeId}, expected ${opts.expectedSpiffeId}`);
      const data = Buffer.from(`${s["protected"]}.${payloadB64}`);
      const sig = Buffer.from(s["signature"], "base64url");
      const hash = alg === "ES384" ? "sha384" : "sha256";
      const ok = verify(hash, data, alg === "RS256" ? leaf.publicKey : { key: leaf.publicKey, dsaEncoding: "ieee-p1363" }, sig);
      if (!ok) throw new Error("signature does not match the card");
      return { spiffeId, kid: header["kid"] };
    } catch (err) {
      reasons.push((err as Error).message);
    }
  }
  throw new HexrError("a2a.card_signature_invalid", `no valid signature on the agent card: ${reasons.join("; ")}`, {
    kind: "permission_denied",
  });
}
