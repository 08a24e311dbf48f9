/**
 * The microvm backend's python package resolution (pip's resolver over a local wheel directory),
 * confined (host-sandbox.ts: bubblewrap, uid 65534, own cgroup, no network) beside the same
 * `pip install --dry-run --report` run bare on the host, interleaved in the same run.
 *
 *   npx tsx bench/sandbox/resolve.ts [--iterations 10]
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { HostSandbox } from "../../packages/platform/src/sandbox/host-sandbox.js";
import { resolveWheels } from "../../packages/platform/src/sandbox/microvm/packages.js";
import { buildWheel, worldReadableTempDir } from "../../packages/platform/src/sandbox/test-support/packages.js";

const run = promisify(execFile);
const i = process.argv.indexOf("--iterations");
const N = i === -1 ? 10 : Number(process.argv[i + 1]);

const wheels = worldReadableTempDir("hexr-bench-resolve-");
buildWheel(wheels, { name: "hexr-app", module: "", requires: ["hexr-lib>=1"] });
buildWheel(wheels, { name: "hexr-lib", version: "0.9.0", module: "" });
buildWheel(wheels, { name: "hexr-lib", version: "1.2.0", module: "" });
const scratch = mkdtempSync(join(tmpdir(), "hexr-bench-resolve-out-"));
const resolver = new HostSandbox({ prefix: "hexr-bench-resolve-rt-", purpose: "python package resolution" });

/** The command resolveWheels runs in the sandbox, run here as this process's user. */
const bare = () =>
  run("/usr/bin/python3", [
    "-m",
    "pip",
    "install",
    "--dry-run",
    "--report",
    join(scratch, "report.json"),
    "--target",
    join(scratch, "never-written"),
    "--python-version",
    "3.11",
    "--ignore-installed",
    "--no-index",
    "--find-links",
    wheels,
    "--only-binary=:all:",
    "--isolated",
    "--no-cache-dir",
    "--disable-pip-version-check",
    "--no-input",
    "--quiet",
    "--",
    "hexr-app",
  ]);

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const confined: number[] = [];
const host: number[] = [];
try {
  for (let k = 0; k < N; k++) {
    let t = performance.now();
    const got = await resolveWheels(wheels, ["hexr-app"], { resolver, maxBytes: 64 * 1024 * 1024, timeoutMs: 60_000 });
    confined.push(performance.now() - t);
    if (got.length !== 2) throw new Error(`resolved ${got.length} wheels, expected 2`);
    t = performance.now();
    await bare();
    host.push(performance.now() - t);
  }
  console.log(`iterations: ${N} (a package and its dependency; the older version of it is passed over)`);
  console.log(`confined resolve (bubblewrap)  p50 ${p50(confined).toFixed(0)} ms`);
  console.log(`bare pip --dry-run on the host p50 ${p50(host).toFixed(0)} ms`);
  console.log(`confined vs bare (p50): ${(p50(confined) / p50(host)).toFixed(2)}x`);
} finally {
  await resolver.stop();
  for (const d of [wheels, scratch]) rmSync(d, { recursive: true, force: true });
}
