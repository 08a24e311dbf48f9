import { describeWorkload, HexrError, isHexrError } from "@hexr/core";
import type { Authenticator } from "../auth/authenticator.js";
import type { Principal } from "../auth/principal.js";
import type { LocalAuthority } from "./authority/authority.js";

const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export interface JwtSvidAuthenticatorOptions {
  authority: LocalAuthority;
  /** The platform's own SPIFFE IDs (`spiffe://<td>/system/<service>`); a token must name one as audience. */
  audiences: Iterable<string>;
}

/**
 * Authenticates `Authorization: Bearer <JWT-SVID>`: the token must verify against the trust bundle and
 * be addressed to one of the platform's system IDs. Other bearer formats (API keys) are left to the
 * next authenticator.
 */
export class JwtSvidAuthenticator implements Authenticator {
  readonly name = "jwt-svid";
  private readonly authority: LocalAuthority;
  private readonly audiences: Set<string>;

  constructor(opts: JwtSvidAuthenticatorOptions) {
    this.authority = opts.authority;
    this.audiences = new Set(opts.audiences);
  }

  /** Lets a service running in this platform accept tokens addressed to its own system ID. */
  addAudience(spiffeId: string): void {
    this.audiences.add(spiffeId);
  }

  async authenticate(_req: unknown, bearer: string | undefined): Promise<Principal | null> {
    if (!bearer || !JWS_COMPACT.test(bearer)) return null;
    let v;
    try {
      v = this.authority.validateJwtSvidSync(bearer, this.audiences);
    } catch (err) {
      const reason =
        isHexrError(err) && err.code === "identity.jwt_svid_invalid" ? (err.details?.["reason"] as string) : undefined;
      if (!reason) throw err;
      // The message names the reason, never the token.
      throw new HexrError("auth.invalid_svid", `${err instanceof Error ? err.message : "JWT-SVID rejected"}`, {
        kind: "unauthenticated",
        details: { reason },
      });
    }
    const w = describeWorkload(v.spiffeId);
    return {
      kind: "workload",
      spiffeId: v.spiffeId,
      trustDomain: w.trustDomain,
      ...(w.kind === "agent" ? { tenant: w.tenant, agent: w.agent, role: w.role } : {}),
      audience: v.audience,
      via: "jwt-svid",
    };
  }
}
