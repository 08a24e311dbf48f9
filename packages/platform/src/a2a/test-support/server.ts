import { randomUUID } from "node:crypto";
import { unsafeTenantScope } from "../../auth/principal.js";
import type { Storage } from "../../storage/types.js";
import { CALLER_HEADER, MESH_TOKEN_HEADER } from "../../mesh/headers.js";
import { ON_BEHALF_OF_HEADER, encodeOnBehalfOf, meshCaller } from "../caller.js";
import type { AgentMetadata, CardSigner } from "../card.js";
import type { A2AHandler } from "../handler.js";
import { startA2AServer, type RunningA2AServer } from "../server.js";
import type { Caller } from "../service.js";

export const MESH_TOKEN = "test-mesh-token-0123456789abcdef0123456789";
export const ALICE = "spiffe://hexr.local/agent/acme/alice/main";
export const BOB = "spiffe://hexr.local/agent/acme/bob/main";
export const PLATFORM = "spiffe://hexr.local/system/platform";

/** Headers the inbound mesh proxy would add for a verified caller. */
export function asCaller(spiffeId: string): Record<string, string> {
  return { [MESH_TOKEN_HEADER]: MESH_TOKEN, [CALLER_HEADER]: spiffeId };
}

/** Headers of the platform ingress relaying for an API-key principal. */
export function viaIngress(principal: { id: string; admin?: boolean }): Record<string, string> {
  return {
    ...asCaller(PLATFORM),
    [ON_BEHALF_OF_HEADER]: encodeOnBehalfOf({ id: principal.id, spiffeId: null, admin: principal.admin === true }),
  };
}

export type Json = Record<string, unknown>;

export interface RpcReply {
  status: number;
  body: { jsonrpc: string; id: unknown; result?: Json; error?: { code: number; message: string; data?: Json[] } };
}

/** Walks `a.b[0].c` through parsed JSON (tests assert on the value). */
export function at<T = unknown>(value: unknown, path: string): T {
  let cur: unknown = value;
  for (const key of path
    .replace(/\[(\d+)\]/g, ".$1")
    .split(".")
    .filter(Boolean)) {
    if (cur === null || typeof cur !== "object") return undefined as T;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur as T;
}

export interface TestA2A {
  server: RunningA2AServer;
  url: string;
  /** One JSON-RPC call; `version` sets A2A-Version ("0.3" by default: no header). */
  rpc(
    method: string,
    params?: unknown,
    opts?: { version?: string; headers?: Record<string, string>; id?: unknown },
  ): Promise<RpcReply>;
  /** A streaming call, read to its end; returns the `result` (or `error`) of every SSE event. */
  stream(
    method: string,
    params: unknown,
    opts?: { version?: string; headers?: Record<string, string> },
  ): Promise<{ status: number; contentType: string; events: Json[] }>;
  /** Raw POST of a body. */
  post(body: string, headers?: Record<string, string>): Promise<Response>;
  /** Every stored task row, for "nothing changed" checks. */
  rows(): Promise<Array<Record<string, unknown>>>;
  close(): Promise<void>;
}

export interface TestA2AOptions {
  storage: Storage;
  handler: A2AHandler;
  metadata?: AgentMetadata;
  agent?: string;
  runner?: string;
  bodyLimit?: number;
  signer?: CardSigner;
  spiffeId?: string;
  authorize?: (caller: Caller, method: string) => void | Promise<void>;
}

export function v1Message(text: string, extra: Record<string, unknown> = {}) {
  return { messageId: randomUUID(), role: "ROLE_USER", parts: [{ text }], ...extra };
}
export function v03Message(text: string, extra: Record<string, unknown> = {}) {
  return { kind: "message", messageId: randomUUID(), role: "user", parts: [{ kind: "text", text }], ...extra };
}

export async function startTestA2A(o: TestA2AOptions): Promise<TestA2A> {
  const server = await startA2AServer({
    storage: o.storage,
    scope: unsafeTenantScope("tenant-acme", "acme"),
    agent: o.agent ?? "writer",
    handler: o.handler,
    metadata: o.metadata ?? { name: o.agent ?? "writer", description: "writes things" },
    authenticate: meshCaller({ meshToken: MESH_TOKEN }),
    ...(o.runner ? { runner: o.runner } : {}),
    ...(o.bodyLimit ? { bodyLimit: o.bodyLimit } : {}),
    ...(o.signer ? { signer: o.signer } : {}),
    ...(o.spiffeId ? { spiffeId: o.spiffeId } : {}),
    ...(o.authorize ? { authorize: o.authorize } : {}),
  });
  const url = server.url;
  let seq = 0;
  const headersOf = (version: string | undefined, extra: Record<string, string> | undefined) => ({
    "content-type": "application/json",
    ...(version ? { "a2a-version": version } : {}),
    ...asCaller(ALICE),
    ...extra,
  });
  return {
    server,
    url,
    async rpc(method, params, opts = {}) {
      const id = opts.id ?? ++seq;
      const res = await fetch(url, {
        method: "POST",
        headers: headersOf(opts.version, opts.headers),
        body: JSON.stringify({ jsonrpc: "2.0", id, method, ...(params !== undefined ? { params } : {}) }),
      });
      return { status: res.status, body: (await res.json()) as RpcReply["body"] };
    },
    async stream(method, params, opts = {}) {
      const res = await fetch(url, {
        method: "POST",
        headers: { ...headersOf(opts.version, opts.headers), accept: "text/event-stream" },
        body: JSON.stringify({ jsonrpc: "2.0", id: ++seq, method, params }),
      });
      const contentType = res.headers.get("content-type") ?? "";
      const text = await res.text();
      if (!contentType.startsWith("text/event-stream"))
        return { status: res.status, contentType, events: [JSON.parse(text) as Json] };
      const events = text
        .split("\n\n")
        .map((chunk) =>
          chunk
            .split("\n")
            .filter((l) => l.startsWith("data: "))
            .map((l) => l.slice(6))
            .join("\n"),
        )
        .filter((d) => d.length > 0)
        .map((d) => JSON.parse(d) as Json);
      return { status: res.status, contentType, events };
    },
    post(body, headers = {}) {
      return fetch(url, { method: "POST", headers: headersOf(undefined, headers), body });
    },
    rows: () => o.storage.all("SELECT * FROM a2a_tasks ORDER BY id"),
    close: () => server.close(),
  };
}

/** Resolves when `pred` holds, polling; fails the test with `what` after a few seconds. */
export async function until(pred: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}
