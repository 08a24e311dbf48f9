import type { TenantScope } from "../auth/principal.js";
import type { Migration, Storage } from "../storage/types.js";

export const agentMigrations: Migration[] = [
  {
    id: "agents/001-create",
    up: `CREATE TABLE agents (
      tenant_id TEXT NOT NULL,
      name TEXT NOT NULL,
      description TEXT,
      framework TEXT NOT NULL,
      entry_role TEXT NOT NULL,
      skills TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      updated_at BIGINT NOT NULL,
      PRIMARY KEY (tenant_id, name)
    );
    CREATE TABLE agent_roles (
      tenant_id TEXT NOT NULL,
      agent TEXT NOT NULL,
      role TEXT NOT NULL,
      spiffe_id TEXT NOT NULL,
      endpoint TEXT,
      pid INTEGER,
      status TEXT NOT NULL,
      restarts INTEGER NOT NULL,
      started_at BIGINT,
      last_heartbeat BIGINT,
      PRIMARY KEY (tenant_id, agent, role)
    )`,
  },
];

export interface AgentRow {
  tenant_id: string;
  name: string;
  description: string | null;
  framework: string;
  entry_role: string;
  skills: string;
  created_at: number;
  updated_at: number;
}

export interface RoleRow {
  tenant_id: string;
  agent: string;
  role: string;
  spiffe_id: string;
  endpoint: string | null;
  pid: number | null;
  status: string;
  restarts: number;
  started_at: number | null;
  last_heartbeat: number | null;
}

const AGENT_COLS = "tenant_id, name, description, framework, entry_role, skills, created_at, updated_at";
const ROLE_COLS = "tenant_id, agent, role, spiffe_id, endpoint, pid, status, restarts, started_at, last_heartbeat";

/** Every query is bound to the caller's tenant through the TenantScope. */
export class AgentStore {
  constructor(private readonly db: Storage) {}

  /** Inserts or replaces an agent and its roles in one transaction; roles not listed are removed. */
  async upsert(
    scope: TenantScope,
    agent: Omit<AgentRow, "tenant_id">,
    roles: Array<Omit<RoleRow, "tenant_id" | "agent">>,
  ): Promise<void> {
    await this.db.transaction(async (tx) => {
      const existing = await tx.get<{ created_at: number }>("SELECT created_at FROM agents WHERE tenant_id = ? AND name = ?", [
        scope.tenantId,
        agent.name,
      ]);
      if (existing) {
        await tx.run(
          "UPDATE agents SET description = ?, framework = ?, entry_role = ?, skills = ?, updated_at = ? WHERE tenant_id = ? AND name = ?",
          [agent.description, agent.framework, agent.entry_role, agent.skills, agent.updated_at, scope.tenantId, agent.name],
        );
      } else {
        await tx.run(`INSERT INTO agents (${AGENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, [
          scope.tenantId,
          agent.name,
          agent.description,
          agent.framework,
          agent.entry_role,
          agent.skills,
          agent.created_at,
          agent.updated_at,
        ]);
      }
      await tx.run("DELETE FROM agent_roles WHERE tenant_id = ? AND agent = ?", [scope.tenantId, agent.name]);
      for (const r of roles) {
        await tx.run(`INSERT INTO agent_roles (${ROLE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
          scope.tenantId,
          agent.name,
          r.role,
          r.spiffe_id,
          r.endpoint,
          r.pid,
          r.status,
          r.restarts,
          r.started_at,
          r.last_heartbeat,
        ]);
      }
    });
  }

  get(scope: TenantScope, name: string): Promise<AgentRow | undefined> {
    return this.db.get<AgentRow>(`SELECT ${AGENT_COLS} FROM agents WHERE tenant_id = ? AND name = ?`, [scope.tenantId, name]);
  }

  list(scope: TenantScope): Promise<AgentRow[]> {
    return this.db.all<AgentRow>(`SELECT ${AGENT_COLS} FROM agents WHERE tenant_id = ? ORDER BY name`, [scope.tenantId]);
  }

  roles(scope: TenantScope, agent?: string): Promise<RoleRow[]> {
    return agent === undefined
      ? this.db.all<RoleRow>(`SELECT ${ROLE_COLS} FROM agent_roles WHERE tenant_id = ? ORDER BY agent, role`, [scope.tenantId])
      : this.db.all<RoleRow>(`SELECT ${ROLE_COLS} FROM agent_roles WHERE tenant_id = ? AND agent = ? ORDER BY role`, [
          scope.tenantId,
          agent,
        ]);
  }

  /** Records a heartbeat for one role; false when the role is not registered. */
  async heartbeat(
    scope: TenantScope,
    agent: string,
    role: string,
    hb: { status: string; pid: number | null; restarts: number; endpoint: string | null; at: number },
  ): Promise<boolean> {
    const r = await this.db.run(
      "UPDATE agent_roles SET status = ?, pid = ?, restarts = ?, endpoint = COALESCE(?, endpoint), last_heartbeat = ? WHERE tenant_id = ? AND agent = ? AND role = ?",
      [hb.status, hb.pid, hb.restarts, hb.endpoint, hb.at, scope.tenantId, agent, role],
    );
    return r.changes > 0;
  }

  async delete(scope: TenantScope, name: string): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      await tx.run("DELETE FROM agent_roles WHERE tenant_id = ? AND agent = ?", [scope.tenantId, name]);
      return (await tx.run("DELETE FROM agents WHERE tenant_id = ? AND name = ?", [scope.tenantId, name])).changes > 0;
    });
  }
}
