import { HexrError, parseSpiffeId } from "@hexr/core";
import { constants, createPublicKey, verify, type KeyObject } from "node:crypto";

/** JWT-SVID signing keys of one trust domain, by key id. */
export interface JwtBundle {
  trustDomain: string;
  keys: Map<string, KeyObject>;
}

export interface JwtSvid {
  spiffeId: string;
  token: string;
  audience: string[];
  /** Epoch ms of `exp`. */
  expiresAt: number;
  /** Epoch ms of `iat` when present. */
  issuedAt?: number;
  hint: string;
}

export interface ValidatedJwtSvid {
  spiffeId: string;
  claims: Record<string, unknown>;
  expiresAt: number;
}

const invalid = (message: string) =>
  new HexrError("identity.invalid_jwt_svid", `invalid JWT-SVID: ${message}`, { kind: "unauthenticated" });

/** JWT-SVID spec 2.1: only these; `none` and HMAC are never accepted. */
const ALGS: Record<string, { hash: string; key: "ec" | "rsa" | "pss"; curve?: string; sigBytes?: number }> = {
  ES256: { hash: "sha256", key: "ec", curve: "prime256v1", sigBytes: 64 },
  ES384: { hash: "sha384", key: "ec", curve: "secp384r1", sigBytes: 96 },
  ES512: { hash: "sha512", key: "ec", curve: "secp521r1", sigBytes: 132 },
  RS256: { hash: "sha256", key: "rsa" },
  RS384: { hash: "sha384", key: "rsa" },
  RS512: { hash: "sha512", key: "rsa" },
  PS256: { hash: "sha256", key: "pss" },
  PS384: { hash: "sha384", key: "pss" },
  PS512: { hash: "sha512", key: "pss" },
};
const ALLOWED_HEADER = new Set(["alg", "kid", "typ"]);

/** A JWKS (from FetchJWTBundles) → verification keys; keys without `kid` or for other uses are skipped. */
export function parseJwtBundle(trustDomain: string, jwks: Buffer | string): JwtBundle {
  let doc: { keys?: unknown };
  try {
    doc = JSON.parse(typeof jwks === "string" ? jwks : jwks.toString("utf8")) as { keys?: unknown };
  } catch {
    throw new HexrError("identity.invalid_bundle", `the JWT bundle of ${trustDomain} is not JSON`, { kind: "upstream" });
  }
  if (!Array.isArray(doc.keys))
    throw new HexrError("identity.invalid_bundle", `the JWT bundle of ${trustDomain} has no keys array`, { kind: "upstream" });
  const keys = new Map<string, KeyObject>();
  for (const jwk of doc.keys as Array<Record<string, unknown>>) {
    if (typeof jwk !== "object" || jwk === null || typeof jwk["kid"] !== "string") continue;
    if (jwk["use"] !== undefined && jwk["use"] !== "jwt-svid") continue;
    try {
      keys.set(jwk["kid"], createPublicKey({ key: jwk as never, format: "jwk" }));
    } catch {
      // A key we cannot use verifies nothing; the others still work.
    }
  }
  return { trustDomain, keys };
}

function b64json(part: string, what: string): Record<string, unknown> {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) throw invalid(`${what} is not base64url`);
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    throw invalid(`${what} is not JSON`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw invalid(`${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

/** Reads header and claims without verifying anything (for expiry bookkeeping of our own tokens). */
export function decodeJwtUnverified(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const parts = token.split(".");
  if (parts.length !== 3) throw invalid("not a JWS compact serialization");
  return { header: b64json(parts[0]!, "header"), claims: b64json(parts[1]!, "payload") };
}

export function audienceOf(claims: Record<string, unknown>): string[] {
  const aud = claims["aud"];
  if (typeof aud === "string") return [aud];
  if (Array.isArray(aud) && aud.every((a) => typeof a === "string")) return aud as string[];
  return [];
}

/**
 * Validates a JWT-SVID locally as the JWT-SVID spec requires: allowed `alg` only, only alg/kid/typ in
 * the header, the key from the bundle of the subject's trust domain, signature, `aud` containing
 * our audience, `exp` in the future (and `nbf` in the past, when present).
 */
export function validateJwtSvid(
  token: string,
  audience: string,
  bundles: ReadonlyMap<string, JwtBundle>,
  { now = Date.now(), leewaySeconds = 30 }: { now?: number; leewaySeconds?: number } = {},
): ValidatedJwtSvid {
  if (typeof token !== "string" || token.length > 16 * 1024) throw invalid("missing or too large");
  const parts = token.split(".");
  const { header, claims } = decodeJwtUnverified(token);
  for (const k of Object.keys(header)) if (!ALLOWED_HEADER.has(k)) throw invalid(`header parameter '${k}' is not allowed`);
  const alg = typeof header["alg"] === "string" ? header["alg"] : "";
  const spec = Object.hasOwn(ALGS, alg) ? ALGS[alg] : undefined;
  if (!spec) throw invalid(`algorithm '${alg.slice(0, 20)}' is not allowed`);
  if (header["typ"] !== undefined && header["typ"] !== "JWT" && header["typ"] !== "JOSE")
    throw invalid("typ must be JWT or JOSE");
  if (typeof header["kid"] !== "string" || !header["kid"]) throw invalid("the header has no key id");
  if (!parts[2]) throw invalid("no signature");
  if (typeof claims["sub"] !== "string") throw invalid("no subject");
  let trustDomain: string;
  try {
    trustDomain = parseSpiffeId(claims["sub"]).trustDomain;
  } catch {
    throw invalid("the subject is not a SPIFFE ID");
  }
  const bundle = bundles.get(trustDomain);
  if (!bundle) throw invalid(`no bundle for trust domain ${trustDomain}`);
  const key = bundle.keys.get(header["kid"]);
  if (!key) throw invalid(`unknown key id ${header["kid"].slice(0, 64)}`);
  checkKey(key, spec);
  const signature = Buffer.from(parts[2], "base64url");
  const input = Buffer.from(`${parts[0]}.${parts[1]}`, "ascii");
  let ok: boolean;
  if (spec.key === "ec") {
    ok = signature.length === spec.sigBytes && verify(spec.hash, input, { key, dsaEncoding: "ieee-p1363" }, signature);
  } else if (spec.key === "pss") {
    ok = verify(
      spec.hash,
      input,
      { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
      signature,
    );
  } else {
    ok = verify(spec.hash, input, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
  }
  if (!ok) throw invalid("bad signature");
  const aud = audienceOf(claims);
  if (aud.length === 0) throw invalid("no audience");
  if (!aud.includes(audience)) throw invalid(`audience does not include ${audience.slice(0, 200)}`);
  const exp = claims["exp"];
  if (typeof exp !== "number" || !Number.isFinite(exp)) throw invalid("no expiry");
  if (exp * 1000 + leewaySeconds * 1000 <= now) throw invalid("expired");
  const nbf = claims["nbf"];
  if (nbf !== undefined && (typeof nbf !== "number" || nbf * 1000 - leewaySeconds * 1000 > now)) throw invalid("not valid yet");
  return { spiffeId: parseSpiffeId(claims["sub"]).toString(), claims, expiresAt: exp * 1000 };
}

function checkKey(key: KeyObject, spec: (typeof ALGS)[string]): void {
  const type = key.asymmetricKeyType;
  if (spec.key === "ec") {
    if (type !== "ec" || key.asymmetricKeyDetails?.namedCurve !== spec.curve) throw invalid("the key does not fit the algorithm");
  } else if (spec.key === "pss") {
    if (type !== "rsa" && type !== "rsa-pss") throw invalid("the key does not fit the algorithm");
  } else if (type !== "rsa") throw invalid("the key does not fit the algorithm");
  if (type !== "ec" && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048)
    throw invalid("the RSA key is shorter than 2048 bits");
}
