import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { processSelectors } from "../../packages/platform/src/identity/attestation/unix-attestor.js";
import { readBootId, readProcStat } from "../../packages/platform/src/identity/attestation/proc.js";
import { startTestPlatform, type TestPlatform } from "../../packages/platform/src/test-support/platform.js";
import type { PlatformConfigInput } from "../../packages/platform/src/config/schema.js";

export interface IdentityPlatform extends TestPlatform {
  socketPath: string;
  trustDomain: string;
  /** Creates an entry through the REST API (as `hexr run` does), pinned to one live process. */
  registerProcess(pid: number, spiffeId: string, extra?: Record<string, unknown>): Promise<{ id: string }>;
  /** Creates an arbitrary entry through the REST API. */
  createEntry(body: Record<string, unknown>): Promise<{ id: string }>;
  deleteAllEntries(): Promise<void>;
}

/** A whole platform (SQLite, port 0, temp data dir) with its Workload API socket. */
export async function startIdentityPlatform(
  identity: NonNullable<PlatformConfigInput["identity"]> = {},
): Promise<IdentityPlatform> {
  const p = await startTestPlatform({ config: { identity } });
  const createEntry = async (body: Record<string, unknown>) => {
    const res = await p.api("/api/v1/identity/entries", { method: "POST", json: body });
    if (res.status !== 201) throw new Error(`entry create failed: ${res.status} ${await res.text()}`);
    return (await res.json()) as { id: string };
  };
  return Object.assign(p, {
    socketPath: p.info.workloadSocket,
    trustDomain: p.info.trustDomain,
    createEntry,
    async registerProcess(pid: number, spiffeId: string, extra: Record<string, unknown> = {}) {
      const { startTime } = await readProcStat(pid);
      return createEntry({ spiffeId, selectors: processSelectors(pid, startTime, readBootId()), createdBy: "test", ...extra });
    },
    async deleteAllEntries() {
      const res = await p.api("/api/v1/identity/entries?limit=1000");
      const { items } = (await res.json()) as { items: Array<{ id: string }> };
      for (const e of items) await p.api(`/api/v1/identity/entries/${e.id}`, { method: "DELETE" });
    },
  });
}

export const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));

export interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
  json: Record<string, unknown> | undefined;
}

/** Runs a fixture script with a JSON config, returns its output (the last stdout line parsed as JSON). */
export function runFixture(script: string, config: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FIXTURES + script, JSON.stringify(config)], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const last = stdout.trim().split("\n").pop();
      let json: Record<string, unknown> | undefined;
      try {
        json = last ? (JSON.parse(last) as Record<string, unknown>) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json });
    });
  });
}

/** /proc/<pid>/stat start time, for markers written by tests. */
export function startTimeOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!;
}

export interface StartedFixture {
  pid: number;
  /** The first JSON line the fixture printed. */
  first: Record<string, unknown>;
  result: Promise<ChildResult>;
}

/** Starts a fixture and waits for its first JSON line (its pid), so a test can act before it proceeds. */
export function startFixture(script: string, config: Record<string, unknown>): Promise<StartedFixture> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FIXTURES + script, JSON.stringify(config)], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let announced = false;
    const result = new Promise<ChildResult>((res) => {
      child.on("close", (code) => {
        const last = stdout.trim().split("\n").pop();
        let json: Record<string, unknown> | undefined;
        try {
          json = last ? (JSON.parse(last) as Record<string, unknown>) : undefined;
        } catch {
          json = undefined;
        }
        if (!announced) reject(new Error(`fixture ${script} exited before announcing itself: ${stderr}`));
        res({ code, stdout, stderr, json });
      });
    });
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      const nl = stdout.indexOf("\n");
      if (!announced && nl !== -1) {
        announced = true;
        const first = JSON.parse(stdout.slice(0, nl)) as Record<string, unknown>;
        resolve({ pid: first["pid"] as number, first, result });
      }
    });
    child.on("error", reject);
  });
}
