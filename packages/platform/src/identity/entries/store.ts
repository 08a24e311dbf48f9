import type { TenantScope } from "../../auth/principal.js";
import { isUniqueViolation, type Migration, type SqlValue, type Storage } from "../../storage/types.js";

export const entryMigrations: Migration[] = [
  {
    id: "identity/002-entries",
    up: `CREATE TABLE identity_entries (
      id TEXT PRIMARY KEY,
      tenant TEXT,
      spiffe_id TEXT NOT NULL,
      selectors TEXT NOT NULL,
      selectors_hash TEXT NOT NULL,
      x509_svid_ttl INTEGER NOT NULL,
      jwt_svid_ttl INTEGER NOT NULL,
      created_by TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      expires_at BIGINT
    );
    CREATE UNIQUE INDEX identity_entries_identical ON identity_entries (spiffe_id, selectors_hash);
    CREATE INDEX identity_entries_tenant ON identity_entries (tenant, id)`,
  },
];

export interface EntryRow {
  id: string;
  tenant: string | null;
  spiffe_id: string;
  /** JSON array of `type:value` strings, sorted. */
  selectors: string;
  /** SHA-256 of the sorted selectors: identical entries share (spiffe_id, selectors_hash). */
  selectors_hash: string;
  x509_svid_ttl: number;
  jwt_svid_ttl: number;
  created_by: string;
  created_at: number;
  expires_at: number | null;
}

const COLS = "id, tenant, spiffe_id, selectors, selectors_hash, x509_svid_ttl, jwt_svid_ttl, created_by, created_at, expires_at";

function norm(r: EntryRow): EntryRow {
  r.x509_svid_ttl = Number(r.x509_svid_ttl);
  r.jwt_svid_ttl = Number(r.jwt_svid_ttl);
  r.created_at = Number(r.created_at);
  r.expires_at = r.expires_at === null ? null : Number(r.expires_at);
  return r;
}

export interface EntryFilter {
  tenant?: string;
  spiffeId?: string;
}

/**
 * Registration entries. Entries of a tenant are read through a TenantScope; the unscoped methods
 * are for admins and for the Workload API, which must see every entry to match a caller.
 */
export class EntryStore {
  constructor(private readonly db: Storage) {}

  /** Returns the existing identical entry instead of inserting a duplicate. */
  async insert(row: EntryRow): Promise<{ row: EntryRow; created: boolean }> {
    try {
      await this.db.run(`INSERT INTO identity_entries (${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
        row.id,
        row.tenant,
        row.spiffe_id,
        row.selectors,
        row.selectors_hash,
        row.x509_svid_ttl,
        row.jwt_svid_ttl,
        row.created_by,
        row.created_at,
        row.expires_at,
      ]);
      return { row, created: true };
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      const existing = await this.db.get<EntryRow>(
        `SELECT ${COLS} FROM identity_entries WHERE spiffe_id = ? AND selectors_hash = ?`,
        [row.spiffe_id, row.selectors_hash],
      );
      if (!existing) throw err;
      return { row: norm(existing), created: false };
    }
  }

  async byId(id: string): Promise<EntryRow | undefined> {
    const r = await this.db.get<EntryRow>(`SELECT ${COLS} FROM identity_entries WHERE id = ?`, [id]);
    return r && norm(r);
  }

  async byIdForTenant(scope: TenantScope, id: string): Promise<EntryRow | undefined> {
    const r = await this.db.get<EntryRow>(`SELECT ${COLS} FROM identity_entries WHERE tenant = ? AND id = ?`, [scope.tenant, id]);
    return r && norm(r);
  }

  async list(filter: EntryFilter, limit: number, after?: string): Promise<EntryRow[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (filter.tenant !== undefined) {
      where.push("tenant = ?");
      params.push(filter.tenant);
    }
    if (filter.spiffeId !== undefined) {
      where.push("spiffe_id = ?");
      params.push(filter.spiffeId);
    }
    if (after !== undefined) {
      where.push("id > ?");
      params.push(after);
    }
    const clause = where.length ? ` WHERE ${where.join(" AND ")}` : "";
    return (
      await this.db.all<EntryRow>(`SELECT ${COLS} FROM identity_entries${clause} ORDER BY id LIMIT ?`, [...params, limit])
    ).map(norm);
  }

  async listForTenant(scope: TenantScope, limit: number, after?: string): Promise<EntryRow[]> {
    const rows =
      after === undefined
        ? await this.db.all<EntryRow>(`SELECT ${COLS} FROM identity_entries WHERE tenant = ? ORDER BY id LIMIT ?`, [
            scope.tenant,
            limit,
          ])
        : await this.db.all<EntryRow>(`SELECT ${COLS} FROM identity_entries WHERE tenant = ? AND id > ? ORDER BY id LIMIT ?`, [
            scope.tenant,
            after,
            limit,
          ]);
    return rows.map(norm);
  }

  /** Every entry that has not expired, for the in-memory match index. */
  async allLive(now: number): Promise<EntryRow[]> {
    return (
      await this.db.all<EntryRow>(`SELECT ${COLS} FROM identity_entries WHERE expires_at IS NULL OR expires_at > ? ORDER BY id`, [
        now,
      ])
    ).map(norm);
  }

  async delete(id: string): Promise<boolean> {
    return (await this.db.run("DELETE FROM identity_entries WHERE id = ?", [id])).changes > 0;
  }

  async deleteExpired(now: number): Promise<number> {
    return (await this.db.run("DELETE FROM identity_entries WHERE expires_at IS NOT NULL AND expires_at <= ?", [now])).changes;
  }
}
