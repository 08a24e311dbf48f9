import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HEXR_BIN, hexr, REPO, startUp, waitForExit, type RunningPlatform } from "../helpers/cli.js";

// `hexr run` end to end: a real `hexr up`, the built CLI, and child processes that ask the Workload
// API who they are.
let dataDir: string;
let up: RunningPlatform;
const ID = "spiffe://hexr.local/agent/acme-corp/researcher/main";

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "hexr-run-"));
  up = await startUp(dataDir);
});
afterAll(async () => {
  up.child.kill("SIGTERM");
  await waitForExit(up.child);
  rmSync(dataDir, { recursive: true, force: true });
});

const run = (args: string[], command: string[], env: NodeJS.ProcessEnv = {}) =>
  hexr(["run", "--data-dir", dataDir, ...args, "--", ...command], env);

describe("hexr run", () => {
  it("runs the command under its SPIFFE ID: whoami inside it names the agent", () => {
    const r = run(
      ["--name", "researcher", "--tenant", "acme-corp"],
      [process.execPath, HEXR_BIN, "identity", "whoami", "--json"],
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const me = JSON.parse(r.stdout) as { spiffeId: string; expiresAt: string; trustDomain: string };
    expect(me.spiffeId).toBe(ID);
    expect(me.trustDomain).toBe("hexr.local");
    expect(Date.parse(me.expiresAt)).toBeGreaterThan(Date.now() + 50 * 60_000);
  });

  it("prints the SPIFFE ID and expiry for humans, and a --role shows in the ID", () => {
    const r = run(
      ["--name", "researcher", "--tenant", "acme-corp", "--role", "tools"],
      [process.execPath, HEXR_BIN, "identity", "whoami"],
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^spiffe:\/\/hexr\.local\/agent\/acme-corp\/researcher\/tools\n {2}X\.509-SVID expires \d{4}-.*Z \(in \d+m \d+s\)\n$/,
    );
  });

  it("gives the child SPIFFE_ENDPOINT_SOCKET, HEXR_TENANT, HEXR_AGENT_NAME, HEXR_PLATFORM_URL", () => {
    const script =
      "console.log(JSON.stringify({ s: process.env.SPIFFE_ENDPOINT_SOCKET, t: process.env.HEXR_TENANT, a: process.env.HEXR_AGENT_NAME, u: process.env.HEXR_PLATFORM_URL }))";
    const r = run(["--name", "researcher", "--tenant", "acme-corp"], [process.execPath, "-e", script]);
    expect(JSON.parse(r.stdout)).toEqual({
      s: `unix://${join(dataDir, "run", "workload.sock")}`,
      t: "acme-corp",
      a: "researcher",
      u: up.url,
    });
  });

  it("the SDK in the child gets X.509 and JWT SVIDs (package 'hexr' as an agent imports it)", () => {
    const script = [
      "import { createIdentity } from 'hexr';",
      "const id = createIdentity(); await id.ready();",
      "const jwt = await id.jwtSvid('spiffe://hexr.local/system/platform');",
      "const v = await id.validateJwtSvid(jwt.token, 'spiffe://hexr.local/system/platform');",
      "console.log(JSON.stringify({ x509: id.spiffeId, jwt: jwt.spiffeId, valid: v.spiffeId })); id.close();",
    ].join("\n");
    const r = hexr([
      "run",
      "--data-dir",
      dataDir,
      "--name",
      "researcher",
      "--tenant",
      "acme-corp",
      "--",
      process.execPath,
      "--input-type=module",
      "-e",
      script,
    ]);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual({ x509: ID, jwt: ID, valid: ID });
  });

  it("exits with the child's exit code, 128+n when it dies of a signal, 127 when the command does not exist", () => {
    expect(run(["--name", "researcher", "--tenant", "acme-corp"], ["sh", "-c", "exit 42"]).code).toBe(42);
    expect(run(["--name", "researcher", "--tenant", "acme-corp"], ["sh", "-c", "kill -TERM $$"]).code).toBe(143);
    expect(run(["--name", "researcher", "--tenant", "acme-corp"], ["definitely-not-a-command-hexr"]).code).toBe(127);
  });

  it("forwards SIGTERM to the child and removes the registration entry afterwards", async () => {
    const child = spawn(
      process.execPath,
      [
        HEXR_BIN,
        "run",
        "--data-dir",
        dataDir,
        "--name",
        "researcher",
        "--tenant",
        "acme-corp",
        "--json",
        "--",
        process.execPath,
        "-e",
        "process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(7); }); console.log('ready'); setInterval(() => {}, 1000);",
      ],
      { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HEXR_PLATFORM_URL: "" } },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    while (!out.includes("ready")) await new Promise((r) => setTimeout(r, 20));
    const started = JSON.parse(err.trim().split("\n")[0]!) as { spiffeId: string; pid: number; entryId: string };
    expect(started.spiffeId).toBe(ID);
    const during = hexr(["identity", "entries", "get", started.entryId, "--data-dir", dataDir, "--json"]);
    expect(JSON.parse(during.stdout)).toMatchObject({ id: started.entryId, spiffeId: ID, createdBy: "hexr-run" });
    child.kill("SIGTERM");
    expect(await waitForExit(child)).toBe(7);
    expect(out).toContain("got SIGTERM");
    const after = hexr(["identity", "entries", "get", started.entryId, "--data-dir", dataDir, "--json"]);
    expect(after.code).toBe(4);
  });

  it("refuses bad names, missing flags and a missing platform with one line and an exit code", () => {
    const bad = run(["--name", "Researcher", "--tenant", "acme-corp"], ["true"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe("hexr: --name 'Researcher' must be a DNS label: 1-63 lowercase letters, digits or '-'\n");
    const missing = hexr(["run", "--data-dir", dataDir, "--name", "x", "--", "true"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--tenant/);
    const empty = mkdtempSync(join(tmpdir(), "hexr-run-none-"));
    try {
      const none = hexr(["run", "--data-dir", empty, "--name", "x", "--tenant", "y", "--json", "--", "true"]);
      expect(none.code).toBe(69);
      expect(JSON.parse(none.stderr)).toMatchObject({ error: { code: "cli.platform_not_running" } });
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe("hexr identity whoami outside hexr run", () => {
  it("says SPIFFE_ENDPOINT_SOCKET is missing (exit 6)", () => {
    const r = hexr(["identity", "whoami"], { SPIFFE_ENDPOINT_SOCKET: "" });
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/^hexr: SPIFFE_ENDPOINT_SOCKET is not set/);
  });

  it("is PERMISSION_DENIED for an unregistered process (exit 77), and a bad address is exit 2", () => {
    const r = hexr(["identity", "whoami", "--json", "--socket", `unix://${join(dataDir, "run", "workload.sock")}`]);
    expect(r.code).toBe(77);
    expect(JSON.parse(r.stderr)).toMatchObject({ error: { code: "identity.no_identity" } });
    const bad = hexr(["identity", "whoami", "--socket", "tcp://localhost:1"]);
    expect(bad.code).toBe(2);
  });

  it("reports an unreachable socket as unavailable (exit 69)", () => {
    const r = hexr(["identity", "whoami", "--socket", `unix://${join(dataDir, "nothing.sock")}`]);
    expect(r.code).toBe(69);
    expect(r.stderr).toMatch(/^hexr: Workload API connection failed/);
  });
});
