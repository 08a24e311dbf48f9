import { AgentName, HexrError, TenantName } from "@hexr/core";
import { z } from "zod";
import type { Principal } from "../auth/principal.js";
import { defineRoute, type RouteDef } from "../http/router.js";
import type { TenantService } from "../tenants/service.js";
import { AgentView, HeartbeatRequest, RegisterAgentRequest, ResolvedAgent, type AgentService } from "./service.js";

const Params = z.object({ tenant: TenantName, name: AgentName });
const TenantOnly = z.object({ tenant: TenantName });
const List = z.object({ items: z.array(AgentView) });

/** The tenant a tenant-bound caller belongs to, if any. */
function ownTenant(p: Principal): string | undefined {
  return p.kind === "tenant-key" || p.kind === "workload" ? p.tenant : undefined;
}

export function agentRoutes(agents: AgentService, tenants: TenantService): RouteDef[] {
  return [
    defineRoute({
      method: "PUT",
      path: "/api/v1/tenants/:tenant/agents/:name",
      summary: "Register (or re-register) an agent and its role processes",
      tags: ["agents"],
      auth: "tenant",
      params: Params,
      body: RegisterAgentRequest,
      response: AgentView,
      handler: async ({ scope, params, body }) => agents.register(scope, params.name, body),
    }),
    defineRoute({
      method: "POST",
      path: "/api/v1/tenants/:tenant/agents/:name/heartbeat",
      summary: "Report a role process's status",
      tags: ["agents"],
      auth: "tenant",
      params: Params,
      body: HeartbeatRequest,
      status: 204,
      handler: async ({ scope, params, body }) => {
        await agents.heartbeat(scope, params.name, body);
        return undefined;
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/tenants/:tenant/agents",
      summary: "List a tenant's agents",
      tags: ["agents"],
      auth: "tenant",
      params: TenantOnly,
      response: List,
      handler: async ({ scope }) => ({ items: await agents.list(scope) }),
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/tenants/:tenant/agents/:name",
      summary: "Get an agent",
      tags: ["agents"],
      auth: "tenant",
      params: Params,
      response: AgentView,
      handler: async ({ scope, params }) => agents.get(scope, params.name),
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/tenants/:tenant/agents/:name/resolve",
      summary: "Resolve an agent (or agent/role) to its mTLS endpoint and SPIFFE ID",
      tags: ["agents"],
      auth: "tenant",
      params: Params,
      query: z.strictObject({ role: z.string().optional() }),
      response: ResolvedAgent,
      handler: async ({ scope, params, query }) =>
        agents.resolve(scope, query.role ? `${params.name}/${query.role}` : params.name),
    }),
    defineRoute({
      method: "DELETE",
      path: "/api/v1/tenants/:tenant/agents/:name",
      summary: "Remove an agent from the registry",
      tags: ["agents"],
      auth: "tenant",
      params: Params,
      status: 204,
      handler: async ({ scope, params }) => {
        await agents.delete(scope, params.name);
        return undefined;
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/agents",
      summary: "List the agents the caller may see (all tenants for admins)",
      tags: ["agents"],
      auth: "authenticated",
      query: z.strictObject({ tenant: TenantName.optional() }),
      response: List,
      handler: async ({ query }, ctx) => {
        const names = await visibleTenants(ctx.principal, query.tenant, tenants);
        const items: AgentView[] = [];
        for (const t of names) items.push(...(await agents.list(await tenants.scope(t))));
        return { items };
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/agents/:name",
      summary: "Get an agent by name (in the caller's tenant, or ?tenant= for admins)",
      tags: ["agents"],
      auth: "authenticated",
      params: z.object({ name: AgentName }),
      query: z.strictObject({ tenant: TenantName.optional() }),
      response: AgentView,
      handler: async ({ params, query }, ctx) => {
        const names = await visibleTenants(ctx.principal, query.tenant, tenants);
        const found: AgentView[] = [];
        for (const t of names) {
          const v = await agents.get(await tenants.scope(t), params.name).catch((e: unknown) => {
            if ((e as HexrError).code === "agent.not_found") return undefined;
            throw e;
          });
          if (v) found.push(v);
        }
        if (found.length === 1) return found[0]!;
        if (found.length === 0) throw new HexrError("agent.not_found", `no agent named '${params.name}'`, { kind: "not_found" });
        throw new HexrError(
          "agent.ambiguous",
          `'${params.name}' exists in tenants ${found.map((f) => f.tenant).join(", ")}; add ?tenant=`,
          { kind: "invalid_argument" },
        );
      },
    }),
  ];
}

async function visibleTenants(p: Principal, requested: string | undefined, tenants: TenantService): Promise<string[]> {
  const own = ownTenant(p);
  if (p.kind === "admin") {
    if (requested) return [(await tenants.get(requested)).name];
    return (await tenants.list(p, 10_000)).map((t) => t.name);
  }
  if (!own) throw new HexrError("auth.forbidden", "this caller belongs to no tenant", { kind: "permission_denied" });
  if (requested && requested !== own)
    throw new HexrError("auth.forbidden", `the caller may not act in tenant '${requested}'`, { kind: "permission_denied" });
  return [own];
}
