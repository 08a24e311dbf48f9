/**
 * Checks that an Agent Card was signed by the identity the caller expects (A2A §8.4): the JWS
 * signature covers the RFC 8785 canonical card without default values and without `signatures`;
 * the protected header's `x5c` carries the signer's X.509-SVID, which must chain to the trust
 * bundle and name the expected SPIFFE ID.
 */
import { HexrError } from "@hexr/core";
import { verify, X509Certificate } from "node:crypto";

function canonical(v: unknown): string {
  if (v === null || typeof v === "boolean" || typeof v === "number" || typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
    .join(",")}}`;
}

function withoutDefaults(v: unknown): unknown {
  if (v === "" || v === null || v === undefined) return undefined;
  if (Array.isArray(v)) {
    const a = v.map(withoutDefaults).filter((x) => x !== undefined);
    return a.length ? a : undefined;
  }
  if (typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const c = withoutDefaults(x);
      if (c !== undefined) out[k] = c;
    }
    return Object.keys(out).length ? out : undefined;
  }
  return v;
}

export interface VerifyAgentCardOptions {
  /** X.509 authorities of the trust domain (e.g. `identity.x509Bundle().authorities`). */
  trustAnchors: Array<X509Certificate | Buffer | string>;
  /** The SPIFFE ID the card must be signed by. */
  expectedSpiffeId?: string;
  now?: number;
}

const validAt = (c: X509Certificate, now: number) => Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo);

/** Returns the signer's SPIFFE ID; throws `a2a.card_signature_invalid` when no signature holds. */
export function verifyAgentCard(card: Record<string, unknown>, opts: VerifyAgentCardOptions): { spiffeId: string } {
  const now = opts.now ?? Date.now();
  const anchors = opts.trustAnchors.map((a) => (a instanceof X509Certificate ? a : new X509Certificate(a)));
  const { signatures, ...rest } = card;
  const payload = Buffer.from(canonical(withoutDefaults(rest) ?? {})).toString("base64url");
  const reasons: string[] = [];
  for (const s of Array.isArray(signatures) ? (signatures as Array<Record<string, unknown>>) : []) {
    try {
      const header = JSON.parse(Buffer.from(String(s["protected"]), "base64url").toString("utf8")) as Record<string, unknown>;
      const alg = header["alg"];
      if (alg !== "ES256" && alg !== "ES384" && alg !== "RS256") throw new Error(`algorithm ${String(alg)} not accepted`);
      const chain = ((header["x5c"] as string[] | undefined) ?? []).map((c) => new X509Certificate(Buffer.from(c, "base64")));
      const leaf = chain[0];
      if (!leaf || leaf.ca || !validAt(leaf, now)) throw new Error("no valid signing SVID in x5c");
      let cur = leaf;
      for (const next of chain.slice(1)) {
        if (!next.ca || !cur.checkIssued(next) || !cur.verify(next.publicKey) || !validAt(next, now))
          throw new Error("broken chain");
        cur = next;
      }
      if (!anchors.some((a) => a.fingerprint256 === cur.fingerprint256 || (cur.checkIssued(a) && cur.verify(a.publicKey)))) {
        throw new Error("the chain does not lead to the trust bundle");
      }
      const uris = (leaf.subjectAltName ?? "").split(/,\s*/).filter((x) => x.startsWith("URI:spiffe://"));
      const spiffeId = uris.length === 1 ? uris[0]!.slice(4) : undefined;
      if (!spiffeId) throw new Error("the signer is not an SVID");
      if (opts.expectedSpiffeId && spiffeId !== opts.expectedSpiffeId)
        throw new Error(`signed by ${spiffeId}, expected ${opts.expectedSpiffeId}`);
      const data = Buffer.from(`${String(s["protected"])}.${payload}`);
      const ok = verify(
        alg === "ES384" ? "sha384" : "sha256",
        data,
        alg === "RS256" ? leaf.publicKey : { key: leaf.publicKey, dsaEncoding: "ieee-p1363" },
        Buffer.from(String(s["signature"]), "base64url"),
      );
      if (!ok) throw new Error("the signature does not match the card");
      return { spiffeId };
    } catch (err) {
      reasons.push((err as Error).message);
    }
  }
  throw new HexrError(
    "a2a.card_signature_invalid",
    `the agent card is not signed by a trusted SVID: ${reasons.join("; ") || "no signatures"}`,
    {
      kind: "permission_denied",
    },
  );
}
