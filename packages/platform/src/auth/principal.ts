import { HexrError } from "@hexr/core";

/** Who is calling, as established by an authenticator — never by what the request claims. */
export type Principal =
  | { kind: "anonymous" }
  /** An API key with the `admin` scope: every tenant. */
  | { kind: "admin"; keyId: string }
  /** An API key scoped to one tenant. */
  | { kind: "tenant-key"; keyId: string; tenant: string }
  /** A workload authenticated by its SVID (JWT-SVID bearer or mTLS client certificate). */
  | {
      kind: "workload";
      spiffeId: string;
      trustDomain: string;
      tenant?: string;
      agent?: string;
      role?: string;
      /** For JWT-SVID callers: the token's audiences; each service checks that its own SPIFFE ID is among them. */
      audience?: string[];
      /** How the workload proved itself. */
      via: "jwt-svid" | "x509-svid";
    };

/** A short, loggable name for the principal (never a secret). */
export function principalName(p: Principal): string {
  switch (p.kind) {
    case "anonymous":
      return "anonymous";
    case "admin":
      return `apikey:${p.keyId}`;
    case "tenant-key":
      return `apikey:${p.keyId}`;
    case "workload":
      return p.spiffeId;
  }
}

declare const tenantScopeBrand: unique symbol;

/**
 * Proof that the caller may act within one tenant. It can only be obtained from `authorizeTenant`,
 * and stores of tenant-owned data take it as their first argument: a query without the caller's
 * tenant cannot be written.
 */
export interface TenantScope {
  readonly tenantId: string;
  readonly tenant: string;
  readonly [tenantScopeBrand]: true;
}

/** Internal constructor for the few places that resolve a tenant (auth, tests, background jobs). */
export function unsafeTenantScope(tenantId: string, tenant: string): TenantScope {
  return Object.freeze({ tenantId, tenant }) as TenantScope;
}

export function mayAccessTenant(p: Principal, tenant: string): boolean {
  switch (p.kind) {
    case "admin":
      return true;
    case "tenant-key":
      return p.tenant === tenant;
    case "workload":
      return p.tenant === tenant;
    default:
      return false;
  }
}

export function requireAdmin(p: Principal): void {
  if (p.kind === "anonymous") throw unauthenticated();
  if (p.kind !== "admin") {
    throw new HexrError("auth.forbidden", "this operation needs an admin API key", { kind: "permission_denied" });
  }
}

export function unauthenticated(): HexrError {
  return new HexrError(
    "auth.unauthenticated",
    "missing or invalid credentials: send 'Authorization: Bearer <api key or JWT-SVID>'",
    { kind: "unauthenticated" },
  );
}
