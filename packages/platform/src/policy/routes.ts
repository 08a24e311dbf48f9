import { TenantName } from "@hexr/core";
import { z } from "zod";
import { defineRoute, queryInt, Reply, type RouteDef } from "../http/router.js";
import { BASELINE_POLICIES } from "./baseline.js";
import { ACTIONS, CEDAR_SCHEMA } from "./schema.js";
import {
  AppliedPolicy,
  ApplyPolicyRequest,
  DecisionOut,
  parseSince,
  PolicyName,
  PolicyVersion,
  ReplayReport,
  ReplayRequest,
  TestPolicyRequest,
  DecideRequest,
  type PolicyService,
} from "./service.js";

const TenantParams = z.object({ tenant: TenantName });
const NamedParams = z.object({ tenant: TenantName, name: PolicyName });
const bool = z.enum(["true", "false"]).transform((v) => v === "true");
const DECISION_ID = /^[0-9a-z]{19}$/;

const DecisionEntry = z.object({
  id: z.string(),
  at: z.string(),
  principal: z.string(),
  action: z.string(),
  resource: z.object({ type: z.string(), id: z.string() }),
  effect: z.enum(["allow", "deny"]),
  allowed: z.boolean(),
  mode: z.string(),
  flagged: z.boolean(),
  policyIds: z.array(z.string()),
  reasons: z.array(z.string()),
  evaluationMicros: z.number(),
});

export function policyRoutes(policies: PolicyService, clock: () => number = Date.now): RouteDef[] {
  const base = "/api/v1/tenants/:tenant/policies";
  return [
    defineRoute({
      method: "GET",
      path: "/api/v1/policies/schema",
      summary: "The Cedar schema policies are validated against, the actions, and the always-enforced baseline",
      tags: ["policy"],
      auth: "authenticated",
      response: z.object({ schema: z.string(), actions: z.array(z.string()), baseline: z.record(z.string(), z.string()) }),
      handler: async () => ({ schema: CEDAR_SCHEMA, actions: Object.keys(ACTIONS), baseline: { ...BASELINE_POLICIES } }),
    }),
    // Fixed paths before `:name`, which would match them too.
    defineRoute({
      method: "GET",
      path: `${base}/decisions`,
      summary: "Query the decision log (newest first; page with ?before=<id>)",
      tags: ["policy"],
      auth: "tenant",
      params: TenantParams,
      query: z.strictObject({
        since: z.string().max(64).optional().describe("duration back from now (24h) or RFC 3339"),
        until: z.string().max(64).optional(),
        principal: z.string().max(2048).optional(),
        action: z.string().max(64).optional(),
        effect: z.enum(["allow", "deny"]).optional(),
        allowed: bool.optional(),
        flagged: bool.optional(),
        before: z.string().regex(DECISION_ID, "a decision id").optional(),
        limit: queryInt(1, 1000).default(100),
      }),
      response: z.object({ items: z.array(DecisionEntry), nextBefore: z.string().nullable() }),
      handler: async ({ query, scope }, ctx) => {
        const now = clock();
        const items = await policies.decisionLog(
          scope,
          {
            ...(query.since ? { since: parseSince(query.since, now) } : {}),
            ...(query.until ? { until: parseSince(query.until, now) } : {}),
            ...(query.principal ? { principal: query.principal } : {}),
            ...(query.action ? { action: query.action } : {}),
            ...(query.effect ? { effect: query.effect } : {}),
            ...(query.allowed !== undefined ? { allowed: query.allowed } : {}),
            ...(query.flagged !== undefined ? { flagged: query.flagged } : {}),
            ...(query.before ? { before: query.before } : {}),
            limit: query.limit,
          },
          ctx.principal,
        );
        return { items, nextBefore: items.length === query.limit ? items[items.length - 1]!.id : null };
      },
    }),
    defineRoute({
      method: "POST",
      path: `${base}/decide`,
      summary: "Decide (and log) a request for an enforcement point outside the platform, such as an agent's a2a-sidecar",
      tags: ["policy"],
      auth: "tenant",
      params: TenantParams,
      body: DecideRequest,
      response: DecisionOut,
      handler: async ({ body, scope }, ctx) => policies.decideFor(scope, body, ctx.principal),
    }),
    defineRoute({
      method: "POST",
      path: `${base}/test`,
      summary: "Evaluate a request against the tenant's policies (optionally with a candidate) without side effects",
      tags: ["policy"],
      auth: "tenant",
      params: TenantParams,
      body: TestPolicyRequest,
      response: DecisionOut,
      handler: async ({ body, scope }, ctx) => policies.test(scope, body, ctx.principal),
    }),
    defineRoute({
      method: "POST",
      path: `${base}/replay`,
      summary: "Re-evaluate the recorded decision log with a candidate policy and report what would change per principal",
      tags: ["policy"],
      auth: "tenant",
      params: TenantParams,
      body: ReplayRequest,
      response: ReplayReport,
      handler: async ({ body, scope }, ctx) => policies.replay(scope, body, ctx.principal),
    }),
    defineRoute({
      method: "GET",
      path: base,
      summary: "List the tenant's active policies (latest version of each)",
      tags: ["policy"],
      auth: "tenant",
      params: TenantParams,
      response: z.object({ items: z.array(PolicyVersion) }),
      handler: async ({ scope }, ctx) => ({ items: await policies.list(scope, ctx.principal) }),
    }),
    defineRoute({
      method: "PUT",
      path: `${base}/:name`,
      summary: "Apply a policy document: validated against the schema, stored as a new version",
      tags: ["policy"],
      auth: "tenant",
      params: NamedParams,
      body: ApplyPolicyRequest,
      response: AppliedPolicy,
      handler: async ({ params, body, scope }, ctx) => {
        const applied = await policies.apply(scope, params.name, body, ctx.principal);
        return new Reply(applied, applied.unchanged ? 200 : 201);
      },
    }),
    defineRoute({
      method: "GET",
      path: `${base}/:name`,
      summary: "Get a policy (latest version, or ?version=N)",
      tags: ["policy"],
      auth: "tenant",
      params: NamedParams,
      query: z.strictObject({ version: queryInt(1, 1_000_000_000).optional() }),
      response: PolicyVersion,
      handler: async ({ params, query, scope }, ctx) => policies.get(scope, params.name, ctx.principal, query.version),
    }),
    defineRoute({
      method: "GET",
      path: `${base}/:name/versions`,
      summary: "Every version of a policy, deletions included",
      tags: ["policy"],
      auth: "tenant",
      params: NamedParams,
      response: z.object({ items: z.array(PolicyVersion) }),
      handler: async ({ params, scope }, ctx) => ({ items: await policies.versions(scope, params.name, ctx.principal) }),
    }),
    defineRoute({
      method: "DELETE",
      path: `${base}/:name`,
      summary: "Delete a policy (its history is kept)",
      tags: ["policy"],
      auth: "tenant",
      params: NamedParams,
      status: 204,
      handler: async ({ params, scope }, ctx) => {
        await policies.delete(scope, params.name, ctx.principal);
        return undefined;
      },
    }),
  ];
}
