import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The built CLI; these tests run it as a user would. */
export const HEXR_BIN = fileURLToPath(new URL("../../../dist/bin.js", import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `hexr <args>` without blocking the event loop, so a platform started in the test process
 * keeps serving the CLI's requests (spawnSync would deadlock it).
 */
export function hexrAsync(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<CliResult> {
  if (!existsSync(HEXR_BIN))
    throw new Error(`${HEXR_BIN} is missing: these tests run the built CLI; use 'npm test' (it builds first)`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HEXR_BIN, ...args], {
      env: { ...process.env, HEXR_PLATFORM_URL: "", HEXR_API_KEY: "", ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(input ?? "");
  });
}
