import { isUniqueViolation, type Storage } from "../storage/types.js";
import type { Migration } from "../storage/types.js";

export const tenantMigrations: Migration[] = [
  {
    id: "tenants/001-create",
    up: `CREATE TABLE tenants (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL UNIQUE,
      display_name TEXT,
      created_at BIGINT NOT NULL
    )`,
  },
];

export interface TenantRow {
  id: string;
  name: string;
  display_name: string | null;
  created_at: number;
}

/** Tenants are the root of scoping, so this store is admin-level by nature: no TenantScope. */
export class TenantStore {
  constructor(private readonly db: Storage) {}

  /** Returns false when the name is taken. */
  async insert(row: TenantRow): Promise<boolean> {
    try {
      await this.db.run("INSERT INTO tenants (id, name, display_name, created_at) VALUES (?, ?, ?, ?)", [
        row.id,
        row.name,
        row.display_name,
        row.created_at,
      ]);
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  byName(name: string): Promise<TenantRow | undefined> {
    return this.db.get<TenantRow>("SELECT id, name, display_name, created_at FROM tenants WHERE name = ?", [name]);
  }

  list(limit: number, after?: string): Promise<TenantRow[]> {
    return after === undefined
      ? this.db.all<TenantRow>("SELECT id, name, display_name, created_at FROM tenants ORDER BY name LIMIT ?", [limit])
      : this.db.all<TenantRow>("SELECT id, name, display_name, created_at FROM tenants WHERE name > ? ORDER BY name LIMIT ?", [
          after,
          limit,
        ]);
  }

  /** Deletes the tenant and revokes its API keys in one transaction. */
  async delete(name: string, now: number): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const row = await tx.get<{ id: string }>("SELECT id FROM tenants WHERE name = ?", [name]);
      if (!row) return false;
      await tx.run("UPDATE api_keys SET revoked_at = ? WHERE tenant = ? AND revoked_at IS NULL", [now, name]);
      await tx.run("DELETE FROM tenants WHERE id = ?", [row.id]);
      return true;
    });
  }
}
