/**
 * The A2A ingress for callers outside the mesh: each agent's A2A endpoint at `/a2a/<tenant>/<agent>`
 * (its card at `.../.well-known/agent-card.json`), authenticated by an API key or a JWT-SVID bearer,
 * authorized by policy (`a2a:send` on the target agent), and relayed to the agent — over mTLS with
 * the platform's own SVID, verifying the agent's SPIFFE ID — with the caller recorded. So the
 * official SDK, other platforms and scripts can call Hexr agents without an SVID.
 */
import { AgentName, HexrError, systemSpiffeId, TenantName } from "@hexr/core";
import { request as httpRequest, type Agent as HttpAgent, type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { Logger } from "pino";
import { z } from "zod";
import { principalName, type Principal, type TenantScope } from "../auth/principal.js";
import { defineRoute, RESPONSE_SENT, type RequestContext, type RouteDef } from "../http/router.js";
import { expectPeer } from "../mesh/outbound.js";
import { derToPem } from "../mesh/svid.js";
import type { PlatformModule } from "../module.js";
import type { PolicyEngine } from "../policy/types.js";
import type { LocalAuthority } from "../identity/authority/authority.js";
import { ADVERTISE_URL_HEADER, encodeOnBehalfOf, ON_BEHALF_OF_HEADER } from "./caller.js";
import { readBody } from "./http.js";
import { A2A_RPC_PATH } from "./sidecar.js";

/** Where the ingress relays an agent's calls. */
export interface IngressUpstream {
  /** The agent's A2A JSON-RPC endpoint. */
  url: string;
  /** The agent's SPIFFE ID: the policy resource, and the peer an https upstream must prove. */
  spiffeId: string;
  /** Connection pool to use (https: carries the platform's SVID for mTLS). */
  agent?: HttpAgent;
  /** Headers for the upstream (e.g. what a loopback proxy would add). */
  headers?: Record<string, string>;
}

export type IngressResolver = (scope: TenantScope, agent: string) => Promise<IngressUpstream>;

export interface A2AIngressOptions {
  resolve: IngressResolver;
  /** Decides `a2a:send` for every call; absent = the router's tenant check alone. */
  policy?: PolicyEngine;
  trustDomain: string;
  /** Base URL callers reach the platform at (cards advertise `<base>/a2a/<tenant>/<agent>`); default from Host. */
  publicUrl?: string;
  bodyLimit?: number;
  log?: Logger;
}

const Params = z.object({ tenant: TenantName, agent: AgentName });

// traceparent/tracestate: the agents' spans join the caller's trace (one trace across the relay).
const FORWARDED_REQUEST = [
  "content-type",
  "accept",
  "a2a-version",
  "a2a-extensions",
  "x-a2a-extensions",
  "if-none-match",
  "traceparent",
  "tracestate",
];
const FORWARDED_RESPONSE = ["content-type", "cache-control", "etag", "vary", "a2a-extensions", "x-a2a-extensions"];

function pick(headers: IncomingHttpHeaders, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = headers[n];
    if (typeof v === "string") out[n] = v;
  }
  return out;
}

/** The principal as the agent records it: owner key, SPIFFE ID when it has one, admin flag. */
function delegation(p: Principal): string {
  return encodeOnBehalfOf({
    id: principalName(p),
    spiffeId: p.kind === "workload" ? p.spiffeId : null,
    admin: p.kind === "admin",
  });
}

function relayFailed(target: string, err: Error): HexrError {
  return new HexrError("a2a.agent_unreachable", `agent ${target} is not reachable: ${err.message}`, { kind: "upstream" });
}

/** The platform's routes of the ingress. */
export function a2aIngressRoutes(opts: A2AIngressOptions): RouteDef[] {
  const { resolve, policy, log } = opts;
  const ingressId = systemSpiffeId(opts.trustDomain, "a2a").toString();
  const limit = opts.bodyLimit ?? 1024 * 1024;

  const advertised = (ctx: RequestContext, tenant: string, agent: string) => {
    const base = opts.publicUrl?.replace(/\/+$/, "") ?? `http://${ctx.req.headers.host ?? "127.0.0.1"}`;
    return `${base}/a2a/${tenant}/${agent}`;
  };

  const checkAudience = (p: Principal) => {
    // A JWT-SVID must be addressed to the ingress, not replayed from another service.
    if (p.kind === "workload" && p.via === "jwt-svid" && !(p.audience ?? []).includes(ingressId)) {
      throw new HexrError("a2a.wrong_audience", `the JWT-SVID is not addressed to ${ingressId}`, { kind: "unauthenticated" });
    }
  };

  const authorize = async (p: Principal, scope: TenantScope, up: IngressUpstream, method: string) => {
    if (!policy) return;
    const d = await policy.decide({
      principal: p,
      action: "a2a:send",
      resource: { type: "Agent", id: up.spiffeId, tenant: scope.tenant },
      context: { method },
    });
    if (!d.allowed) {
      throw new HexrError("a2a.forbidden", `policy denies ${principalName(p)} a2a:send to ${up.spiffeId}`, {
        kind: "permission_denied",
      });
    }
  };

  /** Sends one request upstream and pipes the answer back; the client going away aborts it. */
  const relay = (
    ctx: RequestContext,
    up: IngressUpstream,
    url: URL,
    method: string,
    headers: Record<string, string>,
    body?: Buffer,
  ) =>
    new Promise<void>((done, fail) => {
      const https = url.protocol === "https:";
      const options = {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method,
        headers: { ...headers, ...(body ? { "content-length": String(body.length) } : {}) },
        ...(up.agent ? { agent: up.agent } : {}),
        ...(https ? { servername: undefined, checkServerIdentity: expectPeer(up.spiffeId) } : {}),
      };
      const req = (https ? httpsRequest : httpRequest)(options, (res: IncomingMessage) => {
        ctx.res.writeHead(res.statusCode ?? 502, pick(res.headers, FORWARDED_RESPONSE));
        res.pipe(ctx.res);
        res.on("end", () => done());
        res.on("error", () => done());
      });
      req.on("error", (err) => fail(relayFailed(ctx.req.url ?? "", err)));
      ctx.res.on("close", () => {
        if (!ctx.res.writableFinished) req.destroy();
      });
      req.end(body);
    });

  const card = (path: string) =>
    defineRoute({
      method: "GET",
      path: `/a2a/:tenant/:agent/.well-known/${path}`,
      summary: "An agent's A2A Agent Card, with its interface URL pointing at this ingress",
      tags: ["a2a"],
      auth: "tenant",
      params: Params,
      handler: async ({ params, scope }, ctx) => {
        checkAudience(ctx.principal);
        const up = await resolve(scope, params.agent);
        const url = new URL(`/.well-known/${path}`, up.url);
        await relay(ctx, up, url, "GET", {
          ...pick(ctx.req.headers, FORWARDED_REQUEST),
          ...up.headers,
          [ON_BEHALF_OF_HEADER]: delegation(ctx.principal),
          [ADVERTISE_URL_HEADER]: advertised(ctx, scope.tenant, params.agent),
        });
        return RESPONSE_SENT;
      },
    });

  return [
    defineRoute({
      method: "POST",
      path: "/a2a/:tenant/:agent",
      summary: "Call an agent over A2A (JSON-RPC 2.0, v0.3 or v1.0 by A2A-Version; SSE for streams)",
      description:
        "Authenticated by API key or JWT-SVID (audience spiffe://<td>/system/a2a); relayed to the agent with the caller recorded.",
      tags: ["a2a"],
      auth: "tenant",
      params: Params,
      handler: async ({ params, scope }, ctx) => {
        checkAudience(ctx.principal);
        const body = await readBody(ctx.req, limit).catch((err: unknown) => {
          throw new HexrError("request.too_large", (err as Error).message, { kind: "payload_too_large", details: { limit } });
        });
        let method = "unknown";
        try {
          const m = (JSON.parse(body.toString("utf8")) as { method?: unknown }).method;
          if (typeof m === "string") method = m.slice(0, 100);
        } catch {
          // The agent answers malformed JSON with -32700 itself.
        }
        const up = await resolve(scope, params.agent);
        await authorize(ctx.principal, scope, up, method);
        const t0 = performance.now();
        await relay(
          ctx,
          up,
          new URL(up.url),
          "POST",
          {
            ...pick(ctx.req.headers, FORWARDED_REQUEST),
            ...up.headers,
            [ON_BEHALF_OF_HEADER]: delegation(ctx.principal),
            [ADVERTISE_URL_HEADER]: advertised(ctx, scope.tenant, params.agent),
          },
          body,
        );
        if (log?.isLevelEnabled("debug"))
          log.debug(
            {
              tenant: scope.tenant,
              agent: params.agent,
              method,
              caller: principalName(ctx.principal),
              ms: performance.now() - t0,
            },
            "a2a: relayed",
          );
        return RESPONSE_SENT;
      },
    }),
    card("agent-card.json"),
    card("agent.json"),
  ];
}

export interface RegistryResolverOptions {
  /** The registry: an agent name (or `agent/role`) → its inbound mesh proxy and SPIFFE ID. */
  lookup: (scope: TenantScope, agent: string) => Promise<{ url: string; spiffeId: string }>;
  authority: LocalAuthority;
  trustDomain: string;
  clock?: () => number;
}

/**
 * Resolves agents through the registry and connects to their inbound mesh proxy over mTLS with
 * an X.509-SVID for `spiffe://<td>/system/a2a`, minted by the platform's authority and renewed at
 * half its lifetime.
 */
export function registryResolver({ lookup, authority, trustDomain, clock = Date.now }: RegistryResolverOptions): IngressResolver {
  const self = systemSpiffeId(trustDomain, "a2a").toString();
  let current: { agent: HttpsAgent; renewAt: number } | undefined;
  let minting: Promise<HttpsAgent> | undefined;
  const pool = async (): Promise<HttpsAgent> => {
    if (current && clock() < current.renewAt) return current.agent;
    minting ??= (async () => {
      const svid = await authority.mintX509Svid(self);
      const old = current?.agent;
      const agent = new HttpsAgent({
        keepAlive: true,
        maxSockets: 256,
        cert: svid.certChainDer.map((d) => derToPem(d)).join(""),
        key: derToPem(svid.privateKeyPkcs8Der, "PRIVATE KEY"),
        ca: authority
          .x509Authorities()
          .map((d) => derToPem(d))
          .join(""),
        minVersion: "TLSv1.2",
      });
      current = { agent, renewAt: svid.issuedAt + (svid.expiresAt - svid.issuedAt) / 2 };
      // Connections of the previous SVID finish their requests, then go.
      if (old) setTimeout(() => old.destroy(), 30_000).unref();
      return agent;
    })().finally(() => (minting = undefined));
    return minting;
  };
  return async (scope, agent) => {
    const r = await lookup(scope, agent);
    return { url: new URL(A2A_RPC_PATH, r.url).toString(), spiffeId: r.spiffeId, agent: await pool() };
  };
}

export function createA2AIngressModule(deps: A2AIngressOptions): PlatformModule & { spiffeId: string } {
  return { name: "a2a", routes: a2aIngressRoutes(deps), spiffeId: systemSpiffeId(deps.trustDomain, "a2a").toString() };
}
