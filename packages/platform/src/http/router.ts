import { HexrError } from "@hexr/core";
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { z, type ZodType } from "zod";
import { bearerToken, type Authenticator } from "../auth/authenticator.js";
import { mayAccessTenant, requireAdmin, unauthenticated, type Principal, type TenantScope } from "../auth/principal.js";
import { sendProblem, toProblem, validationError } from "./problem.js";

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/**
 * Who may call a route:
 * - `public`: anyone (health, discovery documents);
 * - `authenticated`: any principal; the handler decides;
 * - `admin`: an admin API key;
 * - `tenant`: the path has `:tenant`, and the caller must belong to it (or be admin).
 */
export type RouteAuth = "public" | "authenticated" | "admin" | "tenant";

export interface RequestContext {
  readonly requestId: string;
  readonly principal: Principal;
  readonly log: Logger;
  /** Aborted when the client goes away or the server shuts down. */
  readonly signal: AbortSignal;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
}

export interface HandlerInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  /** Present on `tenant` routes: the resolved, authorized tenant. */
  scope: TenantScope;
}

/** Returned by a handler that wrote the response itself (streams, redirects, non-JSON). */
export const RESPONSE_SENT: unique symbol = Symbol("hexr.response-sent");

/** A handler's result with explicit status and headers. */
export class Reply<T> {
  constructor(
    readonly body: T,
    readonly status = 200,
    readonly headers: Record<string, string> = {},
  ) {}
}

export interface RouteDef<P = unknown, Q = unknown, B = unknown, R = unknown> {
  method: HttpMethod;
  /** e.g. `/api/v1/tenants/:tenant/keys/:id` */
  path: string;
  summary: string;
  description?: string;
  tags?: string[];
  auth: RouteAuth;
  params?: ZodType<P>;
  query?: ZodType<Q>;
  body?: ZodType<B>;
  /** Documents the success body in OpenAPI; 204 routes have none. */
  response?: ZodType<R>;
  /** Success status, 200 by default. */
  status?: number;
  /** Max request body size for this route, overriding the server default. */
  bodyLimit?: number;
  /** Content types the body may have; JSON by default. A non-JSON body arrives as a Buffer. */
  accepts?: string[];
  handler(input: HandlerInput<P, Q, B>, ctx: RequestContext): Promise<R | Reply<R> | typeof RESPONSE_SENT | undefined>;
}

/** Identity helper that keeps zod's inference for a route's handler input. */
export function defineRoute<P = Record<string, never>, Q = Record<string, never>, B = undefined, R = unknown>(
  def: RouteDef<P, Q, B, R>,
): RouteDef {
  return def as unknown as RouteDef;
}

interface CompiledRoute {
  def: RouteDef;
  segments: string[];
  paramNames: (string | null)[];
}

export interface RouterOptions {
  log: Logger;
  authenticators: Authenticator[];
  /** Resolves a tenant name to a scope, or throws `tenant.not_found`. Called only after access was checked. */
  resolveTenant: (name: string) => Promise<TenantScope>;
  bodyLimit?: number;
  /** Aborted at shutdown so long-running handlers (streams) end. */
  shutdownSignal?: AbortSignal;
}

const REQUEST_ID_OK = /^[A-Za-z0-9._:-]{1,128}$/;
const EMPTY = Object.freeze({});

export class Router {
  private readonly routes: CompiledRoute[] = [];
  private readonly statics = new Map<string, CompiledRoute>();
  readonly defs: RouteDef[] = [];

  constructor(private readonly opts: RouterOptions) {}

  add(...defs: RouteDef[]): this {
    for (const def of defs) {
      const segments = def.path.split("/").filter(Boolean);
      const compiled: CompiledRoute = {
        def,
        segments,
        paramNames: segments.map((s) => (s.startsWith(":") ? s.slice(1) : null)),
      };
      if (def.auth === "tenant" && !compiled.paramNames.includes("tenant")) {
        throw new Error(`route ${def.method} ${def.path}: tenant routes need a :tenant path parameter`);
      }
      const key = `${def.method} ${def.path}`;
      if (this.defs.some((d) => `${d.method} ${d.path}` === key)) throw new Error(`route ${key} is defined twice`);
      this.defs.push(def);
      if (compiled.paramNames.every((p) => p === null)) this.statics.set(`${def.method} /${segments.join("/")}`, compiled);
      else this.routes.push(compiled);
    }
    return this;
  }

  private match(
    method: string,
    pathname: string,
  ): { route?: CompiledRoute; params?: Record<string, string>; allowed?: string[] } {
    const parts = pathname.split("/").filter(Boolean);
    const staticHit = this.statics.get(`${method} /${parts.join("/")}`);
    if (staticHit) return { route: staticHit, params: {} };
    const allowed: string[] = [];
    const candidates = [...this.routes, ...this.statics.values()];
    for (const r of candidates) {
      if (r.segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < parts.length; i++) {
        const name = r.paramNames[i];
        const part = parts[i]!;
        if (name) {
          try {
            params[name] = decodeURIComponent(part);
          } catch {
            ok = false;
            break;
          }
        } else if (r.segments[i] !== part) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      if (r.def.method === method) return { route: r, params };
      allowed.push(r.def.method);
    }
    return { allowed };
  }

  /** Handles a request; returns false when no route matches its path (so another handler may). */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const incomingId = req.headers["x-request-id"];
    const requestId = typeof incomingId === "string" && REQUEST_ID_OK.test(incomingId) ? incomingId : randomUUID();
    res.setHeader("x-request-id", requestId);
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const pathname = q === -1 ? url : url.slice(0, q);
    const method = req.method === "HEAD" ? "GET" : (req.method ?? "GET");
    const found = this.match(method, pathname);
    if (!found.route) {
      if (found.allowed && found.allowed.length > 0) {
        const problem = toProblem(
          new HexrError(
            "request.method_not_allowed",
            `${method} is not allowed on ${pathname}; use ${found.allowed.join(", ")}`,
            {
              kind: "invalid_argument",
            },
          ),
          requestId,
        );
        sendProblem(res, { ...problem, status: 405, title: "Method Not Allowed" }, { allow: found.allowed.join(", ") });
        return true;
      }
      return false;
    }
    const { def } = found.route;
    const log = this.opts.log.child({ requestId });
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort(new HexrError("request.aborted", "client went away", { kind: "unavailable" }));
    };
    res.once("close", onClose);
    const shutdown = this.opts.shutdownSignal;
    const onShutdown = () =>
      abort.abort(new HexrError("server.shutting_down", "server is shutting down", { kind: "unavailable" }));
    shutdown?.addEventListener("abort", onShutdown, { once: true });
    const started = process.hrtime.bigint();
    let principal: Principal = { kind: "anonymous" };
    try {
      principal = await this.authenticate(req, def.auth);
      const ctx: RequestContext = { requestId, principal, log, signal: abort.signal, req, res };
      const params = def.params ? parseWith(def.params, found.params ?? {}, "params") : (found.params ?? EMPTY);
      let scope: TenantScope | undefined;
      if (def.auth === "tenant") {
        const tenant = (found.params ?? {})["tenant"] ?? "";
        if (!mayAccessTenant(principal, tenant)) {
          throw new HexrError("auth.forbidden", `the caller may not act in tenant '${tenant}'`, { kind: "permission_denied" });
        }
        scope = await this.opts.resolveTenant(tenant);
      }
      const query = def.query ? parseWith(def.query, parseQuery(url, q), "query") : EMPTY;
      const body = def.body ? parseWith(def.body, await this.readBody(req, def), "body") : undefined;
      const result = await def.handler({ params, query, body, scope: scope as TenantScope }, ctx);
      if (result !== RESPONSE_SENT) this.reply(res, result, def.status ?? 200, req.method === "HEAD");
    } catch (err) {
      const problem = toProblem(err, requestId);
      if (problem.status >= 500) log.error({ err, method, path: pathname }, "request failed");
      const headers: Record<string, string> = {};
      if (problem.status === 401) headers["www-authenticate"] = 'Bearer realm="hexr"';
      sendProblem(res, problem, headers);
    } finally {
      shutdown?.removeEventListener("abort", onShutdown);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (log.isLevelEnabled("debug")) {
        log.debug({ method, path: def.path, status: res.statusCode, ms: Math.round(ms * 1000) / 1000 }, "request");
      }
    }
    return true;
  }

  private async authenticate(req: IncomingMessage, auth: RouteAuth): Promise<Principal> {
    if (auth === "public") return { kind: "anonymous" };
    const bearer = bearerToken(req);
    if (bearer === undefined) throw unauthenticated();
    for (const a of this.opts.authenticators) {
      const p = await a.authenticate(req, bearer);
      if (p) {
        if (auth === "admin") requireAdmin(p);
        return p;
      }
    }
    throw unauthenticated();
  }

  private reply(res: ServerResponse, result: unknown, status: number, head: boolean): void {
    let body = result;
    let headers: Record<string, string> = {};
    if (result instanceof Reply) {
      body = result.body;
      status = result.status;
      headers = result.headers;
    }
    if (body === undefined || status === 204) {
      res.writeHead(status === 200 ? 204 : status, headers);
      res.end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
    res.end(head ? undefined : text);
  }

  private async readBody(req: IncomingMessage, def: RouteDef): Promise<unknown> {
    const limit = def.bodyLimit ?? this.opts.bodyLimit ?? 1024 * 1024;
    const declared = Number(req.headers["content-length"] ?? NaN);
    if (declared > limit) throw tooLarge(limit);
    const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    const accepts = def.accepts ?? ["application/json"];
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > limit) {
        req.resume();
        throw tooLarge(limit);
      }
      chunks.push(chunk as Buffer);
    }
    const raw = Buffer.concat(chunks);
    if (raw.length === 0) {
      throw new HexrError("request.body_required", "this request needs a JSON body", { kind: "invalid_argument" });
    }
    if (!accepts.includes(type)) {
      throw new HexrError(
        "request.unsupported_media_type",
        `content-type must be ${accepts.join(" or ")} (got '${type || "none"}')`,
        {
          kind: "unsupported_media_type",
        },
      );
    }
    if (type !== "application/json") return raw;
    try {
      return JSON.parse(raw.toString("utf8"));
    } catch (err) {
      throw new HexrError("request.invalid_json", `request body is not valid JSON: ${(err as Error).message}`, {
        kind: "invalid_argument",
      });
    }
  }
}

function tooLarge(limit: number): HexrError {
  return new HexrError("request.too_large", `request body exceeds the limit of ${limit} bytes`, {
    kind: "payload_too_large",
    details: { limit },
  });
}

function parseQuery(url: string, q: number): Record<string, string> {
  if (q === -1) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(url.slice(q + 1))) out[k] = v;
  return out;
}

function parseWith<T>(schema: ZodType<T>, value: unknown, where: "body" | "query" | "params"): T {
  const r = schema.safeParse(value);
  if (!r.success) throw validationError(where, r.error);
  return r.data;
}

/** Query-string numbers arrive as strings. */
export const queryInt = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
