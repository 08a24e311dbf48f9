import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { traceAgentInvocation } from "../telemetry/invocation.js";
import type { AgentContext, AgentHandler } from "./define.js";

/** Headers shared with the mesh proxy (they must match packages/platform/src/mesh/headers.ts). */
export const CALLER_HEADER = "x-hexr-caller-spiffe-id";
export const MESH_TOKEN_HEADER = "x-hexr-mesh-token";
export const TARGET_HEADER = "x-hexr-target";

/** Body of `POST /invoke`, the bridge between the sidecars (mesh, A2A) and the handler. */
export interface InvokeRequest {
  input: unknown;
  taskId?: string;
  contextId?: string;
  /** Ask for NDJSON updates when the handler is a generator. */
  stream?: boolean;
}

export interface BridgeOptions {
  handler: AgentHandler;
  /** Builds the context of one call. */
  context: (call: { caller: string | undefined; signal: AbortSignal; taskId?: string; contextId?: string }) => AgentContext;
  meshToken: string;
  /** Recorded on the `hexr.agent.invoke` span of each call. */
  framework?: string;
  port?: number;
  maxBodyBytes?: number;
  onError?: (err: unknown) => void;
}

function tokenOk(presented: string | string[] | undefined, expected: string): boolean {
  if (typeof presented !== "string") return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return typeof v === "object" && v !== null && typeof (v as Record<symbol, unknown>)[Symbol.asyncIterator] === "function";
}

/** Errors a handler throws on purpose (`HexrError`s or `{ expose: true }`) reach the caller; others stay in the agent's log. */
function publicError(err: unknown): { code: string; message: string } {
  const e = err as { code?: unknown; message?: unknown; expose?: unknown; name?: unknown };
  if (e && (e.name === "HexrError" || e.expose === true) && typeof e.message === "string") {
    return { code: typeof e.code === "string" ? e.code : "agent.handler_failed", message: e.message };
  }
  return { code: "agent.handler_failed", message: "the agent's handler failed; its log has the details" };
}

async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw Object.assign(new Error(`body exceeds ${limit} bytes`), { status: 413 });
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * The agent process's loopback endpoint. Only its own sidecars hold the mesh token, so the caller
 * header it carries can be believed; any other local process is refused.
 */
export async function startBridge(opts: BridgeOptions): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const limit = opts.maxBodyBytes ?? 4 * 1024 * 1024;
  const server = createServer((req, res) => {
    void (async () => {
      if (req.method === "GET" && req.url === "/healthz") return sendJson(res, 200, { status: "ok" });
      if (req.method !== "POST" || req.url !== "/invoke")
        return sendJson(res, 404, { error: { code: "bridge.not_found", message: "POST /invoke" } });
      if (!tokenOk(req.headers[MESH_TOKEN_HEADER], opts.meshToken)) {
        return sendJson(res, 403, { error: { code: "bridge.forbidden", message: "only this agent's own sidecars may call it" } });
      }
      let call: InvokeRequest;
      try {
        const parsed = JSON.parse(await readBody(req, limit)) as unknown;
        if (typeof parsed !== "object" || parsed === null || !("input" in parsed))
          throw new Error("body must be an object with 'input'");
        call = parsed as InvokeRequest;
      } catch (err) {
        const status = (err as { status?: number }).status ?? 400;
        return sendJson(res, status, { error: { code: "bridge.bad_request", message: (err as Error).message } });
      }
      const abort = new AbortController();
      res.on("close", () => {
        if (!res.writableFinished) abort.abort(new Error("caller went away"));
      });
      const ctx = opts.context({
        caller: req.headers[CALLER_HEADER] as string | undefined,
        signal: abort.signal,
        ...(call.taskId ? { taskId: call.taskId } : {}),
        ...(call.contextId ? { contextId: call.contextId } : {}),
      });
      try {
        // Each call is a hexr.agent.invoke span continuing the caller's W3C trace (a no-op without telemetry).
        const result = await traceAgentInvocation(
          { headers: req.headers, caller: ctx.caller, taskId: ctx.taskId, framework: opts.framework ?? "custom" },
          () => opts.handler(call.input, ctx),
        );
        if (!isAsyncIterable(result)) return sendJson(res, 200, { output: result ?? null });
        if (!call.stream) {
          let last: unknown = null;
          for await (const u of result) last = u;
          return sendJson(res, 200, { output: last });
        }
        res.writeHead(200, { "content-type": "application/x-ndjson" });
        let last: unknown = null;
        for await (const u of result) {
          if (abort.signal.aborted) break;
          last = u;
          res.write(JSON.stringify({ update: u }) + "\n");
        }
        res.end(JSON.stringify({ output: last }) + "\n");
      } catch (err) {
        opts.onError?.(err);
        if (res.headersSent) res.end(JSON.stringify({ error: publicError(err) }) + "\n");
        else sendJson(res, 500, { error: publicError(err) });
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
