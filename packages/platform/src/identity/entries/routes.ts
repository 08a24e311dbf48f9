import { TenantName } from "@hexr/core";
import { z } from "zod";
import { principalName } from "../../auth/principal.js";
import { defineRoute, queryInt, Reply, type RouteDef } from "../../http/router.js";
import { CreateEntryRequest, Entry, ENTRY_ID, toEntryView, type EntryService } from "./service.js";

const EntryList = z.object({ items: z.array(Entry), nextAfter: z.string().nullable() });
const EntryParams = z.object({ id: z.string().regex(ENTRY_ID, "an entry id is 32 lowercase hex characters") });
const Page = { limit: queryInt(1, 1000).default(100), after: z.string().regex(ENTRY_ID, "must be an entry id").optional() };

function page(items: ReturnType<typeof toEntryView>[], limit: number) {
  return { items, nextAfter: items.length === limit ? items[items.length - 1]!.id : null };
}

export function entryRoutes(entries: EntryService): RouteDef[] {
  return [
    defineRoute({
      method: "POST",
      path: "/api/v1/identity/entries",
      summary: "Create a registration entry (selectors → SPIFFE ID)",
      description:
        "An identical entry (same SPIFFE ID and selectors) is a 409 `identity.entry_exists` whose details name the existing id.",
      tags: ["identity"],
      auth: "admin",
      body: CreateEntryRequest,
      response: Entry,
      status: 201,
      handler: async ({ body }, ctx) => {
        const entry = toEntryView(await entries.create(body, principalName(ctx.principal)));
        return new Reply(entry, 201, { location: `/api/v1/identity/entries/${entry.id}` });
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/identity/entries",
      summary: "List registration entries (all tenants)",
      tags: ["identity"],
      auth: "admin",
      query: z.strictObject({ ...Page, tenant: TenantName.optional(), spiffeId: z.string().max(2048).optional() }),
      response: EntryList,
      handler: async ({ query }) => {
        const filter = {
          ...(query.tenant ? { tenant: query.tenant } : {}),
          ...(query.spiffeId ? { spiffeId: query.spiffeId } : {}),
        };
        return page((await entries.list(filter, query.limit, query.after)).map(toEntryView), query.limit);
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/identity/entries/:id",
      summary: "Get a registration entry",
      tags: ["identity"],
      auth: "admin",
      params: EntryParams,
      response: Entry,
      handler: async ({ params }) => toEntryView(await entries.get(params.id)),
    }),
    defineRoute({
      method: "DELETE",
      path: "/api/v1/identity/entries/:id",
      summary: "Delete a registration entry (its workloads lose the identity at their next fetch)",
      tags: ["identity"],
      auth: "admin",
      params: EntryParams,
      status: 204,
      handler: async ({ params }) => {
        await entries.delete(params.id);
        return undefined;
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/tenants/:tenant/identity/entries",
      summary: "List the registration entries of one tenant",
      tags: ["identity"],
      auth: "tenant",
      params: z.object({ tenant: TenantName }),
      query: z.strictObject(Page),
      response: EntryList,
      handler: async ({ query, scope }) =>
        page((await entries.listForTenant(scope, query.limit, query.after)).map(toEntryView), query.limit),
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/tenants/:tenant/identity/entries/:id",
      summary: "Get one registration entry of a tenant",
      tags: ["identity"],
      auth: "tenant",
      params: z.object({ tenant: TenantName, id: EntryParams.shape.id }),
      response: Entry,
      handler: async ({ params, scope }) => toEntryView(await entries.getForTenant(scope, params.id)),
    }),
  ];
}
