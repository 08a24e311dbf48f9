import { TenantName } from "@hexr/core";
import { z } from "zod";
import { defineRoute, queryInt, Reply, type RouteDef } from "../http/router.js";
import { CreateTenantRequest, Tenant, type TenantService } from "./service.js";

const TenantParams = z.object({ tenant: TenantName });
const TenantList = z.object({ items: z.array(Tenant), nextAfter: z.string().nullable() });

export function tenantRoutes(tenants: TenantService): RouteDef[] {
  return [
    defineRoute({
      method: "POST",
      path: "/api/v1/tenants",
      summary: "Create a tenant",
      tags: ["tenants"],
      auth: "admin",
      body: CreateTenantRequest,
      response: Tenant,
      status: 201,
      handler: async ({ body }) => new Reply(await tenants.create(body), 201, { location: `/api/v1/tenants/${body.name}` }),
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/tenants",
      summary: "List the tenants the caller may see",
      tags: ["tenants"],
      auth: "authenticated",
      query: z.strictObject({ limit: queryInt(1, 1000).default(100), after: z.string().optional() }),
      response: TenantList,
      handler: async ({ query }, ctx) => {
        const items = await tenants.list(ctx.principal, query.limit, query.after);
        return { items, nextAfter: items.length === query.limit ? items[items.length - 1]!.name : null };
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/tenants/:tenant",
      summary: "Get a tenant",
      tags: ["tenants"],
      auth: "tenant",
      params: TenantParams,
      response: Tenant,
      handler: async ({ scope }) => tenants.get(scope.tenant),
    }),
    defineRoute({
      method: "DELETE",
      path: "/api/v1/tenants/:tenant",
      summary: "Delete a tenant and revoke its API keys",
      tags: ["tenants"],
      auth: "admin",
      params: TenantParams,
      status: 204,
      handler: async ({ params }) => {
        await tenants.delete(params.tenant);
        return undefined;
      },
    }),
  ];
}
