import { HexrError, TenantName } from "@hexr/core";
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { mayAccessTenant, unsafeTenantScope, type Principal, type TenantScope } from "../auth/principal.js";
import type { TenantRow, TenantStore } from "./store.js";

export const Tenant = z.object({
  id: z.string(),
  name: TenantName,
  displayName: z.string().nullable(),
  createdAt: z.string().describe("RFC 3339"),
});
export type Tenant = z.infer<typeof Tenant>;

export const CreateTenantRequest = z.strictObject({
  name: TenantName,
  displayName: z.string().min(1).max(200).optional(),
});
export type CreateTenantRequest = z.infer<typeof CreateTenantRequest>;

function toTenant(row: TenantRow): Tenant {
  return { id: row.id, name: row.name, displayName: row.display_name, createdAt: new Date(row.created_at).toISOString() };
}

function notFound(name: string): HexrError {
  return new HexrError("tenant.not_found", `tenant '${name}' does not exist; 'hexr tenants list' shows the tenants`, {
    kind: "not_found",
  });
}

export interface TenantServiceOptions {
  store: TenantStore;
  clock?: () => number;
}

export class TenantService {
  private readonly store: TenantStore;
  private readonly clock: () => number;
  /** name → scope; tenants are read on every scoped request and change rarely. */
  private readonly scopes = new Map<string, TenantScope>();
  private readonly deleteHooks: Array<(tenant: string) => Promise<void>> = [];

  constructor({ store, clock = Date.now }: TenantServiceOptions) {
    this.store = store;
    this.clock = clock;
  }

  async create(req: CreateTenantRequest): Promise<Tenant> {
    const row: TenantRow = { id: randomUUID(), name: req.name, display_name: req.displayName ?? null, created_at: this.clock() };
    if (!(await this.store.insert(row))) {
      throw new HexrError("tenant.already_exists", `tenant '${req.name}' already exists`, { kind: "conflict" });
    }
    return toTenant(row);
  }

  async get(name: string): Promise<Tenant> {
    const row = await this.store.byName(name);
    if (!row) throw notFound(name);
    return toTenant(row);
  }

  /** Tenants visible to the principal: all for admins, their own for tenant keys and workloads. */
  async list(principal: Principal, limit = 100, after?: string): Promise<Tenant[]> {
    if (principal.kind === "admin") return (await this.store.list(limit, after)).map(toTenant);
    const own = principal.kind === "tenant-key" || principal.kind === "workload" ? principal.tenant : undefined;
    if (!own || (after !== undefined && own <= after)) return [];
    const row = await this.store.byName(own);
    return row && mayAccessTenant(principal, row.name) ? [toTenant(row)] : [];
  }

  async delete(name: string): Promise<void> {
    if (!(await this.store.delete(name, this.clock()))) throw notFound(name);
    this.scopes.delete(name);
    for (const hook of this.deleteHooks) await hook(name);
  }

  /** Lets other services react to a tenant going away (e.g. revoke cached keys). */
  onDelete(hook: (tenant: string) => Promise<void>): void {
    this.deleteHooks.push(hook);
  }

  /** Resolves a tenant for a request that was already authorized for it. */
  async scope(name: string): Promise<TenantScope> {
    const cached = this.scopes.get(name);
    if (cached) return cached;
    const row = await this.store.byName(name);
    if (!row) throw notFound(name);
    const scope = unsafeTenantScope(row.id, row.name);
    this.scopes.set(name, scope);
    return scope;
  }
}
