import { HexrError, TenantName } from "@hexr/core";
import { z } from "zod";
import type { Principal } from "../auth/principal.js";
import { defineRoute, queryInt, Reply, type RequestContext, type RouteDef } from "../http/router.js";
import { policyWarningHeaders } from "../policy/authorize.js";
import { parseSince } from "../policy/service.js";
import type { TenantScope } from "../auth/principal.js";
import {
  PutSecretRequest,
  SecretMeta,
  SecretName,
  SecretValue,
  VaultAuditEntry,
  VersionMeta,
  type Decided,
  type VaultService,
} from "./service.js";

const TenantParams = z.object({ tenant: TenantName });
const SecretParams = z.object({ tenant: TenantName, name: SecretName });
const VersionParams = SecretParams.extend({ version: z.coerce.number().int().min(1).max(2_147_483_647) });
const bool = z.enum(["true", "false"]).transform((v) => v === "true");

/** Secrets never end up in a cache between the platform and the caller. */
const NO_STORE = { "cache-control": "no-store" };

function reply<T>(d: Decided<T>, status = 200): Reply<T> {
  return new Reply(d.result, status, { ...NO_STORE, ...policyWarningHeaders(d.decision) });
}

function caller(scope: TenantScope, ctx: RequestContext) {
  return { principal: ctx.principal, scope, requestId: ctx.requestId };
}

function requireOperator(p: Principal): void {
  if (p.kind !== "admin" && p.kind !== "tenant-key") {
    throw new HexrError("vault.forbidden", "the vault audit log needs an API key (admin or of this tenant)", {
      kind: "permission_denied",
    });
  }
}

/**
 * REST binding of the vault. Secret names contain '/', so a name is one URL-encoded path segment:
 * `/api/v1/tenants/acme/secrets/db%2Fpassword`.
 */
export function vaultRoutes(vault: VaultService, clock: () => number = Date.now): RouteDef[] {
  const base = "/api/v1/tenants/:tenant/secrets";
  return [
    defineRoute({
      method: "GET",
      path: "/api/v1/tenants/:tenant/vault/audit",
      summary: "The vault's access log (who read or changed which secret and version; never values)",
      tags: ["vault"],
      auth: "tenant",
      params: TenantParams,
      query: z.strictObject({
        name: SecretName.optional(),
        since: z.string().max(64).optional(),
        before: z
          .string()
          .regex(/^[0-9a-z]{19}$/, "an audit entry id")
          .optional(),
        limit: queryInt(1, 1000).default(100),
      }),
      response: z.object({ items: z.array(VaultAuditEntry), nextBefore: z.string().nullable() }),
      handler: async ({ query, scope }, ctx) => {
        requireOperator(ctx.principal);
        const items = await vault.audit(scope, {
          ...(query.name ? { name: query.name } : {}),
          ...(query.since ? { since: parseSince(query.since, clock()) } : {}),
          ...(query.before ? { before: query.before } : {}),
          limit: query.limit,
        });
        return { items, nextBefore: items.length === query.limit ? items[items.length - 1]!.id : null };
      },
    }),
    defineRoute({
      method: "GET",
      path: base,
      summary: "List secrets (metadata only, never values)",
      tags: ["vault"],
      auth: "tenant",
      params: TenantParams,
      query: z.strictObject({
        prefix: z.string().max(256).default(""),
        after: z.string().max(256).optional(),
        limit: queryInt(1, 1000).default(100),
        includeDeleted: bool.default(false),
      }),
      response: z.object({ items: z.array(SecretMeta), nextAfter: z.string().nullable() }),
      handler: async ({ query, scope }, ctx) => {
        const d = await vault.list(caller(scope, ctx), {
          prefix: query.prefix,
          ...(query.after !== undefined ? { after: query.after } : {}),
          limit: query.limit,
          includeDeleted: query.includeDeleted,
        });
        const items = d.result;
        return reply({ ...d, result: { items, nextAfter: items.length === query.limit ? items[items.length - 1]!.name : null } });
      },
    }),
    defineRoute({
      method: "PUT",
      path: `${base}/:name`,
      summary: "Write a new version of a secret",
      tags: ["vault"],
      auth: "tenant",
      params: SecretParams,
      body: PutSecretRequest,
      response: VersionMeta,
      status: 201,
      handler: async ({ params, body, scope }, ctx) => reply(await vault.put(caller(scope, ctx), params.name, body), 201),
    }),
    defineRoute({
      method: "GET",
      path: `${base}/:name`,
      summary: "Read a secret (current version, or ?version=N)",
      tags: ["vault"],
      auth: "tenant",
      params: SecretParams,
      query: z.strictObject({ version: queryInt(1, 2_147_483_647).optional() }),
      response: SecretValue,
      handler: async ({ params, query, scope }, ctx) => reply(await vault.get(caller(scope, ctx), params.name, query.version)),
    }),
    defineRoute({
      method: "GET",
      path: `${base}/:name/versions`,
      summary: "A secret's versions (metadata only)",
      tags: ["vault"],
      auth: "tenant",
      params: SecretParams,
      response: z.object({ items: z.array(VersionMeta) }),
      handler: async ({ params, scope }, ctx) => {
        const d = await vault.versions(caller(scope, ctx), params.name);
        return reply({ ...d, result: { items: d.result } });
      },
    }),
    defineRoute({
      method: "DELETE",
      path: `${base}/:name`,
      summary: "Delete a secret (a tombstone; versions are kept until destroyed)",
      tags: ["vault"],
      auth: "tenant",
      params: SecretParams,
      status: 204,
      handler: async ({ params, scope }, ctx) => reply(await vault.delete(caller(scope, ctx), params.name), 204),
    }),
    defineRoute({
      method: "DELETE",
      path: `${base}/:name/versions/:version`,
      summary: "Destroy one version: its ciphertext is erased for good",
      tags: ["vault"],
      auth: "tenant",
      params: VersionParams,
      status: 204,
      handler: async ({ params, scope }, ctx) => reply(await vault.destroy(caller(scope, ctx), params.name, params.version), 204),
    }),
  ];
}
