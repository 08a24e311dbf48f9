/**
 * bench/sandbox/spawn.ts: what starting a process costs the platform. Node's child_process forks the
 * whole process (its page tables are copied, then torn down at exec), so the cost grows with the
 * platform's memory; the namespace backend's NativeProcess (clone with CLONE_VM|CLONE_VFORK on a
 * worker thread) does not. Both start /bin/true with two pipes, interleaved, at a given resident
 * size of this process; CPU is this process's own (user + system) per spawn.
 *
 *   npm run build && npx tsx bench/sandbox/spawn.ts [--rss-mb 150] [--iterations 300]
 */
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { NativeProcess } from "../../packages/platform/src/sandbox/namespace/spawn.js";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const RSS_MB = arg("rss-mb", 150);
const N = arg("iterations", 300);

// Touched memory, as a platform's heap is: fork copies the page tables that map it.
const ballast: Buffer[] = [];
while (process.memoryUsage().rss < RSS_MB * 1024 * 1024) ballast.push(Buffer.alloc(8 * 1024 * 1024, 1));

const devNull = openSync("/dev/null", "r");

async function viaChildProcess(): Promise<void> {
  const c = spawn("/bin/true", { stdio: ["ignore", "pipe", "pipe"] });
  await new Promise((resolve, reject) => c.once("close", resolve).once("error", reject));
}

async function viaNative(): Promise<void> {
  const p = new NativeProcess("/bin/true", ["/bin/true"], { fds: [{ fd: devNull }, "read", "read"] });
  await p.exited;
}

const cases = { "child_process.spawn": viaChildProcess, NativeProcess: viaNative };
const cpu: Record<string, number> = { "child_process.spawn": 0, NativeProcess: 0 };
const wall: Record<string, number> = { "child_process.spawn": 0, NativeProcess: 0 };
for (let i = 0; i < 20; i++) for (const f of Object.values(cases)) await f();
for (let i = 0; i < N; i++) {
  for (const [name, f] of Object.entries(cases)) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await f();
    wall[name]! += performance.now() - t0;
    const c = process.cpuUsage(c0);
    cpu[name]! += (c.user + c.system) / 1000;
  }
}
closeSync(devNull);
console.log(
  `/bin/true with two pipes, ${N} each, interleaved; this process at ${Math.round(process.memoryUsage().rss / 1048576)} MB RSS\n`,
);
for (const name of Object.keys(cases)) {
  console.log(`${name.padEnd(20)} cpu ${(cpu[name]! / N).toFixed(3)} ms/spawn   wall ${(wall[name]! / N).toFixed(3)} ms/spawn`);
}
console.log(
  `\nchild_process / NativeProcess: cpu ${(cpu["child_process.spawn"]! / cpu["NativeProcess"]!).toFixed(1)}x, wall ${(
    wall["child_process.spawn"]! / wall["NativeProcess"]!
  ).toFixed(1)}x`,
);
void ballast;
