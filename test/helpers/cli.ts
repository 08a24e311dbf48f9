import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const HEXR_BIN = join(REPO, "packages/cli/dist/bin.js");

if (!existsSync(HEXR_BIN)) {
  throw new Error(`${HEXR_BIN} is missing: these tests run the built CLI; use 'npm test' (it builds first)`);
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `hexr <args>` to completion. */
export function hexr(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): CliResult {
  const r = spawnSync(process.execPath, [HEXR_BIN, ...args], {
    env: { ...process.env, HEXR_PLATFORM_URL: "", HEXR_API_KEY: "", ...env },
    encoding: "utf8",
    input,
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export interface RunningPlatform {
  child: ChildProcess;
  url: string;
  adminKey: string;
  output: () => string;
}

/** Starts `hexr up` on port 0 and waits until platform.json appears and /readyz answers. */
export async function startUp(dataDir: string, extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<RunningPlatform> {
  const child = spawn(
    process.execPath,
    [HEXR_BIN, "up", "--data-dir", dataDir, "--port", "0", "--log-format", "json", ...extraArgs],
    {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 30_000;
  const infoPath = join(dataDir, "platform.json");
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`hexr up exited with ${child.exitCode}:\n${out}`);
    if (existsSync(infoPath)) {
      try {
        const info = JSON.parse(readFileSync(infoPath, "utf8")) as { url: string; pid: number };
        if (info.pid === child.pid) {
          const res = await fetch(info.url + "/readyz").catch(() => undefined);
          if (res?.ok) {
            return { child, url: info.url, adminKey: readFileSync(join(dataDir, "admin.key"), "utf8").trim(), output: () => out };
          }
        }
      } catch {
        // being written
      }
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill("SIGKILL");
  throw new Error(`hexr up did not become ready:\n${out}`);
}

export function waitForExit(child: ChildProcess): Promise<number | null> {
  // A process killed by a signal has exitCode null and signalCode set: it has exited all the same.
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once("exit", (code) => r(code)));
}
