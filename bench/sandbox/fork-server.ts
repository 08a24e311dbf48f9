/**
 * bench/sandbox/fork-server.ts: the namespace backend's python fork server against the same backend
 * with a new interpreter per execution (`sandbox.namespace.forkServer: false`), and bare
 * `/usr/bin/python3 -c`, in one run. Each round starts a real `hexr up` per mode, one after the other
 * (never two at once), and measures `print('hello')` through `sandbox.exec`: p50/p99 one at a time,
 * then executions per second with two in parallel. Rounds alternate the modes so both see the same
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
const CODE = "print('hello')";

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

function bare(): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn("/usr/bin/python3", ["-c", CODE], { stdio: "ignore" });
    c.once("error", reject).once("close", (code) => (code === 0 ? resolve() : reject(new Error(`python3 exited ${code}`))));
  });
}

interface Sample {
  p50: number;
  p99: number;
  rate: number;
}

async function measure(forkServer: boolean): Promise<Sample> {
  const platform = await startPlatform({
    name: `hexr-bench-fork-${forkServer ? "on" : "off"}`,
    config: { sandbox: { backend: "namespace", maxConcurrent: 2, namespace: { warmPool: 2, forkServer } } },
    readyTimeoutMs: 60_000,
  });
  try {
    const client = new SandboxClient({ platformUrl: platform.url, apiKey: platform.adminKey });
    const exec = async () => {
      const r = await client.exec(CODE, { language: "python" });
      if (r.stdout !== "hello\n") throw new Error(`unexpected result: ${JSON.stringify(r)}`);
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
    return { p50: s.p50, p99: s.p99, rate: await twoAtATime(SECONDS, exec) };
  } finally {
    await platform.stop();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const on: Sample[] = [];
const off: Sample[] = [];
const bareRates: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  // Alternate which mode goes first, so a drift of the machine does not favour one.
  for (const mode of r % 2 === 0 ? [true, false] : [false, true]) (mode ? on : off).push(await measure(mode));
  bareRates.push(await twoAtATime(SECONDS, bare));
  console.error(`round ${r + 1}/${ROUNDS} done`);
}

const row = (name: string, s: Sample[]) => ({
  "python print('hello')": name,
  "p50 (one at a time)": fmtMs(median(s.map((x) => x.p50))),
  p99: fmtMs(median(s.map((x) => x.p99))),
  "execs/s (2 parallel)": median(s.map((x) => x.rate)).toFixed(1),
});
console.log(
  `\nnamespace backend, ${ROUNDS} rounds (medians), ${ITERATIONS} sequential executions and ${SECONDS} s two at a time per mode:\n`,
);
printTable([
  row("fork server (default)", on),
  row("new interpreter per execution", off),
  {
    "python print('hello')": "bare /usr/bin/python3 -c",
    "p50 (one at a time)": "-",
    p99: "-",
    "execs/s (2 parallel)": median(bareRates).toFixed(1),
  },
]);
const ratio = median(on.map((x) => x.rate)) / median(off.map((x) => x.rate));
const vsBare = median(on.map((x) => x.rate)) / median(bareRates);
console.log(
  `\nfork server / new interpreter: ${ratio.toFixed(2)}x the executions per second; / bare python3 -c: ${vsBare.toFixed(2)}x`,
);
