import { HexrError, parseSpiffeId } from "@hexr/core";
import { constants, sign, verify, type KeyObject, type VerifyKeyObjectInput, type VerifyPublicKeyInput } from "node:crypto";

/**
 * JWT-SVID signing and strict validation (spiffe/spiffe standards/JWT-SVID.md) on node:crypto.
 * No JOSE library in the hot path: the header is fixed per key and the checks are the spec's list.
 */

type AlgSpec = { hash: string; kty: "EC"; curve: string; sigLen: number } | { hash: string; kty: "RSA"; pss: boolean };

/** The only algorithms JWT-SVID permits (RFC 7518 §3.3–3.5); `none`, `HS*` and others are rejected. */
export const JWT_SVID_ALGS: Readonly<Record<string, AlgSpec>> = Object.freeze({
  RS256: { hash: "sha256", kty: "RSA", pss: false },
  RS384: { hash: "sha384", kty: "RSA", pss: false },
  RS512: { hash: "sha512", kty: "RSA", pss: false },
  PS256: { hash: "sha256", kty: "RSA", pss: true },
  PS384: { hash: "sha384", kty: "RSA", pss: true },
  PS512: { hash: "sha512", kty: "RSA", pss: true },
  ES256: { hash: "sha256", kty: "EC", curve: "prime256v1", sigLen: 64 },
  ES384: { hash: "sha384", kty: "EC", curve: "secp384r1", sigLen: 96 },
  ES512: { hash: "sha512", kty: "EC", curve: "secp521r1", sigLen: 132 },
});

const ALLOWED_HEADER = new Set(["alg", "kid", "typ"]);
const B64URL = /^[A-Za-z0-9_-]+$/;
const MAX_TOKEN_BYTES = 16 * 1024;

export type JwtRejectReason =
  | "malformed"
  | "unsupported_alg"
  | "bad_header"
  | "unknown_kid"
  | "key_mismatch"
  | "bad_signature"
  | "invalid_subject"
  | "foreign_trust_domain"
  | "missing_audience"
  | "audience_mismatch"
  | "missing_exp"
  | "expired"
  | "not_yet_valid";

const REASON_TEXT: Record<JwtRejectReason, string> = {
  malformed: "not a JWS compact serialization",
  unsupported_alg: "the 'alg' header is not one of RS/PS/ES 256/384/512",
  bad_header: "the JOSE header has parameters other than alg, kid and typ, or a bad typ",
  unknown_kid: "the signing key ('kid') is not in the trust bundle",
  key_mismatch: "the 'alg' does not match the type of the signing key",
  bad_signature: "the signature does not verify",
  invalid_subject: "'sub' is not a SPIFFE ID of a workload",
  foreign_trust_domain: "'sub' is not in this trust domain",
  missing_audience: "'aud' is missing or empty",
  audience_mismatch: "'aud' does not contain the expected audience",
  missing_exp: "'exp' is missing",
  expired: "the token has expired",
  not_yet_valid: "the token is not valid yet ('nbf'/'iat' in the future)",
};

export function jwtRejected(reason: JwtRejectReason): HexrError {
  return new HexrError("identity.jwt_svid_invalid", `JWT-SVID rejected: ${REASON_TEXT[reason]}`, {
    kind: "unauthenticated",
    details: { reason },
  });
}

/** Signs JWT-SVIDs with one ES256 key; the encoded header is computed once. */
export class JwtSigner {
  private readonly headerB64: string;

  constructor(
    readonly kid: string,
    private readonly privateKey: KeyObject,
  ) {
    this.headerB64 = Buffer.from(JSON.stringify({ alg: "ES256", kid, typ: "JWT" })).toString("base64url");
  }

  sign(claims: Record<string, unknown>): string {
    const input = `${this.headerB64}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
    const sig = sign("sha256", Buffer.from(input), { key: this.privateKey, dsaEncoding: "ieee-p1363" });
    return `${input}.${sig.toString("base64url")}`;
  }
}

/** A public key a validator trusts, with the verify inputs prepared once per algorithm. */
export class JwtVerificationKey {
  private readonly prepared = new Map<string, VerifyKeyObjectInput | VerifyPublicKeyInput | null>();
  private readonly kty: string | undefined;
  private readonly curve: string | undefined;

  constructor(
    readonly kid: string,
    readonly key: KeyObject,
  ) {
    this.kty = key.asymmetricKeyType === "ec" ? "EC" : key.asymmetricKeyType === "rsa" ? "RSA" : key.asymmetricKeyType;
    this.curve = key.asymmetricKeyDetails?.namedCurve;
  }

  /** The verify input for `alg`, or null when the key cannot be used with it. */
  inputFor(alg: string, spec: AlgSpec): VerifyKeyObjectInput | VerifyPublicKeyInput | null {
    let p = this.prepared.get(alg);
    if (p !== undefined) return p;
    if (spec.kty !== this.kty) p = null;
    else if (spec.kty === "EC") p = spec.curve === this.curve ? { key: this.key, dsaEncoding: "ieee-p1363" } : null;
    else
      p = spec.pss
        ? { key: this.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
        : { key: this.key };
    this.prepared.set(alg, p);
    return p;
  }
}

export interface JwtValidationInput {
  keys: ReadonlyMap<string, JwtVerificationKey>;
  trustDomain: string;
  /** The validator's audience, or several of which one must be present. */
  audience: string | ReadonlySet<string>;
  now: number;
  leewaySeconds: number;
}

export interface ValidatedJwt {
  spiffeId: string;
  claims: Record<string, unknown>;
  audience: string[];
  expiresAt: number;
}

function decodeJson(part: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    throw jwtRejected("malformed");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw jwtRejected("malformed");
  return v as Record<string, unknown>;
}

/** Validates a JWT-SVID: header allow-list, known key, signature, then sub/aud/exp/nbf. */
export function validateJwt(token: string, input: JwtValidationInput): ValidatedJwt {
  if (typeof token !== "string" || token.length > MAX_TOKEN_BYTES) throw jwtRejected("malformed");
  const d1 = token.indexOf(".");
  const d2 = d1 === -1 ? -1 : token.indexOf(".", d1 + 1);
  if (d1 <= 0 || d2 === -1 || token.indexOf(".", d2 + 1) !== -1) throw jwtRejected("malformed");
  const h = token.slice(0, d1);
  const p = token.slice(d1 + 1, d2);
  const s = token.slice(d2 + 1);
  if (!B64URL.test(h) || !B64URL.test(p) || !B64URL.test(s)) throw jwtRejected("malformed");

  const header = decodeJson(h);
  const alg = header["alg"];
  const spec = typeof alg === "string" && Object.hasOwn(JWT_SVID_ALGS, alg) ? JWT_SVID_ALGS[alg] : undefined;
  if (!spec) throw jwtRejected("unsupported_alg");
  for (const k of Object.keys(header)) if (!ALLOWED_HEADER.has(k)) throw jwtRejected("bad_header");
  const typ = header["typ"];
  if (typ !== undefined && typ !== "JWT" && typ !== "JOSE") throw jwtRejected("bad_header");
  const kid = header["kid"];
  // Our bundle's keys all carry a kid; without one we would have to try every key.
  const key = typeof kid === "string" ? input.keys.get(kid) : undefined;
  if (!key) throw jwtRejected("unknown_kid");
  const verifyInput = key.inputFor(alg as string, spec);
  if (!verifyInput) throw jwtRejected("key_mismatch");
  const sig = Buffer.from(s, "base64url");
  if (spec.kty === "EC" && sig.length !== spec.sigLen) throw jwtRejected("bad_signature");
  if (!verify(spec.hash, Buffer.from(token.slice(0, d2)), verifyInput, sig)) throw jwtRejected("bad_signature");

  const claims = decodeJson(p);
  const sub = claims["sub"];
  let spiffeId: string;
  try {
    if (typeof sub !== "string") throw new Error("sub");
    const id = parseSpiffeId(sub);
    if (id.path === "") throw new Error("root id");
    if (id.trustDomain !== input.trustDomain) throw jwtRejected("foreign_trust_domain");
    spiffeId = sub;
  } catch (err) {
    if (err instanceof HexrError && err.code === "identity.jwt_svid_invalid") throw err;
    throw jwtRejected("invalid_subject");
  }

  const rawAud = claims["aud"];
  const audience = typeof rawAud === "string" ? [rawAud] : Array.isArray(rawAud) ? rawAud : [];
  if (audience.length === 0 || audience.some((a) => typeof a !== "string" || a.length === 0))
    throw jwtRejected("missing_audience");
  const wanted = input.audience;
  const ok = typeof wanted === "string" ? audience.includes(wanted) : audience.some((a) => wanted.has(a as string));
  if (!ok) throw jwtRejected("audience_mismatch");

  const exp = claims["exp"];
  if (typeof exp !== "number" || !Number.isFinite(exp)) throw jwtRejected("missing_exp");
  const nowSec = input.now / 1000;
  if (nowSec >= exp + input.leewaySeconds) throw jwtRejected("expired");
  const nbf = claims["nbf"];
  if (nbf !== undefined && (typeof nbf !== "number" || nbf > nowSec + input.leewaySeconds)) throw jwtRejected("not_yet_valid");
  const iat = claims["iat"];
  if (iat !== undefined && (typeof iat !== "number" || iat > nowSec + input.leewaySeconds)) throw jwtRejected("not_yet_valid");

  return { spiffeId, claims, audience: audience as string[], expiresAt: exp * 1000 };
}
