/**
 * bench/sandbox/cpu.ts: CPU per execution, which bounds throughput on a small machine. The platform
 * (`hexr up`, namespace backend) runs in a cpuacct cgroup of its own, so everything it and its
 * sandboxes use is counted (bwrap, the runner, the interpreter, kernel time on their behalf); the
 * SDK client (this process) in another. Beside it, bare `python3 -c` / `sh -c` spawned from a third.
 * Two executions at a time, as in bench/sandbox/run.ts. Needs root and the cgroup v1 cpuacct
 * controller (/sys/fs/cgroup/cpuacct).
 *
 *   npm run build && npx tsx bench/sandbox/cpu.ts [--language python|shell] [--iterations 300]
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SandboxClient } from "../../packages/sdk/src/sandbox/index.js";
import { startPlatform } from "../lib/platform.js";

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : process.argv[i + 1]!;
};
const LANGUAGE = arg("language", "python") as "python" | "shell";
const N = Number(arg("iterations", "300"));
const CODE = LANGUAGE === "python" ? "print('hello')" : "echo hi";
const BARE = LANGUAGE === "python" ? ["/usr/bin/python3", "-c", CODE] : ["/bin/sh", "-c", CODE];
const ACCT = "/sys/fs/cgroup/cpuacct";

if (!existsSync(join(ACCT, "cpuacct.usage"))) {
  console.error(`${ACCT} is not a cgroup v1 cpuacct hierarchy: this benchmark needs it (and root)`);
  process.exit(2);
}
const tag = `hexr-bench-cpu-${process.pid}`;
const group = (name: string) => join(ACCT, `${tag}-${name}`);
for (const g of ["platform", "client", "bare"]) mkdirSync(group(g));
/** A process's CPU time (all its threads, user + system) from /proc, in ms. */
function processCpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
}
const CLOCK_TICKS = 100; // USER_HZ on Linux
const usageMs = (g: string) => Number(readFileSync(join(group(g), "cpuacct.usage"), "utf8")) / 1e6;
const moveSelf = (g: string | undefined) => writeFileSync(join(g ? group(g) : ACCT, "cgroup.procs"), String(process.pid));

async function twoAtATime(n: number, op: () => Promise<unknown>): Promise<number> {
  let started = 0;
  const t0 = performance.now();
  await Promise.all(
    [0, 1].map(async () => {
      while (started < n) {
        started++;
        await op();
      }
    }),
  );
  return performance.now() - t0;
}

function bare(): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(BARE[0]!, BARE.slice(1), { stdio: "ignore" });
    c.once("error", reject).once("close", (code) => (code === 0 ? resolve() : reject(new Error(`${BARE[0]} exited ${code}`))));
  });
}

// The platform joins its group before it execs, so all of it is counted from the start.
const platform = await startPlatform({
  name: "hexr-bench-cpu",
  config: { sandbox: { backend: "namespace", maxConcurrent: 2, namespace: { warmPool: 2 } } },
  shellPrefix: `echo $$ > ${group("platform")}/cgroup.procs`,
  readyTimeoutMs: 60_000,
});
try {
  const { url } = platform;
  const client = new SandboxClient({ platformUrl: url, apiKey: platform.adminKey });
  const exec = async () => {
    const r = await client.exec(CODE, { language: LANGUAGE });
    if (r.exitCode !== 0) throw new Error(`unexpected result: ${JSON.stringify(r)}`);
  };
  for (let i = 0; i < 30; i++) await exec();

  moveSelf("client");
  const [p0, c0, n0] = [usageMs("platform"), usageMs("client"), processCpuMs(platform.child.pid!)];
  const sandboxWall = await twoAtATime(N, exec);
  const [p1, c1, n1] = [usageMs("platform"), usageMs("client"), processCpuMs(platform.child.pid!)];
  moveSelf("bare");
  const b0 = usageMs("bare");
  const bareWall = await twoAtATime(N, bare);
  const b1 = usageMs("bare");
  moveSelf(undefined);

  const platformCpu = (p1 - p0) / N;
  const clientCpu = (c1 - c0) / N;
  const bareCpu = (b1 - b0) / N;
  console.log(`${LANGUAGE} '${CODE}', ${N} executions two at a time\n`);
  const nodeCpu = (n1 - n0) / N;
  console.log(`sandbox.exec   platform + sandboxes ${platformCpu.toFixed(2)} ms CPU, SDK client ${clientCpu.toFixed(2)} ms CPU`);
  console.log(
    `               of which the platform's node process ${nodeCpu.toFixed(2)} ms, its sandboxes (and kernel work for them) ${(platformCpu - nodeCpu).toFixed(2)} ms`,
  );
  console.log(
    `               ${((N / sandboxWall) * 1000).toFixed(1)}/s observed, at most ${(2000 / (platformCpu + clientCpu)).toFixed(0)}/s on 2 CPU-bound cores`,
  );
  console.log(
    `bare ${BARE[0]}  ${bareCpu.toFixed(2)} ms CPU (spawner included), ${((N / bareWall) * 1000).toFixed(1)}/s observed`,
  );
  console.log(`\nCPU per execution, sandbox.exec (all in) / bare: ${((platformCpu + clientCpu) / bareCpu).toFixed(2)}x`);
} finally {
  moveSelf(undefined);
  await platform.stop();
  for (const g of ["platform", "client", "bare"]) {
    for (let i = 0; i < 50; i++) {
      try {
        rmdirSync(group(g));
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}
