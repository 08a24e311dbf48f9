/**
 * bench/sandbox/fork-server.ts: the namespace backend with its fork server (the default: python
 * sandboxes fork from a per-tenant zygote interpreter, the others from hexr-zygote, which execs the
 * runner) against the same backend with a bubblewrap process per sandbox
 * (`sandbox.namespace.forkServer: false`), beside bare `/usr/bin/python3 -c` and `sh -c`, in one run.
 * Each round starts a real `hexr up` per mode, one after the other (never two at once), and measures
 * python `print('hello')` and shell `echo hi` through `sandbox.exec`: p50/p99 one at a time, then
 * executions per second with two in parallel. Rounds alternate the modes so both see the same
 * machine; the figures are the medians over rounds.
 *
 *   npm run build && npx tsx bench/sandbox/fork-server.ts [--rounds 2] [--iterations 60] [--seconds 6]
 */
import { spawn } from "node:child_process";
import { SandboxClient } from "../../packages/sdk/src/sandbox/index.js";
import { startPlatform } from "../lib/platform.js";
import { fmtMs, printTable, summarize } from "../lib/stats.js";

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : process.argv[i + 1]!;
};
const ROUNDS = Number(arg("rounds", "2"));
const ITERATIONS = Number(arg("iterations", "60"));
const SECONDS = Number(arg("seconds", "6"));

const CASES = [
  {
    name: "python print('hello')",
    language: "python",
    code: "print('hello')",
    expect: "hello\n",
    bare: ["/usr/bin/python3", "-c"],
  },
  { name: "shell echo hi", language: "shell", code: "echo hi", expect: "hi\n", bare: ["/bin/sh", "-c"] },
] as const;
type Case = (typeof CASES)[number];

async function twoAtATime(seconds: number, op: () => Promise<unknown>): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const t0 = performance.now();
  await Promise.all(
    [0, 1].map(async () => {
      while (performance.now() < end) {
        await op();
        n++;
      }
    }),
  );
  return (n / (performance.now() - t0)) * 1000;
}

function bare(c: Case): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(c.bare[0], [c.bare[1], c.code], { stdio: "ignore" });
    p.once("error", reject).once("close", (code) => (code === 0 ? resolve() : reject(new Error(`${c.bare[0]} exited ${code}`))));
  });
}

interface Sample {
  p50: number;
  p99: number;
  rate: number;
}

/** One platform in one mode: a sample per case. */
async function measure(forkServer: boolean): Promise<Sample[]> {
  const platform = await startPlatform({
    name: `hexr-bench-fork-${forkServer ? "on" : "off"}`,
    config: { sandbox: { backend: "namespace", maxConcurrent: 2, namespace: { warmPool: 2, forkServer } } },
    readyTimeoutMs: 60_000,
  });
  try {
    const client = new SandboxClient({ platformUrl: platform.url, apiKey: platform.adminKey });
    const out: Sample[] = [];
    for (const c of CASES) {
      const exec = async () => {
        const r = await client.exec(c.code, { language: c.language });
        if (r.stdout !== c.expect) throw new Error(`unexpected result: ${JSON.stringify(r)}`);
      };
      for (let i = 0; i < 10; i++) await exec();
      const times: number[] = [];
      for (let i = 0; i < ITERATIONS; i++) {
        const t0 = performance.now();
        await exec();
        times.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 20)); // let the warm pool refill, as between real requests
      }
      const s = summarize(times, 1);
      out.push({ p50: s.p50, p99: s.p99, rate: await twoAtATime(SECONDS, exec) });
    }
    return out;
  } finally {
    await platform.stop();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const on: Sample[][] = [];
const off: Sample[][] = [];
const bareRates: number[][] = [];
for (let r = 0; r < ROUNDS; r++) {
  // Alternate which mode goes first, so a drift of the machine does not favour one.
  for (const mode of r % 2 === 0 ? [true, false] : [false, true]) (mode ? on : off).push(await measure(mode));
  const rates: number[] = [];
  for (const c of CASES) rates.push(await twoAtATime(SECONDS, () => bare(c)));
  bareRates.push(rates);
  console.error(`round ${r + 1}/${ROUNDS} done`);
}

console.log(
  `\nnamespace backend, ${ROUNDS} rounds (medians), ${ITERATIONS} sequential executions and ${SECONDS} s two at a time per mode and case:\n`,
);
const rows: Array<Record<string, string>> = [];
const summary: string[] = [];
CASES.forEach((c, i) => {
  const med = (s: Sample[][], k: keyof Sample) => median(s.map((x) => x[i]![k]));
  const row = (mode: string, s: Sample[][]) => ({
    case: c.name,
    mode,
    "p50 (one at a time)": fmtMs(med(s, "p50")),
    p99: fmtMs(med(s, "p99")),
    "execs/s (2 parallel)": med(s, "rate").toFixed(1),
  });
  const bareRate = median(bareRates.map((x) => x[i]!));
  rows.push(row("fork server (default)", on), row("a bubblewrap process per sandbox", off), {
    case: c.name,
    mode: `bare ${c.bare.join(" ")}`,
    "p50 (one at a time)": "-",
    p99: "-",
    "execs/s (2 parallel)": bareRate.toFixed(1),
  });
  summary.push(
    `${c.name}: fork server / bubblewrap per sandbox: ${(med(on, "rate") / med(off, "rate")).toFixed(2)}x the executions per second, ` +
      `p50 ${(med(off, "p50") / med(on, "p50")).toFixed(2)}x faster; / bare: ${(med(on, "rate") / bareRate).toFixed(2)}x the executions per second`,
  );
});
printTable(rows);
console.log(`\n${summary.join("\n")}`);
