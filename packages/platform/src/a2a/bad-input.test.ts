import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sqliteFixture } from "../test-support/storage.js";
import type { Storage } from "../storage/types.js";
import { permissionDenied } from "./errors.js";
import { reply } from "./handler.js";
import { ALICE, asCaller, at, startTestA2A, v03Message, v1Message, type TestA2A } from "./test-support/server.js";

let storage: Storage;
let a2a: TestA2A;
const fixture = sqliteFixture();
let calls = 0;
let completedTask = "";
let askingTask = "";

beforeAll(async () => {
  storage = await fixture.open();
  a2a = await startTestA2A({
    storage,
    bodyLimit: 4096,
    handler: async (m) => {
      calls++;
      const text = m.parts[0]?.text ?? "";
      return text === "ask" ? reply.inputRequired("which one?") : `done: ${text}`;
    },
  });
  const done = await a2a.rpc("SendMessage", { message: v1Message("first") }, { version: "1.0" });
  completedTask = at<string>(done.body, "result.task.id");
  const asking = await a2a.rpc("SendMessage", { message: v1Message("ask") }, { version: "1.0" });
  askingTask = at<string>(asking.body, "result.task.id");
  expect(at(asking.body, "result.task.status.state")).toBe("TASK_STATE_INPUT_REQUIRED");
});

afterAll(async () => {
  await a2a.close();
  await storage.close();
  await fixture.cleanup();
});

/** Runs `act`, then checks the stored tasks and the handler calls are exactly as before. */
async function unchanged<T>(act: () => Promise<T>): Promise<T> {
  const before = JSON.stringify(await a2a.rows());
  const callsBefore = calls;
  const r = await act();
  await a2a.server.store.batcher.drain();
  expect(JSON.stringify(await a2a.rows())).toBe(before);
  expect(calls).toBe(callsBefore);
  return r;
}

const errorOf = (body: { error?: { code: number } }) => body.error?.code;

describe("A2A JSON-RPC: bad input gets the specified error and changes nothing", () => {
  it("malformed JSON → -32700 with id null", async () => {
    for (const body of ['{"jsonrpc":"2.0","id":1,"method":"SendMessage",', "not json", ""]) {
      const res = await unchanged(() => a2a.post(body, { "a2a-version": "1.0" }));
      expect(res.status).toBe(200);
      const json = (await res.json()) as { id: unknown; error: { code: number } };
      expect(json.error.code).toBe(-32700);
      expect(json.id).toBeNull();
    }
  });

  it("wrong jsonrpc, missing method, bad id, batches, non-objects → -32600", async () => {
    const bodies = [
      { jsonrpc: "1.0", id: 7, method: "SendMessage", params: { message: v1Message("x") } },
      { id: 7, method: "SendMessage", params: { message: v1Message("x") } },
      { jsonrpc: "2.0", id: 7, params: {} },
      { jsonrpc: "2.0", id: 1.5, method: "GetTask", params: { id: "x" } },
      { jsonrpc: "2.0", id: { a: 1 }, method: "GetTask", params: { id: "x" } },
      { jsonrpc: "2.0", method: "SendMessage", params: { message: v1Message("notification") } },
      [{ jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: "x" } }],
      "a string",
      42,
    ];
    for (const b of bodies) {
      const res = await unchanged(() => a2a.post(JSON.stringify(b), { "a2a-version": "1.0" }));
      const json = (await res.json()) as { id: unknown; error: { code: number } };
      expect(json.error.code, JSON.stringify(b)).toBe(-32600);
    }
    const res = await a2a.post(JSON.stringify(bodies[0]), { "a2a-version": "1.0" });
    expect(((await res.json()) as { id: unknown }).id).toBe(7);
  });

  it("unknown methods → -32601, per protocol version", async () => {
    const cases: Array<[string, string | undefined]> = [
      ["message/send", "1.0"],
      ["tasks/list", undefined],
      ["SendMessage", undefined],
      ["SendMessage", "0.3"],
      ["NoSuchMethod", "1.0"],
    ];
    for (const [method, version] of cases) {
      const r = await unchanged(() => a2a.rpc(method, { message: v1Message("x") }, version ? { version } : {}));
      expect(r.status).toBe(200);
      expect(errorOf(r.body), `${method} @ ${version ?? "none"}`).toBe(-32601);
      expect(at(r.body, "error.data[0].reason")).toBe("METHOD_NOT_FOUND");
    }
  });

  it("missing or malformed params → -32602 naming the field", async () => {
    const cases: Array<[string, unknown, string | undefined, string]> = [
      ["SendMessage", undefined, "1.0", "params"],
      ["SendMessage", {}, "1.0", "message"],
      ["SendMessage", [], "1.0", "params"],
      ["SendMessage", { message: { ...v1Message("x"), parts: [] } }, "1.0", "message.parts"],
      ["SendMessage", { message: { ...v1Message("x"), parts: [{ text: "a", url: "https://x" }] } }, "1.0", "message.parts[0]"],
      ["SendMessage", { message: { ...v1Message("x"), role: "ROLE_ROBOT" } }, "1.0", "message.role"],
      ["SendMessage", { message: { ...v1Message("x"), messageId: "" } }, "1.0", "message.messageId"],
      ["SendMessage", { message: { ...v1Message("x"), parts: [{ raw: "not base64!" }] } }, "1.0", "message.parts[0].raw"],
      ["GetTask", {}, "1.0", "id"],
      ["GetTask", { id: "x", historyLength: -1 }, "1.0", "historyLength"],
      ["ListTasks", { pageSize: 0 }, "1.0", "pageSize"],
      ["ListTasks", { status: "TASK_STATE_SLEEPING" }, "1.0", "status"],
      ["ListTasks", { pageToken: "%%%" }, "1.0", "pageToken"],
      ["message/send", undefined, undefined, "params"],
      [
        "message/send",
        { message: { ...v03Message("x"), parts: [{ kind: "image", url: "x" }] } },
        undefined,
        "message.parts[0].kind",
      ],
      ["message/send", { message: { ...v03Message("x"), role: "ROLE_USER" } }, undefined, "message.role"],
      ["tasks/get", { historyLength: 2 }, undefined, "id"],
      ["tasks/cancel", undefined, undefined, "params"],
    ];
    for (const [method, params, version, field] of cases) {
      const r = await unchanged(() => a2a.rpc(method, params, version ? { version } : {}));
      expect(errorOf(r.body), `${method} ${JSON.stringify(params)}`).toBe(-32602);
      const violations = (at<Array<{ fieldViolations?: Array<{ field: string }> }>>(r.body, "error.data") ?? []).flatMap(
        (d) => d.fieldViolations ?? [],
      );
      expect(
        violations.map((v) => v.field),
        `${method} ${JSON.stringify(params)}`,
      ).toContain(field);
    }
  });

  it("a body over the limit → HTTP 413 with -32600, before anything is parsed", async () => {
    const big = JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "SendMessage",
      params: { message: v1Message("x".repeat(5000)) },
    });
    const res = await unchanged(() => a2a.post(big, { "a2a-version": "1.0" }));
    expect(res.status).toBe(413);
    const json = (await res.json()) as { error: { code: number; data: Array<{ reason: string }> } };
    expect(json.error.code).toBe(-32600);
    expect(json.error.data[0]!.reason).toBe("PAYLOAD_TOO_LARGE");
    // Also when the length is not declared up front (chunked upload).
    const chunked = await unchanged(() =>
      fetch(a2a.url, {
        method: "POST",
        headers: { "content-type": "application/json", "a2a-version": "1.0", ...asCaller(ALICE) },
        body: new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode(big));
            c.close();
          },
        }),
        duplex: "half",
      } as RequestInit),
    );
    expect(chunked.status).toBe(413);
  });

  it("an unknown task → -32001 for get, cancel, subscribe and follow-up messages", async () => {
    const id = randomUUID();
    for (const [method, params, version] of [
      ["GetTask", { id }, "1.0"],
      ["CancelTask", { id }, "1.0"],
      ["SubscribeToTask", { id }, "1.0"],
      ["SendMessage", { message: v1Message("more", { taskId: id }) }, "1.0"],
      ["tasks/get", { id }, undefined],
      ["tasks/cancel", { id }, undefined],
      ["tasks/resubscribe", { id }, undefined],
    ] as const) {
      const r = await unchanged(() => a2a.rpc(method, params, version ? { version } : {}));
      expect(errorOf(r.body), method).toBe(-32001);
    }
  });

  it("another caller's task is not found either (no existence leak)", async () => {
    const r = await unchanged(() =>
      a2a.rpc(
        "GetTask",
        { id: completedTask },
        { version: "1.0", headers: asCaller("spiffe://hexr.local/agent/acme/mallory/main") },
      ),
    );
    expect(errorOf(r.body)).toBe(-32001);
    const c = await unchanged(() =>
      a2a.rpc(
        "CancelTask",
        { id: askingTask },
        { version: "1.0", headers: asCaller("spiffe://hexr.local/agent/acme/mallory/main") },
      ),
    );
    expect(errorOf(c.body)).toBe(-32001);
  });

  it("cancel of a finished task → -32002, and the task stays completed", async () => {
    for (const [method, version] of [
      ["CancelTask", "1.0"],
      ["tasks/cancel", undefined],
    ] as const) {
      const r = await unchanged(() => a2a.rpc(method, { id: completedTask }, version ? { version } : {}));
      expect(errorOf(r.body)).toBe(-32002);
    }
    const t = await a2a.rpc("GetTask", { id: completedTask }, { version: "1.0" });
    expect(at(t.body, "result.status.state")).toBe("TASK_STATE_COMPLETED");
  });

  it("a message to a finished task → -32004; a mismatching contextId → -32602", async () => {
    const r = await unchanged(() =>
      a2a.rpc("SendMessage", { message: v1Message("again", { taskId: completedTask }) }, { version: "1.0" }),
    );
    expect(errorOf(r.body)).toBe(-32004);
    const m = await unchanged(() =>
      a2a.rpc(
        "SendMessage",
        { message: v1Message("answer", { taskId: askingTask, contextId: "some-other-context" }) },
        { version: "1.0" },
      ),
    );
    expect(errorOf(m.body)).toBe(-32602);
  });

  it("subscribing to a finished task → -32004 in v1.0", async () => {
    const r = await unchanged(() => a2a.stream("SubscribeToTask", { id: completedTask }, { version: "1.0" }));
    expect(r.contentType).toContain("application/json");
    expect(at(r.events[0], "error.code")).toBe(-32004);
  });

  it("push notification configuration → -32003, and a send asking for one creates nothing", async () => {
    const cases: Array<[string, unknown, string | undefined]> = [
      ["CreateTaskPushNotificationConfig", { taskId: completedTask, url: "https://hook" }, "1.0"],
      ["ListTaskPushNotificationConfigs", { taskId: completedTask }, "1.0"],
      ["tasks/pushNotificationConfig/set", { taskId: completedTask, pushNotificationConfig: { url: "https://hook" } }, undefined],
      ["SendMessage", { message: v1Message("x"), configuration: { taskPushNotificationConfig: { url: "https://hook" } } }, "1.0"],
      [
        "message/send",
        { message: v03Message("x"), configuration: { pushNotificationConfig: { url: "https://hook" } } },
        undefined,
      ],
    ];
    for (const [method, params, version] of cases) {
      const r = await unchanged(() => a2a.rpc(method, params, version ? { version } : {}));
      expect(errorOf(r.body), method).toBe(-32003);
    }
  });

  it("an unsupported A2A-Version → -32009", async () => {
    for (const version of ["2.0", "0.2", "banana"]) {
      const r = await unchanged(() => a2a.rpc("SendMessage", { message: v1Message("x") }, { version }));
      expect(errorOf(r.body), version).toBe(-32009);
    }
  });

  it("a non-JSON content type → HTTP 415", async () => {
    const res = await unchanged(() =>
      a2a.post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: "x" } }), {
        "content-type": "text/plain",
      }),
    );
    expect(res.status).toBe(415);
    expect(((await res.json()) as { error: { code: number } }).error.code).toBe(-32600);
  });

  it("no or wrong mesh credentials → HTTP 401, a forged caller header alone is not believed", async () => {
    const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "SendMessage", params: { message: v1Message("x") } });
    for (const headers of [
      { "content-type": "application/json" },
      { "content-type": "application/json", "x-hexr-caller-spiffe-id": ALICE },
      { "content-type": "application/json", "x-hexr-mesh-token": "wrong", "x-hexr-caller-spiffe-id": ALICE },
    ]) {
      const res = await unchanged(() => fetch(a2a.url, { method: "POST", headers: { ...headers, "a2a-version": "1.0" }, body }));
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toContain("Bearer");
      expect(((await res.json()) as { error: { code: number } }).error.code).toBe(-32000);
    }
  });

  it("a caller the agent's policy refuses → HTTP 403 with -32000, before anything is stored", async () => {
    const refusing = await startTestA2A({
      storage,
      agent: "guarded",
      handler: async () => {
        calls++;
        return "never";
      },
      authorize: (caller) => {
        if (caller.id !== ALICE) throw permissionDenied(`${caller.id} may not call this agent`);
      },
    });
    try {
      const mallory = "spiffe://hexr.local/agent/acme/mallory/main";
      const r = await unchanged(() =>
        refusing.rpc("SendMessage", { message: v1Message("x") }, { version: "1.0", headers: asCaller(mallory) }),
      );
      expect(r.status).toBe(403);
      expect(r.body.error).toMatchObject({ code: -32000, message: expect.stringContaining("mallory") });
      const ok = await refusing.rpc("SendMessage", { message: v1Message("x") }, { version: "1.0" });
      expect(at(ok.body, "result.task.status.state")).toBe("TASK_STATE_COMPLETED");
    } finally {
      await refusing.close();
    }
  });
});
