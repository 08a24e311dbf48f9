import { TenantName } from "@hexr/core";
import { z } from "zod";
import { defineRoute, Reply, type RouteDef } from "../../http/router.js";
import { CreateToolRequest, Tool, ToolName, ToolSpec } from "./schema.js";
import type { ToolService } from "./service.js";

const TenantParams = z.object({ tenant: TenantName });
const ToolParams = z.object({ tenant: TenantName, name: ToolName });

export function toolRoutes(tools: ToolService): RouteDef[] {
  return [
    defineRoute({
      method: "POST",
      path: "/api/v1/tenants/:tenant/tools",
      summary: "Configure a tool: a name agents pass to hexrTool() and the cloud credentials it maps to",
      tags: ["credentials"],
      auth: "tenant",
      params: TenantParams,
      body: CreateToolRequest,
      response: Tool,
      status: 201,
      handler: async ({ scope, body }, ctx) => {
        const tool = await tools.create(scope, body, ctx.principal);
        return new Reply(tool, 201, { location: `/api/v1/tenants/${scope.tenant}/tools/${tool.name}` });
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/tenants/:tenant/tools",
      summary: "List a tenant's tools",
      tags: ["credentials"],
      auth: "tenant",
      params: TenantParams,
      response: z.object({ items: z.array(Tool) }),
      handler: async ({ scope }, ctx) => ({ items: await tools.list(scope, ctx.principal) }),
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/tenants/:tenant/tools/:name",
      summary: "Get a tool's configuration",
      tags: ["credentials"],
      auth: "tenant",
      params: ToolParams,
      response: Tool,
      handler: async ({ scope, params }, ctx) => tools.get(scope, params.name, ctx.principal),
    }),
    defineRoute({
      method: "PUT",
      path: "/api/v1/tenants/:tenant/tools/:name",
      summary: "Replace a tool's provider and configuration",
      tags: ["credentials"],
      auth: "tenant",
      params: ToolParams,
      body: ToolSpec,
      response: Tool,
      handler: async ({ scope, params, body }, ctx) => tools.replace(scope, params.name, body, ctx.principal),
    }),
    defineRoute({
      method: "DELETE",
      path: "/api/v1/tenants/:tenant/tools/:name",
      summary: "Remove a tool",
      tags: ["credentials"],
      auth: "tenant",
      params: ToolParams,
      status: 204,
      handler: async ({ scope, params }, ctx) => {
        await tools.delete(scope, params.name, ctx.principal);
        return undefined;
      },
    }),
  ];
}
