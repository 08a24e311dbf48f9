import { defineRoute, Reply, type RouteDef } from "../../http/router.js";
import { CacheKeyResponse, ExchangeRequest, ExchangeResponse } from "./schema.js";
import type { ExchangeService } from "./service.js";

/** Credentials and keys must not be kept by any cache between the agent and the platform. */
const NO_STORE = { "cache-control": "no-store", pragma: "no-cache" };

export function exchangeRoutes(exchange: ExchangeService): RouteDef[] {
  return [
    defineRoute({
      method: "POST",
      path: "/api/v1/exchange",
      summary: "Exchange the calling agent's JWT-SVID for short-lived cloud credentials for one of its tenant's tools",
      description:
        "Bearer: a JWT-SVID whose audience includes spiffe://<trust-domain>/system/credentials. The tenant comes from the SVID.",
      tags: ["credentials"],
      auth: "authenticated",
      body: ExchangeRequest,
      response: ExchangeResponse,
      handler: async ({ body }, ctx) => new Reply(await exchange.exchange(ctx.principal, body.tool, ctx.signal), 200, NO_STORE),
    }),
    defineRoute({
      method: "POST",
      path: "/api/v1/exchange/cache-key",
      summary: "The key the calling agent seals its shared (L2) credential cache entries with",
      tags: ["credentials"],
      auth: "authenticated",
      response: CacheKeyResponse,
      handler: async (_input, ctx) => new Reply(exchange.cacheKeyFor(ctx.principal), 200, NO_STORE),
    }),
  ];
}
