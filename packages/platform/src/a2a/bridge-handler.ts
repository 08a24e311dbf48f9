/**
 * An `A2AHandler` that runs the agent's handler in the agent's own process, through its loopback
 * bridge (`POST /invoke`, see packages/sdk/src/agent/bridge.ts): the A2A server keeps the protocol
 * and the tasks, the agent process keeps the code. Cancel aborts the bridge request, which aborts
 * the handler's signal.
 */
import { HexrError } from "@hexr/core";
import { Agent, request, type IncomingMessage } from "node:http";
import { CALLER_HEADER, MESH_TOKEN_HEADER } from "../mesh/headers.js";
import { update, type A2AHandler, type A2AResult, type A2AUpdate } from "./handler.js";
import type { Message } from "./model.js";

export interface BridgeHandlerOptions {
  /** The agent process's bridge, e.g. `http://127.0.0.1:40123` (a function when it moves: restarts). */
  url: string | (() => string);
  /** The mesh token the agent process accepts from its own sidecars. */
  meshToken: string;
  /** Most bytes of one NDJSON line or JSON reply. */
  maxReplyBytes?: number;
}

/**
 * The handler input for a message: its text when every part is text, the value when it is one data
 * part, and `{ parts }` (v1.0 parts) otherwise.
 */
export function messageToInput(m: Message): unknown {
  if (m.parts.every((p) => p.text !== undefined)) return m.parts.map((p) => p.text).join("\n");
  if (m.parts.length === 1 && "data" in m.parts[0]!) return m.parts[0]!.data;
  return { parts: m.parts };
}

type Line = { update?: unknown; output?: unknown; error?: { code?: string; message?: string } };

function bridgeError(e: Line["error"]): HexrError {
  return new HexrError(e?.code ?? "agent.handler_failed", e?.message ?? "the agent's handler failed", { kind: "upstream" });
}

export function bridgeHandler({ url, meshToken, maxReplyBytes = 16 * 1024 * 1024 }: BridgeHandlerOptions): A2AHandler {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });

  const open = (body: string, caller: string | null, signal: AbortSignal, trace: Record<string, string> | undefined) =>
    new Promise<IncomingMessage>((resolve, reject) => {
      const target = new URL("/invoke", typeof url === "function" ? url() : url);
      const req = request(
        {
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: "POST",
          agent,
          signal,
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            [MESH_TOKEN_HEADER]: meshToken,
            ...(caller ? { [CALLER_HEADER]: caller } : {}),
            // The agent's spans continue the caller's trace.
            ...trace,
          },
        },
        resolve,
      );
      req.on("error", (err) =>
        reject(
          signal.aborted
            ? err
            : new HexrError("agent.unreachable", `the agent process is not reachable on its bridge: ${err.message}`, {
                kind: "unavailable",
              }),
        ),
      );
      req.end(body);
    });

  return async function* (message, ctx): AsyncGenerator<A2AUpdate, A2AResult, void> {
    const body = JSON.stringify({ input: messageToInput(message), taskId: ctx.taskId, contextId: ctx.contextId, stream: true });
    const res = await open(body, ctx.callerSpiffeId, ctx.signal, ctx.trace);
    const ndjson = (res.headers["content-type"] ?? "").startsWith("application/x-ndjson");
    let buf = "";
    let streamed = false;
    let final: Line | undefined;
    const handle = (line: string): A2AUpdate | undefined => {
      if (!line.trim()) return undefined;
      const l = JSON.parse(line) as Line;
      if (l.error) throw bridgeError(l.error);
      if ("update" in l) {
        streamed = true;
        if (typeof l.update === "string") return l.update;
        return update.working([{ data: l.update ?? null }]);
      }
      final = l;
      return undefined;
    };
    res.setEncoding("utf8");
    for await (const chunk of res as AsyncIterable<string>) {
      buf += chunk;
      if (buf.length > maxReplyBytes)
        throw new HexrError("agent.reply_too_large", `the agent's reply exceeds ${maxReplyBytes} bytes`, { kind: "upstream" });
      if (!ndjson) continue;
      let nl: number;
      while ((nl = buf.indexOf("\n")) !== -1) {
        const u = handle(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (u !== undefined) yield u;
      }
    }
    if (!ndjson) {
      const l = JSON.parse(buf || "{}") as Line;
      if ((res.statusCode ?? 500) >= 400 || l.error)
        throw bridgeError(l.error ?? { message: `the agent's bridge answered HTTP ${res.statusCode}` });
      return (l.output ?? undefined) as A2AResult;
    }
    if (buf.trim()) {
      const u = handle(buf);
      if (u !== undefined) yield u;
    }
    if (!final) throw new HexrError("agent.reply_incomplete", "the agent's reply ended without an output", { kind: "upstream" });
    // A generator's output is its last update, already streamed: it is not added a second time.
    return (streamed ? undefined : (final.output ?? undefined)) as A2AResult;
  };
}
