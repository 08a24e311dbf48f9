import { HexrError } from "@hexr/core";
import { randomUUID } from "node:crypto";
import { injectTraceHeaders, traceA2aSend } from "../telemetry/index.js";
import { fromHttpError, fromRpcError, unreachable, type RpcErrorBody } from "./errors.js";
import { sseEvents } from "./sse.js";
import type { A2AListTasksResult, A2AMessage, A2AMessageInput, A2AStreamEvent, A2ATask, A2ATaskState } from "./types.js";
import { verifyAgentCard, type VerifyAgentCardOptions } from "./verify-card.js";
import {
  METHODS,
  sendParams,
  sendResultFromWire,
  streamEventFromWire,
  taskFromWire,
  type A2AVersion,
  type SendConfig,
} from "./wire.js";

/** Where an agent's A2A endpoint is, and how to talk to it. */
export interface A2ATarget {
  /** The JSON-RPC endpoint. */
  url: string;
  /** Extra headers for every call (mesh target and token, a bearer for the ingress). */
  headers?: Record<string, string>;
  /** Where its card is (default: `/.well-known/agent-card.json` at the origin of `url`). */
  cardUrl?: string;
  /** The SPIFFE ID the agent must prove; its card signature is checked against it. */
  spiffeId?: string;
}

export type A2AResolver = (agent: string) => A2ATarget | Promise<A2ATarget>;

export interface A2AClientOptions {
  /** Finds an agent by name (the agent registry, through the mesh); URLs are used as they are. */
  resolve?: A2AResolver;
  /** A fetch that reaches the agent (e.g. one the mesh supplies for mTLS). */
  fetch?: typeof globalThis.fetch;
  /** Passed as `dispatcher` in every request (undici), e.g. an mTLS agent. */
  dispatcher?: unknown;
  /** Headers for every call, e.g. `authorization`. */
  headers?: Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>);
  /** Protocol version: 1.0 (default), 0.3, or `auto` (read from the agent's card, once per agent). */
  version?: A2AVersion | "auto";
}

export interface SendOptions extends SendConfig {
  /** Continue a task (multi-turn) or start a new task in a conversation. */
  taskId?: string;
  contextId?: string;
  /** Set it to make retries idempotent: the same messageId returns the same task. */
  messageId?: string;
  metadata?: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface ListTasksQuery {
  contextId?: string;
  status?: A2ATaskState;
  pageSize?: number;
  pageToken?: string;
  historyLength?: number;
  includeArtifacts?: boolean;
  signal?: AbortSignal;
}

export interface CardOptions {
  version?: A2AVersion;
  /** Verify the card's signature: trust anchors, and the expected SPIFFE ID (default: the target's). */
  verify?: VerifyAgentCardOptions;
  signal?: AbortSignal;
}

export interface A2AClient {
  /** Sends a message; resolves with the task (blocking until it ends or asks for input) or the agent's message. */
  send(agent: string, message: A2AMessageInput, opts?: SendOptions): Promise<A2ATask | A2AMessage>;
  /** Sends a message and yields the task, then its updates, until it ends. */
  stream(agent: string, message: A2AMessageInput, opts?: SendOptions): AsyncGenerator<A2AStreamEvent>;
  getTask(agent: string, taskId: string, opts?: { historyLength?: number; signal?: AbortSignal }): Promise<A2ATask>;
  cancel(agent: string, taskId: string, opts?: { signal?: AbortSignal }): Promise<A2ATask>;
  /** Re-attaches to a running task's updates. */
  subscribe(agent: string, taskId: string, opts?: { signal?: AbortSignal }): AsyncGenerator<A2AStreamEvent>;
  listTasks(agent: string, query?: ListTasksQuery): Promise<A2AListTasksResult>;
  /** The agent's card (verified when `verify` is given). */
  card(agent: string, opts?: CardOptions): Promise<Record<string, unknown>>;
}

const URL_RE = /^https?:\/\//i;

/**
 * Default resolution: URLs as they are; names through the local outbound mesh proxy, which resolves
 * them in the registry and connects over mTLS verifying the target's SPIFFE ID.
 */
export function meshResolver(env: NodeJS.ProcessEnv = process.env): A2AResolver {
  return (agent) => {
    if (URL_RE.test(agent)) return { url: agent };
    const outbound = env["HEXR_MESH_OUTBOUND"];
    const token = env["HEXR_MESH_TOKEN"];
    if (!outbound || !token) {
      throw new HexrError(
        "a2a.no_resolver",
        `cannot find agent '${agent}': not started by 'hexr run' (no HEXR_MESH_OUTBOUND); pass a URL or a resolver to createA2AClient`,
        { kind: "invalid_argument" },
      );
    }
    const base = outbound.replace(/\/+$/, "");
    return {
      url: `${base}/a2a`,
      cardUrl: `${base}/.well-known/agent-card.json`,
      headers: { "x-hexr-mesh-token": token, "x-hexr-target": agent },
    };
  };
}

function toMessage(input: A2AMessageInput, opts: SendOptions): A2AMessage {
  const m: A2AMessage =
    typeof input === "string"
      ? { messageId: opts.messageId ?? randomUUID(), role: "ROLE_USER", parts: [{ text: input }] }
      : {
          ...input,
          messageId: input.messageId ?? opts.messageId ?? randomUUID(),
          role: input.role ?? "ROLE_USER",
          parts: input.parts,
        };
  if (opts.taskId) m.taskId = opts.taskId;
  if (opts.contextId) m.contextId = opts.contextId;
  return m;
}

function pickVersion(card: Record<string, unknown>): A2AVersion {
  const ifaces = Array.isArray(card["supportedInterfaces"])
    ? (card["supportedInterfaces"] as Array<Record<string, unknown>>)
    : [];
  const jsonrpc = ifaces.filter((i) => String(i["protocolBinding"]).toUpperCase() === "JSONRPC");
  if (jsonrpc.some((i) => String(i["protocolVersion"]).startsWith("1."))) return "1.0";
  if (jsonrpc.length || typeof card["protocolVersion"] === "string" || typeof card["url"] === "string") return "0.3";
  return "1.0";
}

export function createA2AClient(opts: A2AClientOptions = {}): A2AClient {
  const resolve = opts.resolve ?? meshResolver();
  const doFetch = opts.fetch ?? globalThis.fetch;
  const versions = new Map<string, A2AVersion>();
  let seq = 0;

  const baseHeaders = async () => (typeof opts.headers === "function" ? await opts.headers() : (opts.headers ?? {}));

  const request = async (
    agent: string,
    url: string,
    init: RequestInit & { headers: Record<string, string> },
  ): Promise<Response> => {
    try {
      return await doFetch(url, { ...init, ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}) } as RequestInit);
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      throw unreachable(agent, err);
    }
  };

  const fetchCard = async (
    agent: string,
    t: A2ATarget,
    version: A2AVersion,
    signal?: AbortSignal,
  ): Promise<Record<string, unknown>> => {
    const url = t.cardUrl ?? new URL("/.well-known/agent-card.json", t.url).toString();
    const res = await request(agent, url, {
      method: "GET",
      headers: { ...(await baseHeaders()), ...t.headers, accept: "application/json", "a2a-version": version },
      ...(signal ? { signal } : {}),
    });
    const text = await res.text();
    if (!res.ok) throw fromHttpError(agent, res.status, text);
    return JSON.parse(text) as Record<string, unknown>;
  };

  const prepare = async (agent: string, signal?: AbortSignal): Promise<{ t: A2ATarget; version: A2AVersion }> => {
    const t = await resolve(agent);
    if (opts.version !== "auto") return { t, version: opts.version ?? "1.0" };
    let v = versions.get(agent);
    if (!v) {
      v = pickVersion(await fetchCard(agent, t, "1.0", signal));
      versions.set(agent, v);
    }
    return { t, version: v };
  };

  const post = async (
    agent: string,
    t: A2ATarget,
    version: A2AVersion,
    method: string,
    params: unknown,
    accept: string,
    signal?: AbortSignal,
    trace: Record<string, string> = injectTraceHeaders({}),
  ) => {
    const id = ++seq;
    const res = await request(agent, t.url, {
      method: "POST",
      // The callee's spans join the caller's trace (W3C traceparent).
      headers: {
        ...(await baseHeaders()),
        ...t.headers,
        ...trace,
        "content-type": "application/json",
        accept,
        "a2a-version": version,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id, method, params }),
      ...(signal ? { signal } : {}),
    });
    return { id, res };
  };

  const readRpc = async (agent: string, id: number, res: Response): Promise<Record<string, unknown>> => {
    const text = await res.text();
    let body: { id?: unknown; result?: unknown; error?: RpcErrorBody } | undefined;
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      body = undefined;
    }
    if (body?.error) throw fromRpcError(agent, body.error);
    if (!res.ok || !body) throw fromHttpError(agent, res.status, text);
    if (body.id !== id)
      throw new HexrError("a2a.invalid_agent_response", `${agent}: the reply is for request ${String(body.id)}, not ${id}`, {
        kind: "upstream",
      });
    return (body.result ?? {}) as Record<string, unknown>;
  };

  const call = async (agent: string, method: (v: A2AVersion) => string | undefined, params: unknown, signal?: AbortSignal) => {
    const { t, version } = await prepare(agent, signal);
    const m = method(version);
    if (!m)
      throw new HexrError("a2a.unsupported_operation", `${agent} speaks A2A ${version}, which has no such JSON-RPC method`, {
        kind: "failed_precondition",
      });
    const { id, res } = await post(agent, t, version, m, params, "application/json", signal);
    return { version, result: await readRpc(agent, id, res) };
  };

  async function* streamCall(
    agent: string,
    method: (v: A2AVersion) => string,
    params: (v: A2AVersion) => unknown,
    signal?: AbortSignal,
  ) {
    const { t, version } = await prepare(agent, signal);
    const { id, res } = await post(agent, t, version, method(version), params(version), "text/event-stream", signal);
    if (!(res.headers.get("content-type") ?? "").startsWith("text/event-stream") || !res.body) {
      await readRpc(agent, id, res);
      throw new HexrError("a2a.invalid_agent_response", `${agent}: expected an event stream`, { kind: "upstream" });
    }
    for await (const data of sseEvents(res.body)) {
      const msg = JSON.parse(data) as { id?: unknown; result?: Record<string, unknown>; error?: RpcErrorBody };
      if (msg.error) throw fromRpcError(agent, msg.error);
      if (!msg.result) continue;
      const e = streamEventFromWire(msg.result, version);
      yield e;
      if (e.kind === "message" || (e.kind === "status-update" && e.final)) return;
    }
  }

  return {
    send(agent, input, o = {}) {
      const m = toMessage(input, o);
      // A `hexr.a2a.send` client span around the call, recording the task state it produced.
      return traceA2aSend(agent, async (trace) => {
        const { t, version } = await prepare(agent, o.signal);
        const params = sendParams(m, version, o, o.metadata);
        const { id, res } = await post(agent, t, version, METHODS[version].send, params, "application/json", o.signal, trace);
        return sendResultFromWire(await readRpc(agent, id, res), version);
      });
    },
    stream(agent, input, o = {}) {
      const m = toMessage(input, o);
      return streamCall(
        agent,
        (v) => METHODS[v].stream,
        (v) => sendParams(m, v, o, o.metadata),
        o.signal,
      );
    },
    async getTask(agent, taskId, o = {}) {
      const r = await call(
        agent,
        (v) => METHODS[v].get,
        { id: taskId, ...(o.historyLength !== undefined ? { historyLength: o.historyLength } : {}) },
        o.signal,
      );
      return taskFromWire(r.result, r.version);
    },
    async cancel(agent, taskId, o = {}) {
      const r = await call(agent, (v) => METHODS[v].cancel, { id: taskId }, o.signal);
      return taskFromWire(r.result, r.version);
    },
    subscribe(agent, taskId, o = {}) {
      return streamCall(
        agent,
        (v) => METHODS[v].subscribe,
        () => ({ id: taskId }),
        o.signal,
      );
    },
    async listTasks(agent, q = {}) {
      const { signal, ...params } = q;
      const r = await call(agent, (v) => METHODS[v].list, params, signal);
      return r.result as unknown as A2AListTasksResult;
    },
    async card(agent, o = {}) {
      const t = await resolve(agent);
      const card = await fetchCard(agent, t, o.version ?? "1.0", o.signal);
      if (o.verify) {
        const expected = o.verify.expectedSpiffeId ?? t.spiffeId;
        verifyAgentCard(card, { ...o.verify, ...(expected ? { expectedSpiffeId: expected } : {}) });
      }
      return card;
    },
  };
}

/** The default client: agents by name through the mesh (`hexr run`), or by URL. */
export const a2a: A2AClient = createA2AClient();
