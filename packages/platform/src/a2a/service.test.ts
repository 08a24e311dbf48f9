import { HexrError } from "@hexr/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Storage } from "../storage/types.js";
import { sqliteFixture, type StorageFixture } from "../test-support/storage.js";
import { a2aMessages, a2aTasks } from "../telemetry/metrics/catalog.js";
import { reply, update, type A2AHandler } from "./handler.js";
import {
  ALICE,
  BOB,
  asCaller,
  at,
  startTestA2A,
  until,
  v03Message,
  v1Message,
  viaIngress,
  type TestA2A,
} from "./test-support/server.js";

let fixture: StorageFixture;
let storage: Storage;
let a2a: TestA2A | undefined;

beforeEach(async () => {
  fixture = sqliteFixture();
  storage = await fixture.open();
});
afterEach(async () => {
  await a2a?.close();
  a2a = undefined;
  await storage.close();
  await fixture.cleanup();
});

async function serve(handler: A2AHandler): Promise<TestA2A> {
  a2a = await startTestA2A({ storage, handler });
  return a2a;
}

/** A gate a handler waits on, opened by the test. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

describe("A2A service: tasks", () => {
  it("a blocking SendMessage returns the completed task with the handler's text as an artifact", async () => {
    const s = await serve(async (m, ctx) => `hello ${m.parts[0]!.text} from ${ctx.caller}`);
    const r = await s.rpc("SendMessage", { message: v1Message("bob") }, { version: "1.0" });
    const task = at<Record<string, unknown>>(r.body, "result.task");
    expect(task).toMatchObject({
      status: { state: "TASK_STATE_COMPLETED" },
      artifacts: [{ parts: [{ text: `hello bob from ${ALICE}` }] }],
      history: [{ role: "ROLE_USER", parts: [{ text: "bob" }] }],
    });
    const got = await s.rpc("GetTask", { id: task["id"] }, { version: "1.0" });
    expect(got.body.result).toEqual(task);
  });

  it("data results, artifact lists and Message replies", async () => {
    const s = await serve(async (m) => {
      const t = m.parts[0]!.text;
      if (t === "data") return { answer: 42 };
      if (t === "artifacts")
        return reply.artifacts([
          { name: "a", text: "one" },
          { name: "b", data: [1, 2] },
        ]);
      return reply.message("just a message");
    });
    const d = await s.rpc("SendMessage", { message: v1Message("data") }, { version: "1.0" });
    expect(at(d.body, "result.task.artifacts[0].parts[0].data")).toEqual({ answer: 42 });
    const a = await s.rpc("SendMessage", { message: v1Message("artifacts") }, { version: "1.0" });
    expect(at<unknown[]>(a.body, "result.task.artifacts").map((x) => at(x, "name"))).toEqual(["a", "b"]);
    const msg = v1Message("msg");
    const m = await s.rpc("SendMessage", { message: msg }, { version: "1.0" });
    expect(at(m.body, "result.message")).toMatchObject({ role: "ROLE_AGENT", parts: [{ text: "just a message" }] });
    // A retry of the same message gets the same reply, and no task appears in the list.
    const again = await s.rpc("SendMessage", { message: msg }, { version: "1.0" });
    expect(again.body.result).toEqual(m.body.result);
    const list = await s.rpc("ListTasks", {}, { version: "1.0" });
    expect(at(list.body, "result.totalSize")).toBe(2);
  });

  it("returnImmediately returns the working task; it completes later", async () => {
    const g = gate();
    const s = await serve(async () => {
      await g.opened;
      return "late";
    });
    const r = await s.rpc(
      "SendMessage",
      { message: v1Message("x"), configuration: { returnImmediately: true } },
      { version: "1.0" },
    );
    const id = at<string>(r.body, "result.task.id");
    expect(at(r.body, "result.task.status.state")).toMatch(/TASK_STATE_(SUBMITTED|WORKING)/);
    g.open();
    await until(
      async () => at((await s.rpc("GetTask", { id }, { version: "1.0" })).body, "result.status.state") === "TASK_STATE_COMPLETED",
      "completion",
    );
  });

  it("a handler error fails the task; only deliberate (HexrError) messages reach the caller", async () => {
    const s = await serve(async (m) => {
      if (m.parts[0]!.text === "deliberate")
        throw new HexrError("writer.no_topic", "give me a topic", { kind: "invalid_argument" });
      throw new Error("db password is hunter2");
    });
    const d = await s.rpc("SendMessage", { message: v1Message("deliberate") }, { version: "1.0" });
    expect(at(d.body, "result.task.status.state")).toBe("TASK_STATE_FAILED");
    expect(at(d.body, "result.task.status.message.parts[0].text")).toContain("give me a topic");
    const u = await s.rpc("SendMessage", { message: v1Message("oops") }, { version: "1.0" });
    expect(at(u.body, "result.task.status.state")).toBe("TASK_STATE_FAILED");
    expect(JSON.stringify(u.body)).not.toContain("hunter2");
  });

  it("multi-turn: input-required, then the follow-up message completes the task with the whole history", async () => {
    const s = await serve(async (m, ctx) => {
      if (ctx.history.length === 1) return reply.inputRequired("which language?");
      return `translated into ${m.parts[0]!.text} (${ctx.history.length} messages)`;
    });
    const first = await s.rpc("SendMessage", { message: v1Message("translate this") }, { version: "1.0" });
    const task = at<{ id: string; contextId: string }>(first.body, "result.task");
    expect(at(first.body, "result.task.status")).toMatchObject({
      state: "TASK_STATE_INPUT_REQUIRED",
      message: { parts: [{ text: "which language?" }] },
    });
    const follow = v1Message("French", { taskId: task.id, contextId: task.contextId });
    const second = await s.rpc("SendMessage", { message: follow }, { version: "1.0" });
    expect(at(second.body, "result.task.status.state")).toBe("TASK_STATE_COMPLETED");
    expect(at(second.body, "result.task.artifacts[0].parts[0].text")).toBe("translated into French (3 messages)");
    expect(at<unknown[]>(second.body, "result.task.history").map((h) => at(h, "role"))).toEqual([
      "ROLE_USER",
      "ROLE_AGENT",
      "ROLE_USER",
    ]);
    // Retrying the follow-up does not run the handler again.
    const retry = await s.rpc("SendMessage", { message: follow }, { version: "1.0" });
    expect(retry.body.result).toEqual(second.body.result);
  });

  it("the handler gets the request's W3C trace context, to continue the caller's trace", async () => {
    let seen: Record<string, string> | undefined;
    const s = await serve(async (_m, ctx) => {
      seen = ctx.trace;
      return "ok";
    });
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    await s.rpc("SendMessage", { message: v1Message("x") }, { version: "1.0", headers: { traceparent, tracestate: "hexr=1" } });
    expect(seen).toEqual({ traceparent, tracestate: "hexr=1" });
  });

  it("historyLength trims history in GetTask and SendMessage", async () => {
    const s = await serve(async () => reply.inputRequired("more?"));
    const r = await s.rpc("SendMessage", { message: v1Message("a"), configuration: { historyLength: 1 } }, { version: "1.0" });
    expect(at<unknown[]>(r.body, "result.task.history")).toHaveLength(1);
    const id = at<string>(r.body, "result.task.id");
    expect(at((await s.rpc("GetTask", { id, historyLength: 0 }, { version: "1.0" })).body, "result.history")).toBeUndefined();
    expect(at<unknown[]>((await s.rpc("GetTask", { id }, { version: "1.0" })).body, "result.history")).toHaveLength(2);
  });
});

describe("A2A service: metrics", () => {
  it("counts requests by method and task states, labelled with the agent", async () => {
    const s = await serve(async () => "ok");
    const value = (name: string, labels: Record<string, string>) =>
      (a2aTasks.name === name ? a2aTasks : a2aMessages).value(labels);
    const labels = { tenant: "acme", agent: "writer" };
    const before = {
      sent: value("hexr_a2a_messages_total", { ...labels, method: "SendMessage" }),
      done: value("hexr_a2a_tasks_total", { ...labels, state: "completed" }),
    };
    await s.rpc("SendMessage", { message: v1Message("x") }, { version: "1.0" });
    await s.rpc("NoSuchMethod", {}, { version: "1.0" });
    expect(value("hexr_a2a_messages_total", { ...labels, method: "SendMessage" })).toBe(before.sent + 1);
    expect(value("hexr_a2a_tasks_total", { ...labels, state: "completed" })).toBe(before.done + 1);
    expect(value("hexr_a2a_messages_total", { ...labels, method: "unknown" })).toBeGreaterThanOrEqual(1);
  });
});

describe("A2A service: idempotent creation", () => {
  it("20 concurrent sends of one messageId by one caller → one task, one handler run", async () => {
    let runs = 0;
    const g = gate();
    const s = await serve(async () => {
      runs++;
      await g.opened;
      return "once";
    });
    const message = v1Message("same");
    const pending = Array.from({ length: 20 }, () => s.rpc("SendMessage", { message }, { version: "1.0" }));
    await until(() => runs > 0, "the handler to start");
    g.open();
    const replies = await Promise.all(pending);
    const ids = new Set(replies.map((r) => at<string>(r.body, "result.task.id")));
    expect(ids.size).toBe(1);
    expect(replies.every((r) => at(r.body, "result.task.status.state") === "TASK_STATE_COMPLETED")).toBe(true);
    expect(runs).toBe(1);
    expect(await s.rows()).toHaveLength(1);
  });

  it("the same messageId from another caller is another task", async () => {
    const s = await serve(async (_m, ctx) => ctx.caller);
    const message = v1Message("same");
    const a = await s.rpc("SendMessage", { message }, { version: "1.0" });
    const b = await s.rpc("SendMessage", { message }, { version: "1.0", headers: asCaller(BOB) });
    expect(at(a.body, "result.task.id")).not.toBe(at(b.body, "result.task.id"));
    expect(at(b.body, "result.task.artifacts[0].parts[0].text")).toBe(BOB);
  });
});

describe("A2A service: streaming", () => {
  it("streams the task, then updates in order, and closes at the terminal state (v1.0)", async () => {
    const s = await serve(async function* () {
      yield update.working("thinking");
      yield "Hel";
      yield "lo";
      return reply.data({ done: true });
    });
    const r = await s.stream("SendStreamingMessage", { message: v1Message("hi") }, { version: "1.0" });
    expect(r.contentType).toBe("text/event-stream");
    const kinds = r.events.map((e) => Object.keys(at<Record<string, unknown>>(e, "result"))[0]);
    expect(kinds).toEqual(["task", "statusUpdate", "artifactUpdate", "artifactUpdate", "artifactUpdate", "statusUpdate"]);
    expect(at(r.events[2], "result.artifactUpdate.append")).toBeUndefined();
    expect(at(r.events[3], "result.artifactUpdate.append")).toBe(true);
    expect(at(r.events[5], "result.statusUpdate.status.state")).toBe("TASK_STATE_COMPLETED");
    const id = at<string>(r.events[0], "result.task.id");
    const task = await s.rpc("GetTask", { id }, { version: "1.0" });
    // Streamed text chunks are stored as one growing part.
    expect(at(task.body, "result.artifacts[0].parts")).toEqual([{ text: "Hello" }]);
    expect(at(task.body, "result.artifacts[1].parts[0].data")).toEqual({ done: true });
  });

  it("v0.3 streams carry kinds, lowercase states and final", async () => {
    const s = await serve(async () => "ok");
    const r = await s.stream("message/stream", { message: v03Message("hi") });
    expect(r.events.map((e) => at(e, "result.kind"))).toEqual(["task", "artifact-update", "status-update"]);
    expect(at(r.events[2], "result.status.state")).toBe("completed");
    expect(at(r.events[2], "result.final")).toBe(true);
    expect(at(r.events[1], "result.artifact.parts[0]")).toEqual({ kind: "text", text: "ok" });
  });

  it("fans out to every subscriber in the same order; closing one stream leaves the others", async () => {
    const step = [gate(), gate(), gate()];
    const s = await serve(async function* () {
      for (let i = 0; i < 3; i++) {
        await step[i]!.opened;
        yield `chunk-${i}`;
      }
      return undefined;
    });
    const main = s.stream("SendStreamingMessage", { message: v1Message("go") }, { version: "1.0" });
    await until(() => s.server.service.activeRuns === 1, "the run");
    const id = (await s.rpc("ListTasks", {}, { version: "1.0" })).body.result!["tasks"] as Array<{ id: string }>;
    const taskId = id[0]!.id;
    const sub1 = s.stream("SubscribeToTask", { id: taskId }, { version: "1.0" });
    const sub2 = s.stream("tasks/resubscribe", { id: taskId });
    // A third subscriber that leaves early.
    const ac = new AbortController();
    const leaving = fetch(s.url, {
      method: "POST",
      signal: ac.signal,
      headers: { "content-type": "application/json", "a2a-version": "1.0", ...asCaller(ALICE) },
      body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "SubscribeToTask", params: { id: taskId } }),
    });
    const leaver = await leaving;
    const reader = leaver.body!.getReader();
    await reader.read();
    await new Promise((r) => setTimeout(r, 20));
    step[0]!.open();
    await new Promise((r) => setTimeout(r, 20));
    ac.abort();
    await reader.cancel().catch(() => undefined);
    step[1]!.open();
    step[2]!.open();
    const [m, a, b] = await Promise.all([main, sub1, sub2]);
    const tail = (events: Array<Record<string, unknown>>, v1: boolean) =>
      events
        .slice(1)
        .map((e) =>
          v1 ? JSON.stringify(Object.values(at<Record<string, unknown>>(e, "result"))[0]) : at<string>(e, "result.kind"),
        );
    expect(tail(m.events, true)).toEqual(tail(a.events, true));
    expect(at(m.events[m.events.length - 1], "result.statusUpdate.status.state")).toBe("TASK_STATE_COMPLETED");
    expect(tail(b.events, false)).toEqual(["artifact-update", "artifact-update", "artifact-update", "status-update"]);
    expect(at(a.events[0], "result.task.id")).toBe(taskId);
  });

  it("a v0.3 resubscribe to a finished task gets the task and the end", async () => {
    const s = await serve(async () => "done");
    const r = await s.rpc("message/send", { message: v03Message("x") });
    const sub = await s.stream("tasks/resubscribe", { id: at(r.body, "result.id") });
    expect(sub.events).toHaveLength(1);
    expect(at(sub.events[0], "result.status.state")).toBe("completed");
  });
});

describe("A2A service: cancel", () => {
  it("cancel aborts the handler's signal, ends the streams with canceled, and is idempotent", async () => {
    let aborted = false;
    const s = await serve(async (_m, ctx) => {
      await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
      aborted = true;
      return "too late";
    });
    const stream = s.stream("SendStreamingMessage", { message: v1Message("long") }, { version: "1.0" });
    await until(() => s.server.service.activeRuns === 1, "the run");
    const id = at<string>((await s.rpc("ListTasks", {}, { version: "1.0" })).body, "result.tasks[0].id");
    const c = await s.rpc("CancelTask", { id }, { version: "1.0" });
    expect(at(c.body, "result.status.state")).toBe("TASK_STATE_CANCELED");
    const events = (await stream).events;
    expect(at(events[events.length - 1], "result.statusUpdate.status.state")).toBe("TASK_STATE_CANCELED");
    await until(() => aborted, "the handler to see the abort");
    const again = await s.rpc("tasks/cancel", { id });
    expect(at(again.body, "result.status.state")).toBe("canceled");
    expect(at((await s.rpc("GetTask", { id }, { version: "1.0" })).body, "result.status.state")).toBe("TASK_STATE_CANCELED");
  });

  it("a task waiting for input can be canceled", async () => {
    const s = await serve(async () => reply.inputRequired("?"));
    const r = await s.rpc("SendMessage", { message: v1Message("x") }, { version: "1.0" });
    const id = at<string>(r.body, "result.task.id");
    const c = await s.rpc("CancelTask", { id }, { version: "1.0" });
    expect(at(c.body, "result.status.state")).toBe("TASK_STATE_CANCELED");
    expect(at((await s.rpc("GetTask", { id }, { version: "1.0" })).body, "result.status.state")).toBe("TASK_STATE_CANCELED");
  });
});

describe("A2A service: ListTasks", () => {
  it("pages newest first, filters, scopes by caller; admins relayed by the platform see all", async () => {
    const s = await serve(async (m) => (m.parts[0]!.text === "ask" ? reply.inputRequired("?") : "ok"));
    for (let i = 0; i < 5; i++) await s.rpc("SendMessage", { message: v1Message(`t${i}`) }, { version: "1.0" });
    await s.rpc("SendMessage", { message: v1Message("ask") }, { version: "1.0" });
    await s.rpc("SendMessage", { message: v1Message("bob's") }, { version: "1.0", headers: asCaller(BOB) });
    const seen: string[] = [];
    let token = "";
    do {
      const r = await s.rpc("ListTasks", { pageSize: 2, ...(token ? { pageToken: token } : {}) }, { version: "1.0" });
      expect(at(r.body, "result.totalSize")).toBe(6);
      for (const t of at<Array<{ id: string; artifacts?: unknown }>>(r.body, "result.tasks")) {
        expect(t.artifacts).toBeUndefined();
        seen.push(t.id);
      }
      token = at<string>(r.body, "result.nextPageToken");
    } while (token);
    expect(new Set(seen).size).toBe(6);
    const waiting = await s.rpc("ListTasks", { status: "TASK_STATE_INPUT_REQUIRED", includeArtifacts: true }, { version: "1.0" });
    expect(at(waiting.body, "result.tasks")).toHaveLength(1);
    expect(at(waiting.body, "result.tasks[0].artifacts")).toEqual([]);
    const bob = await s.rpc("ListTasks", {}, { version: "1.0", headers: asCaller(BOB) });
    expect(at(bob.body, "result.totalSize")).toBe(1);
    const admin = await s.rpc("ListTasks", {}, { version: "1.0", headers: viaIngress({ id: "apikey:admin1", admin: true }) });
    expect(at(admin.body, "result.totalSize")).toBe(7);
    // A tenant key relayed by the ingress is an ordinary owner: it sees only its own.
    const key = await s.rpc("ListTasks", {}, { version: "1.0", headers: viaIngress({ id: "apikey:k2" }) });
    expect(at(key.body, "result.totalSize")).toBe(0);
  });
});

describe("A2A service: agent cards", () => {
  it("serves the v1.0 card for A2A-Version 1.0 and the v0.3 card otherwise, with ETag and Vary", async () => {
    const s = await serve(async () => "x");
    const base = new URL(s.url);
    const v1 = await fetch(new URL("/.well-known/agent-card.json", base), { headers: { "a2a-version": "1.0" } });
    const card1 = (await v1.json()) as Record<string, unknown>;
    expect(card1["supportedInterfaces"]).toEqual([
      { url: s.url, protocolBinding: "JSONRPC", protocolVersion: "1.0" },
      { url: s.url, protocolBinding: "JSONRPC", protocolVersion: "0.3" },
    ]);
    expect(v1.headers.get("vary")).toBe("A2A-Version");
    const legacy = (await (await fetch(new URL("/.well-known/agent.json", base))).json()) as Record<string, unknown>;
    expect(legacy).toMatchObject({ protocolVersion: "0.3.0", url: s.url, preferredTransport: "JSONRPC" });
    const etag = v1.headers.get("etag")!;
    const cached = await fetch(new URL("/.well-known/agent-card.json", base), {
      headers: { "a2a-version": "1.0", "if-none-match": etag },
    });
    expect(cached.status).toBe(304);
    const bad = await fetch(new URL("/.well-known/agent-card.json", base), { headers: { "a2a-version": "9.9" } });
    expect(bad.status).toBe(400);
  });

  it("GetExtendedAgentCard: the card with the extended skills to authenticated callers; -32004 without any", async () => {
    a2a = await startTestA2A({
      storage,
      handler: async () => "x",
      metadata: {
        name: "writer",
        description: "writes",
        skills: [{ id: "write", name: "Write", description: "public" }],
        extendedSkills: [{ id: "edit", name: "Edit", description: "for callers only" }],
      },
    });
    const pub = (await (
      await fetch(new URL("/.well-known/agent-card.json", a2a.url), { headers: { "a2a-version": "1.0" } })
    ).json()) as Record<string, unknown>;
    expect(at(pub, "capabilities.extendedAgentCard")).toBe(true);
    expect((pub["skills"] as Array<{ id: string }>).map((x) => x.id)).toEqual(["write"]);
    const ext = await a2a.rpc("GetExtendedAgentCard", undefined, { version: "1.0" });
    expect(at<Array<{ id: string }>>(ext.body, "result.skills").map((x) => x.id)).toEqual(["write", "edit"]);
    const v03 = await a2a.rpc("agent/getAuthenticatedExtendedCard");
    expect(at(v03.body, "result.protocolVersion")).toBe("0.3.0");
    await a2a.close();
    a2a = await startTestA2A({ storage, agent: "plain", handler: async () => "x" });
    expect(at((await a2a.rpc("GetExtendedAgentCard", {}, { version: "1.0" })).body, "error.code")).toBe(-32004);
  });
});
