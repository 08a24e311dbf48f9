/**
 * A real `hexr up` for benchmarks: started from the built CLI on a fresh data dir and port 0,
 * waited for until /readyz answers, stopped (and its data dir removed) by `stop()`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The built CLI (`npm run build` first). */
export const HEXR_BIN = fileURLToPath(new URL("../../packages/cli/dist/bin.js", import.meta.url));

/** Polls `fn` every 50 ms until it is true (a throw counts as false), for at most `timeoutMs`. */
export async function waitFor(fn: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export interface BenchPlatform {
  url: string;
  adminKey: string;
  dataDir: string;
  child: ChildProcess;
  /** SIGTERM, wait for the exit, remove the data dir. */
  stop(): Promise<void>;
}

export interface BenchPlatformOptions {
  /** Written as hexr.config.json in the data dir and passed with --config. */
  config?: unknown;
  /** Prefix of the data dir's name. */
  name?: string;
  logLevel?: string;
  /**
   * Runs the platform through `/bin/sh -c '<shell>; exec "$0" "$@"'` instead of directly, e.g. to
   * move it into a cgroup before it starts.
   */
  shellPrefix?: string;
  /** How long `hexr up` may take until /readyz answers (default 30 s; longer for a sandbox probe). */
  readyTimeoutMs?: number;
}

export async function startPlatform(opts: BenchPlatformOptions = {}): Promise<BenchPlatform> {
  const dataDir = mkdtempSync(join(tmpdir(), `${opts.name ?? "hexr-bench"}-`));
  const args = [
    HEXR_BIN,
    "up",
    "--data-dir",
    dataDir,
    "--port",
    "0",
    "--log-format",
    "json",
    "--log-level",
    opts.logLevel ?? "warn",
  ];
  if (opts.config !== undefined) {
    const file = join(dataDir, "hexr.config.json");
    writeFileSync(file, JSON.stringify(opts.config));
    args.push("--config", file);
  }
  const child = opts.shellPrefix
    ? spawn("/bin/sh", ["-c", `${opts.shellPrefix}; exec "$0" "$@"`, process.execPath, ...args], {
        stdio: ["ignore", "ignore", "inherit"],
      })
    : spawn(process.execPath, args, { stdio: ["ignore", "ignore", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    child.kill("SIGTERM");
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const timeoutMs = opts.readyTimeoutMs ?? 30_000;
    const info = join(dataDir, "platform.json");
    await waitFor(async () => existsSync(info), "hexr up", timeoutMs);
    const { url } = JSON.parse(readFileSync(info, "utf8")) as { url: string };
    await waitFor(async () => (await fetch(url + "/readyz")).ok, "readiness", timeoutMs);
    const adminKey = readFileSync(join(dataDir, "admin.key"), "utf8").trim();
    return { url, adminKey, dataDir, child, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
