import type { TenantScope } from "../auth/principal.js";
import { isUniqueViolation, type Migration, type SqlValue, type Storage } from "../storage/types.js";
import type { EnforcementMode } from "./types.js";

export const policyMigrations: Migration[] = [
  {
    id: "policy/001-create",
    up: `CREATE TABLE policies (
      tenant_id TEXT NOT NULL,
      tenant TEXT NOT NULL,
      name TEXT NOT NULL,
      version INTEGER NOT NULL,
      mode TEXT NOT NULL,
      text TEXT NOT NULL,
      description TEXT,
      deleted INTEGER NOT NULL,
      created_at BIGINT NOT NULL,
      created_by TEXT NOT NULL,
      PRIMARY KEY (tenant_id, name, version)
    );
    CREATE TABLE policy_decisions (
      id TEXT PRIMARY KEY,
      tenant_id TEXT NOT NULL,
      tenant TEXT NOT NULL,
      at BIGINT NOT NULL,
      principal TEXT NOT NULL,
      principal_tenant TEXT,
      action TEXT NOT NULL,
      resource_type TEXT NOT NULL,
      resource_id TEXT NOT NULL,
      effect TEXT NOT NULL,
      allowed INTEGER NOT NULL,
      mode TEXT NOT NULL,
      flagged INTEGER NOT NULL,
      policy_ids TEXT NOT NULL,
      reasons TEXT NOT NULL,
      eval_micros INTEGER NOT NULL,
      request TEXT NOT NULL
    );
    CREATE INDEX policy_decisions_tenant ON policy_decisions (tenant_id, id);
    CREATE INDEX policy_decisions_at ON policy_decisions (at)`,
  },
];

export interface PolicyRow {
  tenant_id: string;
  tenant: string;
  name: string;
  version: number;
  mode: EnforcementMode;
  text: string;
  description: string | null;
  /** 0/1: a deletion is a version too, so history stays readable. */
  deleted: number;
  created_at: number;
  created_by: string;
}

export interface DecisionRow {
  id: string;
  tenant_id: string;
  tenant: string;
  at: number;
  principal: string;
  principal_tenant: string | null;
  action: string;
  resource_type: string;
  resource_id: string;
  effect: "allow" | "deny";
  allowed: number;
  mode: EnforcementMode;
  flagged: number;
  policy_ids: string;
  reasons: string;
  eval_micros: number;
  /** JSON of the principal, resource and context: enough to evaluate the request again (replay). */
  request: string;
}

export interface DecisionQuery {
  since?: number;
  until?: number;
  principal?: string;
  action?: string;
  effect?: "allow" | "deny";
  allowed?: boolean;
  flagged?: boolean;
  /** Page backwards (newest first) from this id. */
  before?: string;
  /** Page forwards (oldest first) from this id. */
  after?: string;
  limit: number;
}

const POLICY_COLS = "tenant_id, tenant, name, version, mode, text, description, deleted, created_at, created_by";
const DECISION_COLS =
  "id, tenant_id, tenant, at, principal, principal_tenant, action, resource_type, resource_id, effect, allowed, mode, flagged, policy_ids, reasons, eval_micros, request";
const DECISION_COUNT = DECISION_COLS.split(",").length;

/** Policies and the decision log; every tenant-owned query takes the caller's TenantScope. */
export class PolicyStore {
  constructor(private readonly db: Storage) {}

  /** Inserts the next version; false when another writer took that version number first. */
  async insertVersion(scope: TenantScope, row: Omit<PolicyRow, "tenant_id" | "tenant">): Promise<boolean> {
    try {
      await this.db.run(`INSERT INTO policies (${POLICY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
        scope.tenantId,
        scope.tenant,
        row.name,
        row.version,
        row.mode,
        row.text,
        row.description,
        row.deleted,
        row.created_at,
        row.created_by,
      ]);
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  latest(scope: TenantScope, name: string): Promise<PolicyRow | undefined> {
    return this.db.get<PolicyRow>(
      `SELECT ${POLICY_COLS} FROM policies WHERE tenant_id = ? AND name = ? ORDER BY version DESC LIMIT 1`,
      [scope.tenantId, name],
    );
  }

  version(scope: TenantScope, name: string, version: number): Promise<PolicyRow | undefined> {
    return this.db.get<PolicyRow>(`SELECT ${POLICY_COLS} FROM policies WHERE tenant_id = ? AND name = ? AND version = ?`, [
      scope.tenantId,
      name,
      version,
    ]);
  }

  versions(scope: TenantScope, name: string): Promise<PolicyRow[]> {
    return this.db.all<PolicyRow>(`SELECT ${POLICY_COLS} FROM policies WHERE tenant_id = ? AND name = ? ORDER BY version`, [
      scope.tenantId,
      name,
    ]);
  }

  /** The latest version of every policy that is not deleted. */
  active(scope: TenantScope): Promise<PolicyRow[]> {
    return this.db.all<PolicyRow>(
      `SELECT ${POLICY_COLS} FROM policies p
       WHERE tenant_id = ? AND deleted = 0
         AND version = (SELECT MAX(version) FROM policies q WHERE q.tenant_id = p.tenant_id AND q.name = p.name)
       ORDER BY name`,
      [scope.tenantId],
    );
  }

  /** Erases the policies of a deleted tenant (the decision log stays until retention removes it). */
  async eraseTenant(tenant: string): Promise<void> {
    await this.db.run("DELETE FROM policies WHERE tenant = ?", [tenant]);
  }

  async insertDecisions(rows: DecisionRow[]): Promise<void> {
    const chunk = 100;
    for (let i = 0; i < rows.length; i += chunk) {
      const part = rows.slice(i, i + chunk);
      const values = part.map(() => `(${Array(DECISION_COUNT).fill("?").join(", ")})`).join(", ");
      const params: SqlValue[] = [];
      for (const r of part) {
        params.push(
          r.id,
          r.tenant_id,
          r.tenant,
          r.at,
          r.principal,
          r.principal_tenant,
          r.action,
          r.resource_type,
          r.resource_id,
          r.effect,
          r.allowed,
          r.mode,
          r.flagged,
          r.policy_ids,
          r.reasons,
          r.eval_micros,
          r.request,
        );
      }
      await this.db.run(`INSERT INTO policy_decisions (${DECISION_COLS}) VALUES ${values}`, params);
    }
  }

  decisions(scope: TenantScope, q: DecisionQuery): Promise<DecisionRow[]> {
    const where = ["tenant_id = ?"];
    const params: SqlValue[] = [scope.tenantId];
    const add = (clause: string, value: SqlValue) => {
      where.push(clause);
      params.push(value);
    };
    if (q.since !== undefined) add("at >= ?", q.since);
    if (q.until !== undefined) add("at < ?", q.until);
    if (q.principal !== undefined) add("principal = ?", q.principal);
    if (q.action !== undefined) add("action = ?", q.action);
    if (q.effect !== undefined) add("effect = ?", q.effect);
    if (q.allowed !== undefined) add("allowed = ?", q.allowed ? 1 : 0);
    if (q.flagged !== undefined) add("flagged = ?", q.flagged ? 1 : 0);
    if (q.before !== undefined) add("id < ?", q.before);
    if (q.after !== undefined) add("id > ?", q.after);
    const order = q.after !== undefined ? "ASC" : "DESC";
    params.push(q.limit);
    return this.db.all<DecisionRow>(
      `SELECT ${DECISION_COLS} FROM policy_decisions WHERE ${where.join(" AND ")} ORDER BY id ${order} LIMIT ?`,
      params,
    );
  }

  async pruneDecisions(before: number): Promise<number> {
    return (await this.db.run("DELETE FROM policy_decisions WHERE at < ?", [before])).changes;
  }
}
