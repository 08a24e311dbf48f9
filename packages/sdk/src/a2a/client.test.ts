import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setupMemoryTelemetry } from "../telemetry/memory.js";
import { createA2AClient, meshResolver } from "./client.js";
import { a2aText } from "./types.js";
import { messageForWire, streamEventFromWire, taskFromWire } from "./wire.js";

// A peer that misbehaves on purpose, one way per path: what the client does with bad replies.
let server: Server;
let base = "";
const seen: Array<{ path: string; headers: IncomingMessage["headers"]; body: Record<string, unknown> }> = [];

function reply(res: ServerResponse, status: number, body: string, type = "application/json") {
  res.writeHead(status, { "content-type": type });
  res.end(body);
}

beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c: Buffer) => (raw += c.toString()));
    req.on("end", () => {
      const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
      seen.push({ path: req.url ?? "", headers: req.headers, body });
      const id = body["id"];
      switch (req.url) {
        case "/problem":
          return reply(
            res,
            401,
            JSON.stringify({ code: "auth.unauthenticated", detail: "missing credentials", status: 401 }),
            "application/problem+json",
          );
        case "/denied":
          return reply(
            res,
            403,
            JSON.stringify({
              jsonrpc: "2.0",
              id,
              error: { code: -32000, message: "Permission denied: policy", data: [{ reason: "PERMISSION_DENIED" }] },
            }),
          );
        case "/wrong-id":
          return reply(
            res,
            200,
            JSON.stringify({
              jsonrpc: "2.0",
              id: 999,
              result: { task: { id: "t", contextId: "c", status: { state: "TASK_STATE_COMPLETED" } } },
            }),
          );
        case "/not-json":
          return reply(res, 502, "<html>bad gateway</html>", "text/html");
        case "/stream-error":
          res.writeHead(200, { "content-type": "text/event-stream" });
          res.write(
            `data: ${JSON.stringify({ jsonrpc: "2.0", id, result: { task: { id: "t", contextId: "c", status: { state: "TASK_STATE_WORKING" } } } })}\n\n`,
          );
          res.end(`data: ${JSON.stringify({ jsonrpc: "2.0", id, error: { code: -32603, message: "Internal error" } })}\n\n`);
          return;
        case "/ok":
          return reply(
            res,
            200,
            JSON.stringify({
              jsonrpc: "2.0",
              id,
              result: { task: { id: "t1", contextId: "c", status: { state: "TASK_STATE_INPUT_REQUIRED" } } },
            }),
          );
        case "/v03":
          return reply(
            res,
            200,
            JSON.stringify({
              jsonrpc: "2.0",
              id,
              result: {
                kind: "message",
                messageId: "m",
                role: "agent",
                parts: [{ kind: "data", data: { value: [1, 2] }, metadata: { data_part_compat: true } }],
              },
            }),
          );
        default:
          return reply(res, 404, "{}");
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const at = (path: string, version: "1.0" | "0.3" = "1.0") =>
  createA2AClient({ resolve: () => ({ url: base + path }), version, headers: { "x-extra": "1" } });

describe("A2A client: bad replies become typed errors", () => {
  it("a problem+json refusal keeps its code and kind", async () => {
    await expect(at("/problem").send("a", "hi")).rejects.toMatchObject({ code: "auth.unauthenticated", kind: "unauthenticated" });
  });

  it("a JSON-RPC error is mapped by its reason or code", async () => {
    await expect(at("/denied").getTask("a", "t")).rejects.toMatchObject({
      code: "a2a.permission_denied",
      kind: "permission_denied",
    });
  });

  it("a reply for another request id is refused", async () => {
    await expect(at("/wrong-id").send("a", "hi")).rejects.toMatchObject({ code: "a2a.invalid_agent_response" });
  });

  it("a non-JSON failure keeps the HTTP status", async () => {
    await expect(at("/not-json").cancel("a", "t")).rejects.toMatchObject({
      code: "a2a.http_error",
      kind: "upstream",
      details: { status: 502 },
    });
  });

  it("an error event ends a stream with the mapped error, after the events before it", async () => {
    const kinds: string[] = [];
    await expect(
      (async () => {
        for await (const e of at("/stream-error").stream("a", "hi")) kinds.push(e.kind);
      })(),
    ).rejects.toMatchObject({ code: "a2a.internal_error" });
    expect(kinds).toEqual(["task"]);
  });

  it("an unreachable agent is `unavailable`", async () => {
    const c = createA2AClient({ resolve: () => ({ url: "http://127.0.0.1:1/" }) });
    await expect(c.send("a", "hi")).rejects.toMatchObject({ code: "a2a.unreachable", kind: "unavailable" });
  });

  it("v0.3 replies are read into v1.0 shapes (wrapped data unwrapped); headers and versions are sent", async () => {
    const r = await at("/v03", "0.3").send("a", "hi", { messageId: "fixed" });
    expect(r).toEqual({ messageId: "m", role: "ROLE_AGENT", parts: [{ data: [1, 2] }] });
    const last = seen[seen.length - 1]!;
    expect(last.headers["a2a-version"]).toBe("0.3");
    expect(last.headers["x-extra"]).toBe("1");
    expect(last.body).toMatchObject({
      method: "message/send",
      params: {
        message: { kind: "message", messageId: "fixed", role: "user", parts: [{ kind: "text", text: "hi" }] },
        configuration: { blocking: true },
      },
    });
  });
});

describe("A2A client: tracing", () => {
  it("a send is a hexr.a2a.send span, and the callee gets its traceparent", async () => {
    const t = setupMemoryTelemetry();
    try {
      const r = await at("/ok").send("writer", "hi");
      expect(r).toMatchObject({ id: "t1" });
      await t.forceFlush();
      const [span] = t.spansNamed("hexr.a2a.send");
      expect(span?.attributes).toMatchObject({ "hexr.a2a.target": "writer", "hexr.a2a.task_state": "input-required" });
      const traceparent = String(seen[seen.length - 1]!.headers["traceparent"]);
      expect(traceparent).toContain(span!.spanContext().traceId);
      expect(traceparent).toContain(span!.spanContext().spanId);
    } finally {
      await t.shutdown();
    }
  });
});

describe("A2A client: resolution and wire", () => {
  it("names go through the mesh's outbound proxy; URLs are used as they are", async () => {
    expect(() => meshResolver({})("writer")).toThrow(/not started by 'hexr run'/);
    expect(await meshResolver({})("http://x/a2a")).toEqual({ url: "http://x/a2a" });
    expect(await meshResolver({ HEXR_MESH_OUTBOUND: "http://127.0.0.1:9/", HEXR_MESH_TOKEN: "tok" })("writer")).toEqual({
      url: "http://127.0.0.1:9/a2a",
      cardUrl: "http://127.0.0.1:9/.well-known/agent-card.json",
      headers: { "x-hexr-mesh-token": "tok", "x-hexr-target": "writer" },
    });
  });

  it("converts parts both ways for v0.3 and reads v0.3 events", () => {
    const wire = messageForWire(
      {
        messageId: "m",
        role: "ROLE_USER",
        parts: [{ text: "a" }, { raw: "AAE=", mediaType: "image/png", filename: "x.png" }, { url: "https://f" }, { data: 7 }],
      },
      "0.3",
    );
    expect(wire["parts"]).toEqual([
      { kind: "text", text: "a" },
      { kind: "file", file: { bytes: "AAE=", mimeType: "image/png", name: "x.png" } },
      { kind: "file", file: { uri: "https://f" } },
      { kind: "data", data: { value: 7 }, metadata: { data_part_compat: true } },
    ]);
    const task = taskFromWire(
      {
        kind: "task",
        id: "t",
        contextId: "c",
        status: {
          state: "input-required",
          message: { kind: "message", messageId: "q", role: "agent", parts: [{ kind: "text", text: "which?" }] },
        },
      },
      "0.3",
    );
    expect(task.status.state).toBe("TASK_STATE_INPUT_REQUIRED");
    expect(a2aText(task)).toBe("which?");
    expect(
      streamEventFromWire(
        { kind: "status-update", taskId: "t", contextId: "c", status: { state: "completed" }, final: true },
        "0.3",
      ),
    ).toMatchObject({ kind: "status-update", final: true, status: { state: "TASK_STATE_COMPLETED" } });
  });
});
