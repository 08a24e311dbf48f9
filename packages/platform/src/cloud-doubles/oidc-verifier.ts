import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
} from "jose";

/** Why a federated token was refused; each cloud double turns this into its own error wire format. */
export type TokenFailure =
  | "malformed"
  | "unsupported_alg"
  | "discovery_failed"
  | "issuer_mismatch"
  | "signature"
  | "expired"
  | "not_yet_valid"
  | "missing_claim";

export class TokenRejected extends Error {
  constructor(
    readonly reason: TokenFailure,
    message: string,
  ) {
    super(message);
    this.name = "TokenRejected";
  }
}

/** What clouds accept for federated tokens (no `none`, no HMAC). */
const ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"];

export interface PeekedToken {
  header: { alg?: string; kid?: string; typ?: string };
  claims: JWTPayload;
}

export interface OidcVerifierOptions {
  clock?: () => number;
  /** Tolerated clock skew for exp/nbf/iat. */
  skewSeconds?: number;
  /** Clouds insist on https issuers; the doubles also accept http on loopback so a local platform can be the issuer. */
  allowHttpLoopback?: boolean;
}

/**
 * Verifies third-party OIDC tokens the way a cloud STS does: the issuer's discovery document at
 * `<iss>/.well-known/openid-configuration` must name the same issuer, its `jwks_uri` gives the keys,
 * the signature must verify with the key the header names, and exp/nbf/iat must hold.
 */
export class OidcVerifier {
  private readonly clock: () => number;
  private readonly skew: number;
  private readonly allowHttpLoopback: boolean;
  private readonly jwks = new Map<string, { set: JSONWebKeySet; fetchedAt: number }>();
  /** Discovery and JWKS fetches made, for tests that check caching. */
  fetches = 0;

  constructor({ clock = Date.now, skewSeconds = 30, allowHttpLoopback = true }: OidcVerifierOptions = {}) {
    this.clock = clock;
    this.skew = skewSeconds;
    this.allowHttpLoopback = allowHttpLoopback;
  }

  /** Decodes without trusting anything: clouds route on `iss`/`aud` before they fetch keys. */
  peek(token: string): PeekedToken {
    try {
      const header = decodeProtectedHeader(token) as PeekedToken["header"];
      const claims = decodeJwt(token);
      return { header, claims };
    } catch {
      throw new TokenRejected("malformed", "the token is not a well-formed JWT");
    }
  }

  private checkIssuerUrl(iss: string): URL {
    let u: URL;
    try {
      u = new URL(iss);
    } catch {
      throw new TokenRejected("discovery_failed", `issuer ${iss} is not a URL`);
    }
    const loopback = u.hostname === "127.0.0.1" || u.hostname === "localhost" || u.hostname === "[::1]";
    if (u.protocol !== "https:" && !(u.protocol === "http:" && loopback && this.allowHttpLoopback)) {
      throw new TokenRejected("discovery_failed", `issuer ${iss} must use https`);
    }
    return u;
  }

  private async fetchJson(url: string): Promise<Record<string, unknown>> {
    this.fetches++;
    let res: Response;
    try {
      res = await fetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(5000) });
    } catch (err) {
      throw new TokenRejected("discovery_failed", `cannot fetch ${url}: ${(err as Error).message}`);
    }
    if (!res.ok) throw new TokenRejected("discovery_failed", `${url} answered HTTP ${res.status}`);
    try {
      const body = (await res.json()) as unknown;
      if (typeof body !== "object" || body === null) throw new Error("not an object");
      return body as Record<string, unknown>;
    } catch {
      throw new TokenRejected("discovery_failed", `${url} did not return a JSON object`);
    }
  }

  private async loadKeys(issuer: string): Promise<JSONWebKeySet> {
    this.checkIssuerUrl(issuer);
    const discovery = await this.fetchJson(`${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`);
    if (discovery["issuer"] !== issuer) {
      throw new TokenRejected(
        "issuer_mismatch",
        `discovery document names issuer ${String(discovery["issuer"])}, the token ${issuer}`,
      );
    }
    const jwksUri = discovery["jwks_uri"];
    if (typeof jwksUri !== "string") throw new TokenRejected("discovery_failed", "discovery document has no jwks_uri");
    this.checkIssuerUrl(jwksUri);
    const set = await this.fetchJson(jwksUri);
    if (!Array.isArray(set["keys"])) throw new TokenRejected("discovery_failed", `${jwksUri} is not a JWKS`);
    const entry = { set: set as unknown as JSONWebKeySet, fetchedAt: this.clock() };
    this.jwks.set(issuer, entry);
    return entry.set;
  }

  /** Signature, algorithm and times; refetches the JWKS once when the `kid` is unknown (key rotation). */
  async verify(token: string, issuer: string): Promise<JWTPayload> {
    const { header } = this.peek(token);
    if (!header.alg || !ALGORITHMS.includes(header.alg)) {
      throw new TokenRejected("unsupported_alg", `algorithm ${String(header.alg)} is not accepted`);
    }
    const cached = this.jwks.get(issuer);
    const fresh = !cached || this.clock() - cached.fetchedAt > 5 * 60_000;
    let keys = fresh ? await this.loadKeys(issuer) : cached.set;
    for (let attempt = 0; ; attempt++) {
      try {
        const { payload } = await jwtVerify(token, createLocalJWKSet(keys), {
          algorithms: ALGORITHMS,
          clockTolerance: this.skew,
          currentDate: new Date(this.clock()),
          requiredClaims: ["exp", "sub", "iss", "aud"],
        });
        if (payload.iat !== undefined && payload.iat * 1000 > this.clock() + this.skew * 1000) {
          throw new TokenRejected("not_yet_valid", "the token was issued in the future");
        }
        return payload;
      } catch (err) {
        if (err instanceof TokenRejected) throw err;
        if (err instanceof joseErrors.JWKSNoMatchingKey && attempt === 0 && !fresh) {
          keys = await this.loadKeys(issuer);
          continue;
        }
        if (err instanceof joseErrors.JWTExpired) throw new TokenRejected("expired", "the token has expired");
        if (err instanceof joseErrors.JWTClaimValidationFailed) {
          if (err.claim === "nbf") throw new TokenRejected("not_yet_valid", "the token is not valid yet");
          throw new TokenRejected("missing_claim", `claim ${err.claim}: ${err.reason}`);
        }
        throw new TokenRejected("signature", "the token's signature does not verify with the issuer's keys");
      }
    }
  }
}

/** IAM-style `StringLike`: `*` any run of characters, `?` one character. */
export function stringLike(pattern: string, value: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replace(/\*/g, ".*")
      .replace(/\?/g, ".")}$`,
    "s",
  );
  return re.test(value);
}

export function audiences(claims: JWTPayload): string[] {
  const aud = claims.aud;
  return Array.isArray(aud) ? aud : typeof aud === "string" ? [aud] : [];
}
