import { AgentName, HexrError, RoleName, agentSpiffeId } from "@hexr/core";
import { z } from "zod";
import type { TenantScope } from "../auth/principal.js";
import type { AgentRow, AgentStore, RoleRow } from "./store.js";

export const Framework = z.enum(["ai-sdk", "openai", "anthropic", "langchain", "mastra", "custom"]);

export const Skill = z.strictObject({
  id: z.string().min(1).max(100),
  name: z.string().min(1).max(200),
  description: z.string().max(2000).default(""),
  tags: z.array(z.string().max(50)).max(20).default([]),
  examples: z.array(z.string().max(500)).max(20).optional(),
});

export const RoleStatus = z.enum(["starting", "running", "restarting", "stopped", "crashed"]);

export const RegisterRole = z.strictObject({
  role: RoleName,
  endpoint: z.url().nullable().default(null).describe("the role's mTLS endpoint (its inbound mesh proxy)"),
  pid: z.number().int().positive().nullable().default(null),
  status: RoleStatus.default("starting"),
  restarts: z.number().int().min(0).default(0),
});

export const RegisterAgentRequest = z
  .strictObject({
    description: z.string().max(2000).optional(),
    framework: Framework.default("custom"),
    entryRole: RoleName.default("main"),
    skills: z.array(Skill).max(100).default([]),
    roles: z.array(RegisterRole).min(1).max(50),
  })
  .superRefine((v, ctx) => {
    const names = v.roles.map((r) => r.role);
    if (new Set(names).size !== names.length)
      ctx.addIssue({ code: "custom", path: ["roles"], message: "role names must be unique" });
    if (!names.includes(v.entryRole))
      ctx.addIssue({ code: "custom", path: ["entryRole"], message: `must be one of the roles (${names.join(", ")})` });
  });
export type RegisterAgentRequest = z.input<typeof RegisterAgentRequest>;

export const HeartbeatRequest = z.strictObject({
  role: RoleName,
  status: RoleStatus,
  pid: z.number().int().positive().nullable().default(null),
  restarts: z.number().int().min(0).default(0),
  endpoint: z.url().nullable().default(null),
});

export const AgentRoleView = z.object({
  role: z.string(),
  spiffeId: z.string(),
  endpoint: z.string().nullable(),
  pid: z.number().nullable(),
  status: z.string().describe("reported status; 'stale' when no heartbeat arrived in time"),
  restarts: z.number(),
  startedAt: z.string().nullable(),
  lastHeartbeat: z.string().nullable(),
});

export const AgentView = z.object({
  name: z.string(),
  tenant: z.string(),
  description: z.string().nullable(),
  framework: z.string(),
  entryRole: z.string(),
  skills: z.array(Skill),
  status: z.string().describe("running when every role runs, degraded when some do, otherwise stopped"),
  roles: z.array(AgentRoleView),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type AgentView = z.infer<typeof AgentView>;

export const ResolvedAgent = z.object({ agent: z.string(), role: z.string(), spiffeId: z.string(), url: z.string() });

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export interface AgentServiceOptions {
  store: AgentStore;
  trustDomain: string;
  clock?: () => number;
  /** A role whose last heartbeat is older than this is shown as stale. */
  staleAfterMs?: number;
}

export class AgentService {
  private readonly store: AgentStore;
  private readonly trustDomain: string;
  private readonly clock: () => number;
  private readonly staleAfterMs: number;

  constructor({ store, trustDomain, clock = Date.now, staleAfterMs = 15_000 }: AgentServiceOptions) {
    this.store = store;
    this.trustDomain = trustDomain;
    this.clock = clock;
    this.staleAfterMs = staleAfterMs;
  }

  async register(scope: TenantScope, name: string, input: RegisterAgentRequest): Promise<AgentView> {
    AgentName.parse(name);
    const req = RegisterAgentRequest.parse(input);
    const now = this.clock();
    await this.store.upsert(
      scope,
      {
        name,
        description: req.description ?? null,
        framework: req.framework,
        entry_role: req.entryRole,
        skills: JSON.stringify(req.skills),
        created_at: now,
        updated_at: now,
      },
      req.roles.map((r) => ({
        role: r.role,
        spiffe_id: agentSpiffeId(this.trustDomain, scope.tenant, name, r.role).toString(),
        endpoint: r.endpoint,
        pid: r.pid,
        status: r.status,
        restarts: r.restarts,
        started_at: now,
        last_heartbeat: now,
      })),
    );
    return this.get(scope, name);
  }

  async heartbeat(scope: TenantScope, name: string, input: z.input<typeof HeartbeatRequest>): Promise<void> {
    const hb = HeartbeatRequest.parse(input);
    const ok = await this.store.heartbeat(scope, name, hb.role, {
      status: hb.status,
      pid: hb.pid,
      restarts: hb.restarts,
      endpoint: hb.endpoint,
      at: this.clock(),
    });
    if (!ok) throw notFound(scope, `${name}/${hb.role}`);
  }

  async get(scope: TenantScope, name: string): Promise<AgentView> {
    const row = await this.store.get(scope, name);
    if (!row) throw notFound(scope, name);
    return this.view(scope, row, await this.store.roles(scope, name));
  }

  async list(scope: TenantScope): Promise<AgentView[]> {
    const [agents, roles] = await Promise.all([this.store.list(scope), this.store.roles(scope)]);
    return agents.map((a) =>
      this.view(
        scope,
        a,
        roles.filter((r) => r.agent === a.name),
      ),
    );
  }

  async delete(scope: TenantScope, name: string): Promise<void> {
    if (!(await this.store.delete(scope, name))) throw notFound(scope, name);
  }

  /** `agent` or `agent/role` within the tenant → the role's mTLS endpoint and the SPIFFE ID it must present. */
  async resolve(scope: TenantScope, target: string): Promise<z.infer<typeof ResolvedAgent>> {
    const [name, roleName] = target.split("/", 2) as [string, string | undefined];
    const agent = await this.get(scope, name);
    const role = agent.roles.find((r) => r.role === (roleName ?? agent.entryRole));
    if (!role) throw notFound(scope, target);
    if (!role.endpoint || role.status === "stale" || role.status === "stopped" || role.status === "crashed") {
      throw new HexrError(
        "agent.unavailable",
        `agent ${target} in tenant ${scope.tenant} is ${role.status}; start it with 'hexr run'`,
        { kind: "unavailable" },
      );
    }
    return { agent: name, role: role.role, spiffeId: role.spiffeId, url: role.endpoint };
  }

  private view(scope: TenantScope, a: AgentRow, roles: RoleRow[]): AgentView {
    const now = this.clock();
    const roleViews = roles.map((r) => {
      const stale = r.status === "running" && (r.last_heartbeat === null || now - r.last_heartbeat > this.staleAfterMs);
      return {
        role: r.role,
        spiffeId: r.spiffe_id,
        endpoint: r.endpoint,
        pid: r.pid,
        status: stale ? "stale" : r.status,
        restarts: r.restarts,
        startedAt: iso(r.started_at),
        lastHeartbeat: iso(r.last_heartbeat),
      };
    });
    const running = roleViews.filter((r) => r.status === "running").length;
    return {
      name: a.name,
      tenant: scope.tenant,
      description: a.description,
      framework: a.framework,
      entryRole: a.entry_role,
      skills: JSON.parse(a.skills) as AgentView["skills"],
      status: running === roleViews.length && running > 0 ? "running" : running > 0 ? "degraded" : "stopped",
      roles: roleViews,
      createdAt: new Date(a.created_at).toISOString(),
      updatedAt: new Date(a.updated_at).toISOString(),
    };
  }
}

function notFound(scope: TenantScope, name: string): HexrError {
  return new HexrError(
    "agent.not_found",
    `agent '${name}' is not registered in tenant '${scope.tenant}'; 'hexr agents' lists them`,
    { kind: "not_found" },
  );
}
