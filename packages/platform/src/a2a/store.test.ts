import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Storage } from "../storage/types.js";
import { storageFixtures, type StorageFixture } from "../test-support/storage.js";
import { reply } from "./handler.js";
import { at, startTestA2A, until, v1Message, type TestA2A } from "./test-support/server.js";

// The same behaviour on every Storage implementation (SQLite and PostgreSQL).
describe.each(storageFixtures.map((make) => [make().name, make] as const))("A2A task store on %s", (_name, make) => {
  let fixture: StorageFixture;
  const open: Storage[] = [];
  const servers: TestA2A[] = [];

  beforeEach(() => {
    fixture = make();
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
    for (const s of open.splice(0)) await s.close();
    await fixture.cleanup();
  });

  async function storage(): Promise<Storage> {
    const s = await fixture.open();
    open.push(s);
    return s;
  }
  async function server(o: Parameters<typeof startTestA2A>[0]): Promise<TestA2A> {
    const s = await startTestA2A(o);
    servers.push(s);
    return s;
  }

  it("tasks, history, artifacts and status survive closing and reopening the database", async () => {
    const db1 = await storage();
    const a = await server({
      storage: db1,
      runner: "r1",
      handler: async (m, ctx) => (ctx.history.length === 1 ? reply.inputRequired("title?") : `article: ${m.parts[0]!.text}`),
    });
    const first = await a.rpc("SendMessage", { message: v1Message("write") }, { version: "1.0" });
    const task = at<{ id: string; contextId: string }>(first.body, "result.task");
    const done = await a.rpc("SendMessage", { message: v1Message("SPIFFE", { taskId: task.id }) }, { version: "1.0" });
    const waiting = await a.rpc("SendMessage", { message: v1Message("write") }, { version: "1.0" });
    await a.close();
    servers.pop();
    await db1.close();
    open.pop();

    const b = await server({ storage: await storage(), runner: "r1", handler: async () => "second life" });
    const got = await b.rpc("GetTask", { id: task.id }, { version: "1.0" });
    expect(got.body.result).toEqual(done.body.result!["task"]);
    expect(at<unknown[]>(got.body, "result.history")).toHaveLength(3);
    // A task that was waiting for input still is, and can be continued by the new process.
    const wid = at<string>(waiting.body, "result.task.id");
    expect(at((await b.rpc("GetTask", { id: wid }, { version: "1.0" })).body, "result.status.state")).toBe(
      "TASK_STATE_INPUT_REQUIRED",
    );
    const cont = await b.rpc("SendMessage", { message: v1Message("go on", { taskId: wid }) }, { version: "1.0" });
    expect(at(cont.body, "result.task.artifacts[0].parts[0].text")).toBe("second life");
  });

  it("20 concurrent sends of one messageId across two servers sharing the database → one task, one run", async () => {
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const handler = async () => {
      runs++;
      await gate;
      return "once";
    };
    const a = await server({ storage: await storage(), runner: "a", handler });
    const b = await server({ storage: await storage(), runner: "b", handler });
    const message = v1Message("exactly once");
    const replies = Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).rpc("SendMessage", { message }, { version: "1.0" })),
    );
    await until(() => runs > 0, "a run to start");
    release();
    const all = await replies;
    expect(new Set(all.map((r) => at<string>(r.body, "result.task.id"))).size).toBe(1);
    // Blocking sends on the replica that lost the race wait for the winner's outcome.
    expect(all.map((r) => at(r.body, "result.task.status.state"))).toEqual(Array(20).fill("TASK_STATE_COMPLETED"));
    expect(runs).toBe(1);
    expect(await a.rows()).toHaveLength(1);
  });

  it("a restarted runner marks the tasks it left working as failed, with the reason; others' tasks are untouched", async () => {
    const db = await storage();
    let started = 0;
    const hang = async (_m: unknown, ctx: { signal: AbortSignal }) => {
      started++;
      await new Promise((r) => ctx.signal.addEventListener("abort", r));
      return "never";
    };
    const crashed = await server({ storage: db, runner: "crashy", handler: hang });
    const other = await server({ storage: await storage(), runner: "steady", handler: hang });
    const r1 = await crashed.rpc(
      "SendMessage",
      { message: v1Message("a"), configuration: { returnImmediately: true } },
      { version: "1.0" },
    );
    const r2 = await other.rpc(
      "SendMessage",
      { message: v1Message("b"), configuration: { returnImmediately: true } },
      { version: "1.0" },
    );
    await until(() => started === 2, "both handlers");
    await crashed.server.store.batcher.drain();
    await other.server.store.batcher.drain();
    // A new process under the runner name of the one that "died" (the old one is simply abandoned).
    const restarted = await server({ storage: await storage(), runner: "crashy", handler: hang });
    expect(restarted.server.recovered).toEqual([at(r1.body, "result.task.id")]);
    const t1 = await restarted.rpc("GetTask", { id: at(r1.body, "result.task.id") }, { version: "1.0" });
    expect(at(t1.body, "result.status.state")).toBe("TASK_STATE_FAILED");
    expect(at<string>(t1.body, "result.status.message.parts[0].text")).toMatch(/restarted while this task was in flight/);
    const t2 = await restarted.rpc("GetTask", { id: at(r2.body, "result.task.id") }, { version: "1.0" });
    expect(at(t2.body, "result.status.state")).toBe("TASK_STATE_WORKING");
  });
});
