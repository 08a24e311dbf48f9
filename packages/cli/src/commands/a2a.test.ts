import { HexrError } from "@hexr/core";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "../../../platform/src/a2a/handler.js";
import { startTestPlatform, type TestPlatform } from "../../../platform/src/test-support/platform.js";
import { HEXR_BIN } from "../../../../test/helpers/cli.js";
import { startMeshedAgent, type MeshedAgent } from "../../../../test/a2a/agent-fixture.js";

// The platform runs in this process, so the CLI must run without blocking it (no spawnSync).
function hexr(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [HEXR_BIN, ...args], {
      env: { ...process.env, HEXR_PLATFORM_URL: "", HEXR_API_KEY: "", HEXR_TENANT: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

let p: TestPlatform;
let agent: MeshedAgent;
const a2a = (...args: string[]) => hexr(["a2a", ...args, "--tenant", "acme", "--data-dir", p.dataDir]);

beforeAll(async () => {
  p = await startTestPlatform();
  await p.api("/api/v1/tenants", { method: "POST", json: { name: "acme" } });
  agent = await startMeshedAgent(p, {
    tenant: "acme",
    name: "writer",
    handler: async function* (m, ctx) {
      const t = m.parts[0]?.text ?? "";
      if (t === "ask") return reply.inputRequired("About what?");
      if (t === "fail") throw new HexrError("writer.blocked", "no topic, no article", { kind: "invalid_argument" });
      if (ctx.history.length > 1) return `the article about ${t}`;
      yield "article ";
      yield `about ${t}`;
      return undefined;
    },
  });
});

afterAll(async () => {
  await agent?.close();
  await p?.dispose();
});

// Each CLI run is a Node start-up (seconds on a loaded machine): generous per-test timeouts.
const SLOW = 180_000;

describe("hexr a2a", () => {
  it(
    "send prints the agent's answer; --json the task; --stream the chunks as they come",
    async () => {
      const plain = await a2a("send", "writer", "SPIFFE");
      expect(plain).toMatchObject({ code: 0, stdout: "article about SPIFFE\n" });
      const json = await a2a("send", "writer", "SPIFFE", "--json");
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout)).toMatchObject({
        status: { state: "TASK_STATE_COMPLETED" },
        artifacts: [{ parts: [{ text: "article about SPIFFE" }] }],
      });
      const streamed = await a2a("send", "writer", "mTLS", "--stream");
      expect(streamed).toMatchObject({ code: 0, stdout: "article about mTLS\n" });
      const ndjson = await a2a("send", "writer", "mTLS", "--stream", "--json");
      const kinds = ndjson.stdout
        .trim()
        .split("\n")
        .map((l) => (JSON.parse(l) as { kind: string }).kind);
      expect(kinds).toEqual(["task", "artifact-update", "artifact-update", "status-update"]);
    },
    SLOW,
  );

  it(
    "an input-required task is continued with --task; the same --message-id returns the same task",
    async () => {
      const asked = await a2a("send", "writer", "ask", "--json", "--message-id", "m-ask-1");
      expect(asked.code).toBe(0);
      const task = JSON.parse(asked.stdout) as { id: string; status: { state: string } };
      expect(task.status.state).toBe("TASK_STATE_INPUT_REQUIRED");
      const again = await a2a("send", "writer", "ask", "--json", "--message-id", "m-ask-1");
      expect((JSON.parse(again.stdout) as { id: string }).id).toBe(task.id);
      const human = await a2a("send", "writer", "ask");
      expect(human.stderr).toMatch(/input-required — answer with --task /);
      const answered = await a2a("send", "writer", "SPIFFE", "--task", task.id);
      expect(answered).toMatchObject({ code: 0, stdout: "the article about SPIFFE\n" });
    },
    SLOW,
  );

  it(
    "tasks lists them newest first; get shows one; --json for scripts",
    async () => {
      const list = await a2a("tasks", "writer", "--json");
      expect(list.code).toBe(0);
      const { tasks, totalSize } = JSON.parse(list.stdout) as {
        tasks: Array<{ id: string; history?: unknown }>;
        totalSize: number;
      };
      expect(tasks.length).toBe(totalSize);
      expect(tasks.length).toBeGreaterThanOrEqual(6);
      expect(tasks[0]!.history).toBeUndefined();
      const table = await a2a("tasks", "writer", "--state", "completed", "--limit", "2");
      expect(table.stdout.split("\n")[0], table.stderr).toMatch(/^ID\s+STATE\s+UPDATED\s+CONTEXT/);
      expect(table.stdout.trim().split("\n")).toHaveLength(3);
      expect(table.stderr).toMatch(/\(2 of \d+; use --limit\)/);
      const got = await a2a("get", "writer", tasks[0]!.id, "--json");
      expect((JSON.parse(got.stdout) as { id: string }).id).toBe(tasks[0]!.id);
      const card = await a2a("card", "writer");
      expect(card.stdout).toMatch(/A2A 1\.0\s+http:\/\/127\.0\.0\.1:\d+\/a2a\/acme\/writer/);
      expect(card.stdout).toMatch(/signed: yes/);
    },
    SLOW,
  );

  it(
    "errors: one line, the exit code of their kind",
    async () => {
      const sent = await a2a("send", "writer", "x", "--json");
      expect(sent.code, sent.stderr).toBe(0);
      const done = JSON.parse(sent.stdout) as { id: string };
      const cancel = await a2a("cancel", "writer", done.id);
      expect(cancel.code).toBe(6);
      expect(cancel.stderr).toMatch(/^hexr: writer: Task cannot be canceled: .* TASK_STATE_COMPLETED\n$/);
      const failed = await a2a("send", "writer", "fail");
      expect(failed.code).toBe(69);
      expect(failed.stderr).toMatch(/task .* failed: The agent failed: no topic, no article/);
      const missing = await a2a("get", "writer", "no-such-task", "--json");
      expect(missing.code).toBe(4);
      expect(JSON.parse(missing.stderr)).toMatchObject({ error: { code: "a2a.task_not_found" } });
      const nobody = await a2a("send", "nobody", "hi");
      expect(nobody.code).toBe(4);
      expect(nobody.stderr).toMatch(/agent/);
      const badTenant = await hexr(["a2a", "send", "writer", "x", "--tenant", "Not_A_Tenant", "--data-dir", p.dataDir]);
      expect(badTenant.code).toBe(2);
      const badState = await a2a("tasks", "writer", "--state", "sleeping");
      expect(badState.code).toBe(2);
      const dir = mkdtempSync(join(tmpdir(), "hexr-cli-a2a-"));
      try {
        const down = await hexr(["a2a", "send", "writer", "x", "--data-dir", dir]);
        expect(down.code).toBe(69);
        expect(down.stderr).toMatch(/no platform is running/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      const help = await hexr(["a2a", "send", "--help"]);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/--stream/);
    },
    SLOW,
  );
});
