/**
 * The framework-free JSON-RPC binding of A2A: `handle(body, ctx)` takes the raw request body and
 * the caller, and returns either one JSON-RPC response (already serialized) or a stream of them
 * for SSE. The protocol version comes from the `A2A-Version` header (absent = 0.3). Any HTTP
 * server (the node:http binding in `http.ts`, a test, the ingress) can drive it.
 */
import type { Logger } from "pino";
import {
  A2AError,
  invalidParams,
  invalidRequest,
  methodNotFound,
  parseError,
  pushNotSupported,
  toA2AError,
  unsupportedOperation,
  versionNotSupported,
} from "./errors.js";
import type { EventStream } from "./channel.js";
import type { StreamEvent } from "./model.js";
import type { A2AService, Caller, ProtocolVersion } from "./service.js";
import * as v03 from "./wire/v03.js";
import * as v1 from "./wire/v1.js";

export type JsonRpcId = string | number | null;

export type RpcOutcome =
  /** One JSON-RPC response; `status` is the HTTP status to send it with. */
  | { kind: "json"; status: number; body: string }
  /** A stream of JSON-RPC responses, read in batches already framed as SSE events (`data: ...\n\n`). */
  | { kind: "stream"; next: () => Promise<{ chunk: string; done: boolean }>; close: () => void };

export interface RpcContext {
  caller: Caller;
  /** The `A2A-Version` header value, if any. */
  version?: string | undefined;
  /** The URL this endpoint is reached at (for the extended card's interfaces). */
  url?: string;
  /** W3C trace context of the request. */
  trace?: Record<string, string>;
}

export interface JsonRpcHandlerOptions {
  service: A2AService;
  /** The extended agent card for each protocol version (`GetExtendedAgentCard`); absent = not configured. */
  extendedCard?: (version: ProtocolVersion, url: string | undefined) => Promise<unknown>;
  /**
   * Decides whether the caller may call this agent (`a2a:send`); throw to refuse. Called for every
   * request, after it was parsed and before anything is read or stored.
   */
  authorize?: (caller: Caller, method: string) => void | Promise<void>;
  /** Told of every well-formed request's method (unknown methods as `unknown`); must not throw. */
  onMessage?: (method: string) => void;
  log?: Logger;
}

export interface JsonRpcHandler {
  handle(body: string | Buffer | unknown, ctx: RpcContext): Promise<RpcOutcome>;
}

/** `0.3`, `0.3.0` → 0.3; `1.0`, `1.0.1` → 1.0; absent or empty → 0.3 (A2A §3.6.2); else unsupported. */
export function parseVersion(header: string | undefined): ProtocolVersion | undefined {
  if (header === undefined) return "0.3";
  const v = header.trim();
  if (v === "") return "0.3";
  const m = /^(\d+)\.(\d+)(?:\.\d+)?$/.exec(v);
  if (!m) return undefined;
  if (m[1] === "0" && m[2] === "3") return "0.3";
  if (m[1] === "1" && m[2] === "0") return "1.0";
  return undefined;
}

const json = (status: number, body: string): RpcOutcome => ({ kind: "json", status, body });

function envelope(id: JsonRpcId, result: unknown): string {
  return `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${JSON.stringify(result)}}`;
}

export function errorEnvelope(id: JsonRpcId, err: A2AError): string {
  return JSON.stringify({ jsonrpc: "2.0", id, error: err.toJsonRpc() });
}

const errorOutcome = (id: JsonRpcId, err: A2AError): RpcOutcome => json(err.httpStatus, errorEnvelope(id, err));

function needParams(params: unknown): object {
  if (params === undefined || params === null)
    throw invalidParams("params is required for this method", [{ field: "params", description: "is required" }]);
  if (typeof params !== "object" || Array.isArray(params)) {
    throw invalidParams("params must be an object", [{ field: "params", description: "must be an object" }]);
  }
  return params;
}

function streamOutcome(id: JsonRpcId, events: EventStream, serialize: (e: StreamEvent) => unknown): RpcOutcome {
  const prefix = `data: {"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":`;
  return {
    kind: "stream",
    async next() {
      const batch = await events.nextBatch();
      let chunk = "";
      for (const e of batch.events) chunk += prefix + JSON.stringify(serialize(e)) + "}\n\n";
      return { chunk, done: batch.done };
    },
    close: () => events.close(),
  };
}

interface Cc {
  caller: Caller;
  version: ProtocolVersion;
  url: string | undefined;
  trace: Record<string, string> | undefined;
}

const KNOWN_METHODS: ReadonlySet<string> = new Set<string>([...v1.V1_METHODS, ...v03.V03_METHODS]);

export function createJsonRpcHandler({
  service,
  extendedCard,
  authorize,
  onMessage,
  log,
}: JsonRpcHandlerOptions): JsonRpcHandler {
  const dispatchV1 = async (method: string, params: unknown, id: JsonRpcId, cc: Cc) => {
    switch (method) {
      case "SendMessage":
        return json(200, envelope(id, v1.sendResultV1(await service.send(v1.parseSendV1(needParams(params)), cc))));
      case "SendStreamingMessage":
        return streamOutcome(id, await service.stream(v1.parseSendV1(needParams(params)), cc), v1.streamEventV1);
      case "GetTask": {
        const p = v1.parseGetTaskV1(needParams(params));
        return json(200, envelope(id, await service.getTask(p.id, p.historyLength, cc)));
      }
      case "ListTasks": {
        const q = v1.parseListTasksV1(params ?? {});
        return json(200, envelope(id, v1.listResultV1(await service.listTasks(q, cc), q.includeArtifacts)));
      }
      case "CancelTask":
        return json(200, envelope(id, await service.cancel(v1.parseTaskIdV1(needParams(params)).id, cc)));
      case "SubscribeToTask":
        return streamOutcome(id, await service.subscribe(v1.parseTaskIdV1(needParams(params)).id, cc), v1.streamEventV1);
      case "CreateTaskPushNotificationConfig":
      case "GetTaskPushNotificationConfig":
      case "ListTaskPushNotificationConfigs":
      case "DeleteTaskPushNotificationConfig":
        throw pushNotSupported();
      case "GetExtendedAgentCard":
        // capabilities.extendedAgentCard is false then: the spec asks for UnsupportedOperation.
        if (!extendedCard) throw unsupportedOperation("this agent has no extended agent card");
        return json(200, envelope(id, await extendedCard("1.0", cc.url)));
      default:
        throw methodNotFound(method, "1.0");
    }
  };

  const dispatchV03 = async (method: string, params: unknown, id: JsonRpcId, cc: Cc) => {
    switch (method) {
      case "message/send":
        return json(200, envelope(id, v03.sendResultV03(await service.send(v03.parseSendV03(needParams(params)), cc))));
      case "message/stream":
        return streamOutcome(id, await service.stream(v03.parseSendV03(needParams(params)), cc), v03.streamEventV03);
      case "tasks/get": {
        const p = v03.parseGetTaskV03(needParams(params));
        return json(200, envelope(id, v03.taskToV03(await service.getTask(p.id, p.historyLength, cc))));
      }
      case "tasks/cancel":
        return json(200, envelope(id, v03.taskToV03(await service.cancel(v03.parseTaskIdV03(needParams(params)).id, cc))));
      case "tasks/resubscribe":
        return streamOutcome(id, await service.subscribe(v03.parseTaskIdV03(needParams(params)).id, cc), v03.streamEventV03);
      case "tasks/pushNotificationConfig/set":
      case "tasks/pushNotificationConfig/get":
      case "tasks/pushNotificationConfig/list":
      case "tasks/pushNotificationConfig/delete":
        throw pushNotSupported();
      case "agent/getAuthenticatedExtendedCard":
        if (!extendedCard) throw unsupportedOperation("this agent has no extended agent card");
        return json(200, envelope(id, await extendedCard("0.3", cc.url)));
      default:
        throw methodNotFound(method, "0.3");
    }
  };

  return {
    async handle(body, ctx) {
      let req: unknown = body;
      if (typeof body === "string" || Buffer.isBuffer(body)) {
        try {
          req = JSON.parse(typeof body === "string" ? body : body.toString("utf8"));
        } catch (err) {
          return errorOutcome(null, parseError((err as Error).message));
        }
      }
      if (typeof req !== "object" || req === null || Array.isArray(req)) {
        return errorOutcome(
          null,
          invalidRequest(Array.isArray(req) ? "batch requests are not supported" : "the body must be a JSON object"),
        );
      }
      const r = req as { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: unknown };
      const idOk = typeof r.id === "string" || (typeof r.id === "number" && Number.isInteger(r.id)) || r.id === null;
      const id: JsonRpcId = idOk ? (r.id as JsonRpcId) : null;
      if (r.jsonrpc !== "2.0") return errorOutcome(id, invalidRequest(`'jsonrpc' must be exactly "2.0"`));
      if (!("id" in r)) return errorOutcome(null, invalidRequest("'id' is required (notifications are not supported)"));
      if (!idOk) return errorOutcome(null, invalidRequest("'id' must be a string, an integer or null"));
      if (typeof r.method !== "string" || r.method === "")
        return errorOutcome(id, invalidRequest("'method' must be a non-empty string"));
      // Bounded label values: clients choose method names.
      onMessage?.(KNOWN_METHODS.has(r.method) ? r.method : "unknown");
      const version = parseVersion(ctx.version);
      if (!version) return errorOutcome(id, versionNotSupported(ctx.version ?? ""));
      const cc: Cc = { caller: ctx.caller, version, url: ctx.url, trace: ctx.trace };
      try {
        if (authorize) await authorize(ctx.caller, r.method);
        return version === "1.0" ? await dispatchV1(r.method, r.params, id, cc) : await dispatchV03(r.method, r.params, id, cc);
      } catch (err) {
        const e = toA2AError(err);
        if (e.code === -32603) log?.error({ err, method: r.method }, "a2a: request failed");
        return errorOutcome(id, e);
      }
    },
  };
}
