import type { Migration, Storage } from "../storage/types.js";

export const apiKeyMigrations: Migration[] = [
  {
    id: "apikeys/001-create",
    up: `CREATE TABLE api_keys (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      scope TEXT NOT NULL,
      tenant TEXT,
      salt TEXT NOT NULL,
      hash TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      expires_at BIGINT,
      last_used_at BIGINT,
      revoked_at BIGINT
    );
    CREATE INDEX api_keys_tenant ON api_keys (tenant)`,
  },
];

export interface ApiKeyRow {
  id: string;
  name: string;
  scope: "admin" | "tenant";
  tenant: string | null;
  salt: string;
  hash: string;
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
  revoked_at: number | null;
}

const COLS = "id, name, scope, tenant, salt, hash, created_at, expires_at, last_used_at, revoked_at";

export class ApiKeyStore {
  constructor(private readonly db: Storage) {}

  async insert(row: ApiKeyRow): Promise<void> {
    await this.db.run(`INSERT INTO api_keys (${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
      row.id,
      row.name,
      row.scope,
      row.tenant,
      row.salt,
      row.hash,
      row.created_at,
      row.expires_at,
      row.last_used_at,
      row.revoked_at,
    ]);
  }

  byId(id: string): Promise<ApiKeyRow | undefined> {
    return this.db.get<ApiKeyRow>(`SELECT ${COLS} FROM api_keys WHERE id = ?`, [id]);
  }

  /** All keys (admin view), or the keys of one tenant. */
  list(tenant: string | undefined, includeRevoked: boolean): Promise<ApiKeyRow[]> {
    const where: string[] = [];
    const params: string[] = [];
    if (tenant !== undefined) {
      where.push("tenant = ?");
      params.push(tenant);
    }
    if (!includeRevoked) where.push("revoked_at IS NULL");
    const clause = where.length ? ` WHERE ${where.join(" AND ")}` : "";
    return this.db.all<ApiKeyRow>(`SELECT ${COLS} FROM api_keys${clause} ORDER BY created_at, id`, params);
  }

  async revoke(id: string, now: number): Promise<boolean> {
    return (await this.db.run("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [now, id])).changes > 0;
  }

  async touch(id: string, now: number): Promise<void> {
    await this.db.run("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [now, id]);
  }

  async countActiveAdmin(): Promise<number> {
    const r = await this.db.get<{ n: number }>("SELECT COUNT(*) AS n FROM api_keys WHERE scope = 'admin' AND revoked_at IS NULL");
    return Number(r?.n ?? 0);
  }
}
