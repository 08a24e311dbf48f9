import type { TenantScope } from "../../auth/principal.js";
import { isUniqueViolation, type Migration, type Storage } from "../../storage/types.js";

export const toolMigrations: Migration[] = [
  {
    id: "credentials/001-tools",
    up: `CREATE TABLE credential_tools (
      tenant_id TEXT NOT NULL,
      tenant TEXT NOT NULL,
      name TEXT NOT NULL,
      provider TEXT NOT NULL,
      config TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      updated_at BIGINT NOT NULL,
      PRIMARY KEY (tenant_id, name)
    );
    CREATE INDEX credential_tools_tenant ON credential_tools (tenant)`,
  },
];

export interface ToolRow {
  tenant_id: string;
  tenant: string;
  name: string;
  provider: string;
  /** JSON of the provider's validated config. */
  config: string;
  created_at: number;
  updated_at: number;
}

const COLS = "tenant_id, tenant, name, provider, config, created_at, updated_at";

/** Tool configurations; every query is bounded by the caller's TenantScope. */
export class ToolStore {
  constructor(private readonly db: Storage) {}

  /** Returns false when the tenant already has a tool of that name. */
  async insert(scope: TenantScope, row: Omit<ToolRow, "tenant_id" | "tenant">): Promise<boolean> {
    try {
      await this.db.run(`INSERT INTO credential_tools (${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)`, [
        scope.tenantId,
        scope.tenant,
        row.name,
        row.provider,
        row.config,
        row.created_at,
        row.updated_at,
      ]);
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  /** Replaces an existing tool's provider and config; returns false when there is none. */
  async update(scope: TenantScope, name: string, provider: string, config: string, now: number): Promise<boolean> {
    const r = await this.db.run(
      "UPDATE credential_tools SET provider = ?, config = ?, updated_at = ? WHERE tenant_id = ? AND name = ?",
      [provider, config, now, scope.tenantId, name],
    );
    return r.changes > 0;
  }

  get(scope: TenantScope, name: string): Promise<ToolRow | undefined> {
    return this.db.get<ToolRow>(`SELECT ${COLS} FROM credential_tools WHERE tenant_id = ? AND name = ?`, [scope.tenantId, name]);
  }

  list(scope: TenantScope): Promise<ToolRow[]> {
    return this.db.all<ToolRow>(`SELECT ${COLS} FROM credential_tools WHERE tenant_id = ? ORDER BY name`, [scope.tenantId]);
  }

  async delete(scope: TenantScope, name: string): Promise<boolean> {
    return (
      (await this.db.run("DELETE FROM credential_tools WHERE tenant_id = ? AND name = ?", [scope.tenantId, name])).changes > 0
    );
  }

  /** Tenant deletion: the scope no longer resolves, so this goes by name. */
  async deleteTenant(tenant: string): Promise<number> {
    return (await this.db.run("DELETE FROM credential_tools WHERE tenant = ?", [tenant])).changes;
  }
}
