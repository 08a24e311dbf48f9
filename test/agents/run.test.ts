import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HEXR_BIN, REPO, hexr, startUp, waitForExit, type RunningPlatform } from "../helpers/cli.js";

interface RoleRow {
  role: string;
  spiffeId: string;
  endpoint: string;
  pid: number;
}

/** Starts `hexr run <agent file>` and waits for its JSON "ready" line. */
async function runAgent(
  dataDir: string,
  file: string,
  tenant: string,
): Promise<{ child: ChildProcess; roles: RoleRow[]; output: () => string }> {
  const child = spawn(
    process.execPath,
    [HEXR_BIN, "run", join(REPO, file), "--tenant", tenant, "--data-dir", dataDir, "--json"],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, HEXR_PLATFORM_URL: "", HEXR_API_KEY: "", OPENAI_API_KEY: "" },
    },
  );
  let out = "";
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const roles = await new Promise<RoleRow[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent not ready:\n${out}`)), 90_000);
    child.once("exit", (code) => reject(new Error(`hexr run exited ${code}:\n${out}`)));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      out += line + "\n";
      try {
        const msg = JSON.parse(line) as { event?: string; roles?: RoleRow[] };
        if (msg.event === "ready") {
          clearTimeout(timer);
          resolve(msg.roles!);
        }
      } catch {
        // role output
      }
    });
  });
  return { child, roles, output: () => out };
}

/** Calls an agent over mTLS from a process that has its own identity (`hexr run --name tester`). */
function callAs(dataDir: string, tenant: string, endpoint: string, expected: string, input: unknown) {
  const r = hexr(
    [
      "run",
      "--name",
      "tester",
      "--tenant",
      tenant,
      "--data-dir",
      dataDir,
      "--",
      process.execPath,
      join(REPO, "test/agents/fixtures/call-agent.mjs"),
      endpoint,
      expected,
      JSON.stringify(input),
    ],
    { OPENAI_API_KEY: "" },
  );
  if (r.code !== 0) throw new Error(`caller failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
    caller: string;
    status: number;
    body: { output?: Record<string, unknown>; code?: string };
  };
}

async function agentsJson(dataDir: string, tenant: string) {
  const r = hexr(["agents", "--tenant", tenant, "--json", "--data-dir", dataDir]);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Array<{
    name: string;
    status: string;
    roles: Array<{ role: string; spiffeId: string; status: string; pid: number; restarts: number }>;
  }>;
}

describe("hexr run agent.ts", () => {
  let dataDir: string;
  let up: RunningPlatform;
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "hexr-agents-"));
    up = await startUp(dataDir);
  });
  afterAll(async () => {
    up.child.kill("SIGTERM");
    await waitForExit(up.child);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it(
    "runs research-analyst under its SPIFFE ID, lists it in hexr agents, and serves mTLS callers",
    { timeout: 120_000 },
    async () => {
      const run = await runAgent(dataDir, "examples/research-analyst/agent.ts", "acme-corp");
      try {
        expect(run.roles).toHaveLength(1);
        const id = "spiffe://hexr.local/agent/acme-corp/research-analyst/main";
        expect(run.roles[0]!.spiffeId).toBe(id);

        const [agent] = await agentsJson(dataDir, "acme-corp");
        expect(agent).toMatchObject({ name: "research-analyst", status: "running" });
        expect(agent!.roles[0]).toMatchObject({ role: "main", spiffeId: id, status: "running" });

        const table = hexr(["agents", "--data-dir", dataDir]);
        expect(table.stdout).toContain(id);

        const r = callAs(dataDir, "acme-corp", run.roles[0]!.endpoint, id, {
          text: "Identity is the root of trust. Identity flows everywhere.",
        });
        expect(r.status).toBe(200);
        expect(r.body.output).toMatchObject({
          words: 9,
          analyzedBy: id,
          keyTerms: [{ term: "identity", count: 2 }, expect.anything(), expect.anything(), expect.anything(), expect.anything()],
        });

        // Callers outside the mesh use the platform's A2A ingress (here with the local admin key).
        const sent = hexr([
          "a2a",
          "send",
          "research-analyst",
          "Trust the kernel. The kernel knows the pid.",
          "--tenant",
          "acme-corp",
          "--json",
          "--data-dir",
          dataDir,
        ]);
        expect(sent.code).toBe(0);
        expect(sent.stdout).toContain('"kernel"');
        expect(sent.stdout).toContain("COMPLETED");

        // A caller from another tenant is refused by the mesh proxy.
        const spy = callAs(dataDir, "beta-inc", run.roles[0]!.endpoint, id, { text: "x" });
        expect(spy.status).toBe(403);
        expect(spy.body.code).toBe("mesh.peer_not_allowed");
      } finally {
        run.child.kill("SIGINT");
        expect(await waitForExit(run.child)).toBe(0);
      }
      const [after] = await agentsJson(dataDir, "acme-corp");
      expect(after!.status).toBe("stopped");
    },
  );

  it(
    "runs content-crew as two processes with two identities; the researcher calls the writer over the mesh; a killed role restarts and is re-attested",
    { timeout: 180_000 },
    async () => {
      const run = await runAgent(dataDir, "examples/content-crew/agent.ts", "acme-corp");
      try {
        const byRole = Object.fromEntries(run.roles.map((r) => [r.role, r]));
        expect(Object.keys(byRole).sort()).toEqual(["researcher", "writer"]);
        expect(byRole["researcher"]!.pid).not.toBe(byRole["writer"]!.pid);
        const researcherId = "spiffe://hexr.local/agent/acme-corp/content-crew/researcher";
        const writerId = "spiffe://hexr.local/agent/acme-corp/content-crew/writer";

        const brief = "Agents need identity. Identity makes agents accountable.";
        const first = callAs(dataDir, "acme-corp", byRole["researcher"]!.endpoint, researcherId, brief);
        expect(first.status).toBe(200);
        expect(first.body.output).toMatchObject({ writtenBy: writerId, requestedBy: researcherId });
        expect(String(first.body.output!["article"])).toContain("# Agents need identity");

        // The writer's A2A sidecar asks the platform's policy engine (a2a:send) on every call.
        const admin = { authorization: `Bearer ${up.adminKey}`, "content-type": "application/json" };
        const policyUrl = `${up.url}/api/v1/tenants/acme-corp/policies/no-writer`;
        const forbid = `forbid (principal == Hexr::Agent::"${researcherId}", action == Hexr::Action::"a2a:send", resource == Hexr::Agent::"${writerId}");`;
        expect(
          (await fetch(policyUrl, { method: "PUT", headers: admin, body: JSON.stringify({ policy: forbid, mode: "enforce" }) }))
            .status,
        ).toBeLessThan(300);
        const denied = callAs(dataDir, "acme-corp", byRole["researcher"]!.endpoint, researcherId, brief);
        expect(denied.status).toBe(500);
        expect(JSON.stringify(denied.body)).toContain("a2a:send");
        const log = (await (
          await fetch(`${up.url}/api/v1/tenants/acme-corp/policies/decisions?action=a2a:send&effect=deny`, { headers: admin })
        ).json()) as { items: Array<{ principal: string }> };
        expect(log.items[0]?.principal).toBe(researcherId);
        expect((await fetch(policyUrl, { method: "DELETE", headers: admin })).status).toBeLessThan(300);

        // Kill the writer: the supervisor restarts it, registers the new process, and calls work again.
        process.kill(byRole["writer"]!.pid, "SIGKILL");
        let writer: { status: string; pid: number; restarts: number } | undefined;
        for (let i = 0; i < 300; i++) {
          const [crew] = await agentsJson(dataDir, "acme-corp").then((xs) => xs.filter((a) => a.name === "content-crew"));
          writer = crew!.roles.find((r) => r.role === "writer");
          if (writer && writer.restarts >= 1 && writer.status === "running") break;
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(writer).toMatchObject({ status: "running", restarts: 1 });
        expect(writer!.pid).not.toBe(byRole["writer"]!.pid);
        const second = callAs(dataDir, "acme-corp", byRole["researcher"]!.endpoint, researcherId, brief);
        expect(second.body.output).toMatchObject({ writtenBy: writerId });
      } finally {
        run.child.kill("SIGINT");
        expect(await waitForExit(run.child)).toBe(0);
      }
    },
  );

  it("explains what is wrong with a bad agent file", () => {
    const r = hexr(["run", join(REPO, "test/agents/fixtures/call-agent.mjs"), "--data-dir", dataDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("defines no agent");
    const usage = hexr(["run", "--data-dir", dataDir, "--", "true"]);
    expect(usage.code).toBe(2);
  });
});
