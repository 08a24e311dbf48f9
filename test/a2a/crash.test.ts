/**
 * Crash semantics of the a2a-sidecar, as a real process killed with SIGKILL: completed tasks keep
 * their history, artifacts and status; tasks that were in flight are marked failed with the reason
 * at the next start (their handler run is lost); a retry of their messageId returns that same task.
 * On SQLite and on PostgreSQL.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PG_URL } from "../../packages/platform/src/test-support/storage.js";
import { startBridge } from "../../packages/sdk/src/agent/bridge.js";
import type { AgentContext } from "../../packages/sdk/src/agent/define.js";

const SIDECAR = fileURLToPath(new URL("../../packages/platform/dist/a2a/sidecar-main.js", import.meta.url));
if (!existsSync(SIDECAR))
  throw new Error(`${SIDECAR} is missing: these tests run the built sidecar; use 'npm test' (it builds first)`);

const BRIDGE_TOKEN = randomBytes(32).toString("base64url");
const INBOUND_TOKEN = randomBytes(32).toString("base64url");
const CALLER = "spiffe://hexr.local/agent/acme/researcher/main";

interface Sidecar {
  child: ChildProcess;
  url: string;
  recovered: number;
  output: () => string;
}

function startSidecar(env: Record<string, string>): Promise<Sidecar> {
  const child = spawn(process.execPath, [SIDECAR], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sidecar did not start:\n${out}`)), 20_000);
    child.once("exit", (code) => reject(new Error(`sidecar exited with ${code}:\n${out}`)));
    child.stdout!.once("data", (d: Buffer) => {
      clearTimeout(timer);
      const info = JSON.parse(d.toString().split("\n")[0]!) as { url: string; recovered: number };
      resolve({ child, url: info.url, recovered: info.recovered, output: () => out });
    });
  });
}

const exited = (c: ChildProcess) =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once("exit", () => r()));

async function rpc(url: string, method: string, params: unknown) {
  const res = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "a2a-version": "1.0",
      "x-hexr-mesh-token": INBOUND_TOKEN,
      "x-hexr-caller-spiffe-id": CALLER,
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  return (await res.json()) as {
    result?: Record<string, unknown> & { task?: Record<string, unknown> };
    error?: { code: number };
  };
}

const message = (text: string, messageId = randomUUID()) => ({ messageId, role: "ROLE_USER", parts: [{ text }] });

describe.each(["sqlite", "postgres"] as const)("a2a-sidecar killed with SIGKILL (%s)", (dialect) => {
  let dir: string;
  let schema: string;
  let bridge: Awaited<ReturnType<typeof startBridge>>;
  const slowCalls: string[] = [];
  let env: Record<string, string>;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "hexr-a2a-crash-"));
    schema = `t_${randomBytes(6).toString("hex")}`;
    if (dialect === "postgres") {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`CREATE SCHEMA ${schema}`);
      await c.end();
    }
    bridge = await startBridge({
      meshToken: BRIDGE_TOKEN,
      handler: async (input, ctx) => {
        if (input === "slow") {
          slowCalls.push(ctx.taskId ?? "");
          await new Promise((r) => ctx.signal.addEventListener("abort", r));
          return "never";
        }
        return `done: ${String(input)}`;
      },
      context: (c) =>
        ({
          ...c,
          spiffeId: "spiffe://hexr.local/agent/acme/writer/main",
          tenant: "acme",
          agent: "writer",
          role: "main",
          call: async () => undefined,
        }) as unknown as AgentContext,
    });
    env = {
      HEXR_TENANT: "acme",
      HEXR_AGENT_NAME: "writer",
      HEXR_A2A_DATABASE_URL:
        dialect === "sqlite" ? `sqlite:${join(dir, "a2a.db")}` : `${PG_URL}?options=-c%20search_path%3D${schema}`,
      HEXR_A2A_BRIDGE_URL: `http://127.0.0.1:${bridge.port}`,
      HEXR_MESH_TOKEN: BRIDGE_TOKEN,
      HEXR_A2A_INBOUND_TOKEN: INBOUND_TOKEN,
      HEXR_A2A_RUNNER: "pod-1/writer",
    };
  });

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await bridge.close();
    rmSync(dir, { recursive: true, force: true });
    if (dialect === "postgres") {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
    }
  });

  it("keeps finished tasks, fails the in-flight ones with a reason, and retries return the same task", async () => {
    const first = await startSidecar(env);
    children.push(first.child);
    expect(first.recovered).toBe(0);
    const done = await rpc(first.url, "SendMessage", { message: message("quick") });
    const doneTask = done.result!.task!;
    expect(doneTask["status"]).toMatchObject({ state: "TASK_STATE_COMPLETED" });
    const slowMessage = message("slow");
    const slow = await rpc(first.url, "SendMessage", { message: slowMessage, configuration: { returnImmediately: true } });
    const slow2 = await rpc(first.url, "SendMessage", { message: message("slow"), configuration: { returnImmediately: true } });
    const slowId = slow.result!.task!["id"] as string;
    const deadline = Date.now() + 10_000;
    while (slowCalls.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(slowCalls.sort()).toEqual([slowId, slow2.result!.task!["id"] as string].sort());

    first.child.kill("SIGKILL");
    await exited(first.child);

    const second = await startSidecar(env);
    children.push(second.child);
    expect(second.recovered).toBe(2);
    const kept = await rpc(second.url, "GetTask", { id: doneTask["id"] });
    expect(kept.result).toEqual(doneTask);
    const failed = await rpc(second.url, "GetTask", { id: slowId });
    expect(failed.result!["status"]).toMatchObject({ state: "TASK_STATE_FAILED" });
    expect(JSON.stringify(failed.result!["status"])).toMatch(/restarted while this task was in flight/);
    expect((failed.result!["history"] as unknown[]).length).toBe(2);
    // A retry of the lost message is the same task, not a new run.
    const calls = slowCalls.length;
    const retried = await rpc(second.url, "SendMessage", { message: slowMessage });
    expect(retried.result!.task!["id"]).toBe(slowId);
    expect(retried.result!.task!["status"]).toMatchObject({ state: "TASK_STATE_FAILED" });
    expect(slowCalls.length).toBe(calls);
    const list = await rpc(second.url, "ListTasks", {});
    expect(list.result!["totalSize"]).toBe(3);

    // A graceful stop (SIGTERM) records the same outcome at once, with its own reason.
    const third = await rpc(second.url, "SendMessage", { message: message("slow"), configuration: { returnImmediately: true } });
    while (slowCalls.length < calls + 1) await new Promise((r) => setTimeout(r, 10));
    second.child.kill("SIGTERM");
    await exited(second.child);
    expect(second.child.exitCode).toBe(0);
    const after = await startSidecar(env);
    children.push(after.child);
    expect(after.recovered).toBe(0);
    const stopped = await rpc(after.url, "GetTask", { id: third.result!.task!["id"] });
    expect(JSON.stringify(stopped.result!["status"])).toMatch(/TASK_STATE_FAILED.*shut down while this task was in flight/);
    after.child.kill("SIGTERM");
    await exited(after.child);
  });
});
