/**
 * The thin node:http binding of the A2A server: JSON-RPC on POST, SSE for streams, and the Agent
 * Card at `/.well-known/agent-card.json` (and the legacy `/.well-known/agent.json`).
 */
import { createHash } from "node:crypto";
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import { ADVERTISE_URL_HEADER, type Authenticated, type CallerAuthenticator } from "./caller.js";
import { A2AError, invalidRequest, payloadTooLarge, toA2AError, unauthenticated, versionNotSupported } from "./errors.js";
import { errorEnvelope, parseVersion, type JsonRpcHandler, type RpcOutcome } from "./jsonrpc.js";
import type { ProtocolVersion } from "./service.js";

export const CARD_PATHS = ["/.well-known/agent-card.json", "/.well-known/agent.json"];

/** Returns the (signed) card for a version, advertising `url`; `viaIngress`: the URL is the platform ingress (bearer auth). */
export type CardProvider = (version: ProtocolVersion, url: string, viaIngress: boolean) => Promise<Record<string, unknown>>;

export interface A2AHttpOptions {
  rpc: JsonRpcHandler;
  cards: CardProvider;
  authenticate: CallerAuthenticator;
  /** Largest accepted JSON-RPC body. */
  bodyLimit?: number;
  /** The URL callers reach this server at (the card's interface URL); default: from the Host header. */
  publicUrl?: string;
  /** Path of the JSON-RPC endpoint. */
  rpcPath?: string;
  /** SSE comment interval that keeps idle streams alive through proxies. */
  keepAliveMs?: number;
  /**
   * Where requests for other paths go (the agent's own endpoint behind the same mesh proxy, e.g.
   * its bridge's `/invoke`); absent = 404. Everything is forwarded as it came.
   */
  fallback?: string | (() => string);
  log?: Logger;
}

const JSON_HEADERS = { "content-type": "application/json" };
const SSE_HEADERS = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache",
  connection: "keep-alive",
  "x-accel-buffering": "no",
};

function sendJson(res: ServerResponse, status: number, body: string, extra?: Record<string, string>): void {
  res.writeHead(status, { ...JSON_HEADERS, "content-length": Buffer.byteLength(body), ...extra });
  res.end(body);
}

function sendError(res: ServerResponse, err: A2AError, id: string | number | null = null): void {
  const extra: Record<string, string> = err.httpStatus === 401 ? { "www-authenticate": 'Bearer realm="a2a"' } : {};
  sendJson(res, err.httpStatus, errorEnvelope(id, err), extra);
}

/** Reads the body up to `limit` bytes; rejects with an A2AError beyond it. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"] ?? NaN);
    if (declared > limit) {
      req.resume();
      reject(payloadTooLarge(limit));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on("data", (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        reject(payloadTooLarge(limit));
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (!failed) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    });
    req.on("error", (e) => {
      if (!failed) reject(e);
    });
  });
}

/** Sends a comment on every open stream now and then, so proxies keep idle streams open. */
class KeepAlive {
  private readonly open = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly everyMs: number) {}

  add(res: ServerResponse): void {
    this.open.add(res);
    this.timer ??= setInterval(() => {
      for (const r of this.open) r.write(": keep-alive\n\n");
    }, this.everyMs).unref();
  }

  delete(res: ServerResponse): void {
    this.open.delete(res);
    if (this.open.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}

/** Writes an RPC outcome: one JSON response, or an SSE stream that ends with the last event. */
export async function writeOutcome(res: ServerResponse, out: RpcOutcome, keepAlive?: KeepAlive): Promise<void> {
  if (out.kind === "json") {
    sendJson(res, out.status, out.body);
    return;
  }
  // Headers leave with the first batch of events; each batch of events is one write.
  res.writeHead(200, SSE_HEADERS);
  const onClose = () => out.close();
  res.once("close", onClose);
  keepAlive?.add(res);
  try {
    for (;;) {
      const { chunk, done } = await out.next();
      if (res.destroyed) break;
      if (done) {
        res.end(chunk);
        break;
      }
      if (!res.write(chunk)) {
        await new Promise<void>((r) => {
          res.once("drain", r);
          res.once("close", r);
        });
      }
    }
  } finally {
    keepAlive?.delete(res);
    res.off("close", onClose);
    if (!res.writableEnded) res.end();
  }
}

const forwardAgent = new HttpAgent({ keepAlive: true, maxSockets: 256 });

/** Passes a request through to `base` unchanged (status, headers and body streamed both ways). */
function forward(req: IncomingMessage, res: ServerResponse, base: string): void {
  const target = new URL(req.url ?? "/", base);
  const up = httpRequest(
    {
      host: target.hostname,
      port: target.port,
      path: target.pathname + target.search,
      method: req.method,
      headers: req.headers,
      agent: forwardAgent,
    },
    (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    },
  );
  up.on("error", () => {
    if (res.headersSent) res.destroy();
    else sendJson(res, 502, JSON.stringify({ error: "the agent process is not reachable" }));
  });
  res.on("close", () => {
    if (!res.writableFinished) up.destroy();
  });
  req.pipe(up);
}

function etagOf(body: string): string {
  return `W/"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
}

/** Creates the request listener of an A2A server. */
export function createA2AListener(opts: A2AHttpOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { rpc, cards, authenticate, bodyLimit = 1024 * 1024, rpcPath = "/", keepAliveMs = 15_000, log } = opts;
  const keepAlive = new KeepAlive(keepAliveMs);
  const rpcPaths = new Set([rpcPath, rpcPath.endsWith("/") ? rpcPath.slice(0, -1) || "/" : rpcPath + "/"]);

  const urlFor = (req: IncomingMessage, auth: Authenticated | null): string => {
    if (auth?.advertiseUrl) return auth.advertiseUrl;
    if (opts.publicUrl) return opts.publicUrl;
    const host = req.headers.host ?? "127.0.0.1";
    return `http://${host}${rpcPath === "/" ? "/" : rpcPath}`;
  };

  const serveCard = async (req: IncomingMessage, res: ServerResponse) => {
    // The card is public; authentication only matters for a relay that asks for its own URL in it.
    let auth: Authenticated | null = null;
    if (req.headers[ADVERTISE_URL_HEADER] !== undefined) auth = await authenticate(req);
    const header = req.headers["a2a-version"];
    const version = parseVersion(typeof header === "string" ? header : undefined);
    if (!version) {
      const e = versionNotSupported(String(header));
      sendError(res, new A2AError(e.code, e.message, { reason: e.reason, httpStatus: 400 }));
      return;
    }
    const card = await cards(version, urlFor(req, auth), auth?.advertiseUrl !== undefined);
    const body = JSON.stringify(card);
    const etag = etagOf(body);
    const headers = { etag, vary: "A2A-Version", "cache-control": "public, max-age=300" };
    if (req.headers["if-none-match"] === etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...JSON_HEADERS, "content-length": Buffer.byteLength(body), ...headers });
    res.end(req.method === "HEAD" ? undefined : body);
  };

  const serveRpc = async (req: IncomingMessage, res: ServerResponse) => {
    const type = (req.headers["content-type"] ?? "application/json").split(";")[0]!.trim().toLowerCase();
    if (type !== "application/json") {
      req.resume();
      const e = invalidRequest(`Content-Type must be application/json (got '${type}')`);
      sendError(res, new A2AError(e.code, e.message, { reason: "UNSUPPORTED_MEDIA_TYPE", httpStatus: 415 }));
      return;
    }
    const auth = await authenticate(req);
    if (!auth) {
      req.resume();
      throw unauthenticated("this A2A server accepts calls through the Hexr mesh (mTLS with an SVID) or the platform ingress");
    }
    const body = await readBody(req, bodyLimit);
    const header = req.headers["a2a-version"];
    const tp = req.headers["traceparent"];
    const ts = req.headers["tracestate"];
    const trace = typeof tp === "string" ? { traceparent: tp, ...(typeof ts === "string" ? { tracestate: ts } : {}) } : undefined;
    const out = await rpc.handle(body, {
      ...(trace ? { trace } : {}),
      caller: auth.caller,
      version: typeof header === "string" ? header : undefined,
      url: urlFor(req, auth),
    });
    await writeOutcome(res, out, keepAlive);
  };

  return (req, res) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    let work: Promise<void>;
    if ((req.method === "GET" || req.method === "HEAD") && CARD_PATHS.includes(path)) work = serveCard(req, res);
    else if (req.method === "POST" && rpcPaths.has(path)) work = serveRpc(req, res);
    else if (opts.fallback) {
      forward(req, res, typeof opts.fallback === "function" ? opts.fallback() : opts.fallback);
      return;
    } else {
      req.resume();
      const body = JSON.stringify({
        error: `no A2A endpoint at ${req.method} ${path}; POST JSON-RPC to ${rpcPath}, GET ${CARD_PATHS[0]}`,
      });
      sendJson(res, 404, body);
      return;
    }
    work.catch((err: unknown) => {
      const e = toA2AError(err);
      if (e.code === -32603) log?.error({ err }, "a2a: request failed");
      if (res.headersSent) res.destroy();
      else sendError(res, e);
    });
  };
}
