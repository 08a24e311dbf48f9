import { z } from "zod";
import { defineRoute, type RouteDef } from "../http/router.js";
import { ApiKey, CreateApiKeyRequest, CreatedApiKey, type ApiKeyService } from "./service.js";

export function apiKeyRoutes(keys: ApiKeyService): RouteDef[] {
  return [
    defineRoute({
      method: "POST",
      path: "/api/v1/keys",
      summary: "Create an API key (the secret is in this response only)",
      tags: ["api-keys"],
      auth: "authenticated",
      body: CreateApiKeyRequest,
      response: CreatedApiKey,
      status: 201,
      handler: async ({ body }, ctx) => keys.create(body, ctx.principal),
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/keys",
      summary: "List API keys (metadata only, never secrets)",
      tags: ["api-keys"],
      auth: "authenticated",
      query: z.strictObject({ includeRevoked: z.enum(["true", "false"]).default("false") }),
      response: z.object({ items: z.array(ApiKey) }),
      handler: async ({ query }, ctx) => ({ items: await keys.list(ctx.principal, query.includeRevoked === "true") }),
    }),
    defineRoute({
      method: "DELETE",
      path: "/api/v1/keys/:id",
      summary: "Revoke an API key",
      tags: ["api-keys"],
      auth: "authenticated",
      params: z.object({ id: z.string().regex(/^[a-z0-9]{16}$/, "an API key id is 16 lowercase letters or digits") }),
      status: 204,
      handler: async ({ params }, ctx) => {
        await keys.revoke(params.id, ctx.principal);
        return undefined;
      },
    }),
  ];
}
