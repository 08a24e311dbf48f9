import type { TenantScope } from "../auth/principal.js";
import { isUniqueViolation, type Migration, type Queryable, type SqlValue, type Storage } from "../storage/types.js";

export const vaultMigrations: Migration[] = [
  {
    id: "vault/001-create",
    up: `CREATE TABLE vault_tenant_keys (
      tenant_id TEXT PRIMARY KEY,
      tenant TEXT NOT NULL,
      wrapped_key TEXT NOT NULL,
      master_key_id TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      rewrapped_at BIGINT
    );
    CREATE TABLE vault_secrets (
      tenant_id TEXT NOT NULL,
      name TEXT NOT NULL,
      current_version INTEGER NOT NULL,
      created_at BIGINT NOT NULL,
      updated_at BIGINT NOT NULL,
      deleted_at BIGINT,
      PRIMARY KEY (tenant_id, name)
    );
    CREATE TABLE vault_versions (
      tenant_id TEXT NOT NULL,
      name TEXT NOT NULL,
      version INTEGER NOT NULL,
      wrapped_data_key TEXT,
      ciphertext TEXT,
      encoding TEXT NOT NULL,
      size_bytes INTEGER NOT NULL,
      created_at BIGINT NOT NULL,
      created_by TEXT NOT NULL,
      destroyed_at BIGINT,
      PRIMARY KEY (tenant_id, name, version)
    );
    CREATE TABLE vault_audit (
      id TEXT PRIMARY KEY,
      tenant_id TEXT NOT NULL,
      at BIGINT NOT NULL,
      principal TEXT NOT NULL,
      action TEXT NOT NULL,
      name TEXT NOT NULL,
      version INTEGER,
      outcome TEXT NOT NULL,
      code TEXT,
      policy_mode TEXT,
      flagged INTEGER NOT NULL,
      request_id TEXT
    );
    CREATE INDEX vault_audit_tenant ON vault_audit (tenant_id, id)`,
  },
];

export interface TenantKeyRow {
  tenant_id: string;
  tenant: string;
  wrapped_key: string;
  master_key_id: string;
  created_at: number;
  rewrapped_at: number | null;
}

export interface SecretRow {
  name: string;
  current_version: number;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
}

export interface VersionRow {
  name: string;
  version: number;
  /** base64; null once destroyed */
  wrapped_data_key: string | null;
  ciphertext: string | null;
  encoding: "utf8" | "base64";
  size_bytes: number;
  created_at: number;
  created_by: string;
  destroyed_at: number | null;
}

export interface AuditRow {
  id: string;
  tenant_id: string;
  at: number;
  principal: string;
  action: string;
  name: string;
  version: number | null;
  outcome: string;
  code: string | null;
  policy_mode: string | null;
  flagged: number;
  request_id: string | null;
}

const SECRET_COLS = "name, current_version, created_at, updated_at, deleted_at";
const VERSION_COLS = "name, version, wrapped_data_key, ciphertext, encoding, size_bytes, created_at, created_by, destroyed_at";
const VERSION_META_COLS =
  "name, version, NULL AS wrapped_data_key, NULL AS ciphertext, encoding, size_bytes, created_at, created_by, destroyed_at";
const AUDIT_COLS = "id, tenant_id, at, principal, action, name, version, outcome, code, policy_mode, flagged, request_id";

/** Vault persistence; every query of tenant data is scoped by the caller's TenantScope. */
export class VaultStore {
  constructor(private readonly db: Storage) {}

  tenantKey(scope: TenantScope): Promise<TenantKeyRow | undefined> {
    return this.db.get<TenantKeyRow>(
      "SELECT tenant_id, tenant, wrapped_key, master_key_id, created_at, rewrapped_at FROM vault_tenant_keys WHERE tenant_id = ?",
      [scope.tenantId],
    );
  }

  /** False when another writer created the tenant's key first (then read theirs). */
  async insertTenantKey(scope: TenantScope, wrapped: string, masterKeyId: string, now: number): Promise<boolean> {
    try {
      await this.db.run(
        "INSERT INTO vault_tenant_keys (tenant_id, tenant, wrapped_key, master_key_id, created_at) VALUES (?, ?, ?, ?, ?)",
        [scope.tenantId, scope.tenant, wrapped, masterKeyId, now],
      );
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  /** Master key rotation: every tenant key, in one transaction with the rewrap. */
  async rewrapTenantKeys(fn: (row: TenantKeyRow) => { wrapped: string; masterKeyId: string }, now: number): Promise<number> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.all<TenantKeyRow>(
        "SELECT tenant_id, tenant, wrapped_key, master_key_id, created_at, rewrapped_at FROM vault_tenant_keys",
      );
      for (const row of rows) {
        const next = fn(row);
        await tx.run("UPDATE vault_tenant_keys SET wrapped_key = ?, master_key_id = ?, rewrapped_at = ? WHERE tenant_id = ?", [
          next.wrapped,
          next.masterKeyId,
          now,
          row.tenant_id,
        ]);
      }
      return rows.length;
    });
  }

  secret(scope: TenantScope, name: string): Promise<SecretRow | undefined> {
    return this.db.get<SecretRow>(`SELECT ${SECRET_COLS} FROM vault_secrets WHERE tenant_id = ? AND name = ?`, [
      scope.tenantId,
      name,
    ]);
  }

  /** The secret and one version (the current one when `version` is undefined), in one query. */
  read(
    scope: TenantScope,
    name: string,
    version?: number,
  ): Promise<(VersionRow & { deleted_at: number | null; current_version: number }) | undefined> {
    const versionClause = version === undefined ? "v.version = s.current_version" : "v.version = ?";
    const params: SqlValue[] = [scope.tenantId, name];
    if (version !== undefined) params.push(version);
    return this.db.get(
      `SELECT v.name, v.version, v.wrapped_data_key, v.ciphertext, v.encoding, v.size_bytes, v.created_at, v.created_by, v.destroyed_at,
              s.deleted_at, s.current_version
       FROM vault_secrets s JOIN vault_versions v ON v.tenant_id = s.tenant_id AND v.name = s.name
       WHERE s.tenant_id = ? AND s.name = ? AND ${versionClause}`,
      params,
    );
  }

  /**
   * Writes the next version in one transaction; `expected` (compare-and-set) is the version the
   * caller last saw, 0 for "must not exist". Returns the new version, or undefined on a CAS mismatch.
   * Concurrent writers of one secret queue on its row lock, so each gets the next number.
   */
  async writeVersion(
    scope: TenantScope,
    name: string,
    build: (version: number) => Omit<VersionRow, "name" | "version" | "destroyed_at">,
    now: number,
    expected?: number,
  ): Promise<number | undefined> {
    const mismatch = Symbol("cas");
    try {
      return await this.db.transaction(async (tx: Queryable) => {
        // A placeholder (version 0) for a new secret; rolled back with the transaction when anything fails.
        await tx.run(
          "INSERT INTO vault_secrets (tenant_id, name, current_version, created_at, updated_at) VALUES (?, ?, 0, ?, ?) ON CONFLICT (tenant_id, name) DO NOTHING",
          [scope.tenantId, name, now, now],
        );
        // Takes the row lock (PostgreSQL) before reading; SQLite transactions are exclusive already.
        await tx.run("UPDATE vault_secrets SET updated_at = updated_at WHERE tenant_id = ? AND name = ?", [scope.tenantId, name]);
        const s = (await tx.get<SecretRow>(`SELECT ${SECRET_COLS} FROM vault_secrets WHERE tenant_id = ? AND name = ?`, [
          scope.tenantId,
          name,
        ]))!;
        const current = Number(s.current_version);
        const live = s.deleted_at === null ? current : 0;
        if (expected !== undefined && expected !== live) throw mismatch;
        const version = current + 1;
        const row = build(version);
        await tx.run(`INSERT INTO vault_versions (${VERSION_COLS}, tenant_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)`, [
          name,
          version,
          row.wrapped_data_key,
          row.ciphertext,
          row.encoding,
          row.size_bytes,
          row.created_at,
          row.created_by,
          scope.tenantId,
        ]);
        await tx.run(
          "UPDATE vault_secrets SET current_version = ?, updated_at = ?, deleted_at = NULL WHERE tenant_id = ? AND name = ?",
          [version, now, scope.tenantId, name],
        );
        return version;
      });
    } catch (err) {
      if (err === mismatch) return undefined;
      throw err;
    }
  }

  /** Metadata only: the query never selects a ciphertext. */
  list(
    scope: TenantScope,
    opts: { prefix: string; after?: string; limit: number; includeDeleted: boolean },
  ): Promise<SecretRow[]> {
    const where = ["tenant_id = ?"];
    const params: SqlValue[] = [scope.tenantId];
    if (opts.prefix) {
      where.push("substr(name, 1, ?) = ?");
      params.push(opts.prefix.length, opts.prefix);
    }
    if (opts.after !== undefined) {
      where.push("name > ?");
      params.push(opts.after);
    }
    if (!opts.includeDeleted) where.push("deleted_at IS NULL");
    params.push(opts.limit);
    return this.db.all<SecretRow>(
      `SELECT ${SECRET_COLS} FROM vault_secrets WHERE ${where.join(" AND ")} ORDER BY name LIMIT ?`,
      params,
    );
  }

  /** Version metadata, never ciphertexts. */
  versions(scope: TenantScope, name: string): Promise<VersionRow[]> {
    return this.db.all<VersionRow>(
      `SELECT ${VERSION_META_COLS} FROM vault_versions WHERE tenant_id = ? AND name = ? ORDER BY version`,
      [scope.tenantId, name],
    );
  }

  async tombstone(scope: TenantScope, name: string, now: number): Promise<boolean> {
    const r = await this.db.run(
      "UPDATE vault_secrets SET deleted_at = ?, updated_at = ? WHERE tenant_id = ? AND name = ? AND deleted_at IS NULL",
      [now, now, scope.tenantId, name],
    );
    return r.changes > 0;
  }

  /** Erases a version's ciphertext and wrapped data key for good; the metadata row stays. */
  async destroy(scope: TenantScope, name: string, version: number, now: number): Promise<boolean> {
    const r = await this.db.run(
      "UPDATE vault_versions SET ciphertext = NULL, wrapped_data_key = NULL, destroyed_at = ? WHERE tenant_id = ? AND name = ? AND version = ? AND destroyed_at IS NULL",
      [now, scope.tenantId, name, version],
    );
    return r.changes > 0;
  }

  /** Crypto-shreds a deleted tenant: its key and every secret (found by the tenant name kept beside the key). */
  async eraseTenant(tenant: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const rows = await tx.all<{ tenant_id: string }>("SELECT tenant_id FROM vault_tenant_keys WHERE tenant = ?", [tenant]);
      for (const { tenant_id } of rows) {
        await tx.run("DELETE FROM vault_versions WHERE tenant_id = ?", [tenant_id]);
        await tx.run("DELETE FROM vault_secrets WHERE tenant_id = ?", [tenant_id]);
        await tx.run("DELETE FROM vault_tenant_keys WHERE tenant_id = ?", [tenant_id]);
      }
    });
  }

  async insertAudit(rows: AuditRow[]): Promise<void> {
    const cols = AUDIT_COLS.split(",").length;
    for (let i = 0; i < rows.length; i += 100) {
      const part = rows.slice(i, i + 100);
      const params: SqlValue[] = [];
      for (const r of part) {
        params.push(
          r.id,
          r.tenant_id,
          r.at,
          r.principal,
          r.action,
          r.name,
          r.version,
          r.outcome,
          r.code,
          r.policy_mode,
          r.flagged,
          r.request_id,
        );
      }
      const values = part.map(() => `(${Array(cols).fill("?").join(", ")})`).join(", ");
      await this.db.run(`INSERT INTO vault_audit (${AUDIT_COLS}) VALUES ${values}`, params);
    }
  }

  audit(scope: TenantScope, q: { name?: string; before?: string; since?: number; limit: number }): Promise<AuditRow[]> {
    const where = ["tenant_id = ?"];
    const params: SqlValue[] = [scope.tenantId];
    if (q.name !== undefined) {
      where.push("name = ?");
      params.push(q.name);
    }
    if (q.before !== undefined) {
      where.push("id < ?");
      params.push(q.before);
    }
    if (q.since !== undefined) {
      where.push("at >= ?");
      params.push(q.since);
    }
    params.push(q.limit);
    return this.db.all<AuditRow>(
      `SELECT ${AUDIT_COLS} FROM vault_audit WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT ?`,
      params,
    );
  }
}
