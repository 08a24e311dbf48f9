/**
 * bench/telemetry: what instrumentation costs a trivial hexrAgent invocation (a handler doing 1 ms of
 * async work), with and without telemetry, in the same run. Each side runs in its own process
 * (worker.ts), alternating, so that neither inherits the other's JIT state or background export
 * work; the instrumented side exports everything over OTLP to a real platform (`hexr up`).
 * Goal: under 1.1x.
 *
 *   npm run build && npx tsx bench/telemetry/run.ts [--invocations 2000] [--rounds 2]
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startPlatform } from "../lib/platform.js";
import { fmtMs, printTable, summarize, type LatencySummary } from "../lib/stats.js";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const N = arg("invocations", 2000);
const ROUNDS = arg("rounds", 2);
const WORKER = fileURLToPath(new URL("./worker.ts", import.meta.url));

interface Loop {
  ms: number[];
  busyUs: number;
}
interface WorkerResult {
  direct: Loop;
  bridge: Loop;
  stats?: { exported: number; failed: number };
}

function runWorker(mode: "with" | "without", url: string, key: string): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", WORKER, mode, String(N), url, key], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) =>
      code === 0 ? resolve(JSON.parse(out) as WorkerResult) : reject(new Error(`worker (${mode}) exited with ${code}`)),
    );
  });
}

async function main() {
  const platform = await startPlatform({ name: "hexr-bench-telemetry" });
  try {
    const { url, adminKey: key } = platform;

    console.log(
      `bench/telemetry: ${N} sequential invocations of a 1 ms hexrAgent handler per side and round, ${ROUNDS} rounds, each side in its own process`,
    );
    const side = () => ({ direct: { ms: [] as number[], busyUs: 0 }, bridge: { ms: [] as number[], busyUs: 0 } });
    const all = { without: side(), with: side() };
    let exported = 0;
    let failed = 0;
    for (let i = 0; i < ROUNDS; i++) {
      for (const mode of (i % 2 ? ["with", "without"] : ["without", "with"]) as Array<"with" | "without">) {
        const r = await runWorker(mode, url, key);
        for (const path of ["direct", "bridge"] as const) {
          all[mode][path].ms.push(...r[path].ms);
          all[mode][path].busyUs += r[path].busyUs;
        }
        exported += r.stats?.exported ?? 0;
        failed += r.stats?.failed ?? 0;
      }
    }
    const s = (xs: number[]): LatencySummary => summarize(xs, 1);
    const rows: Array<Record<string, string>> = [];
    const ratios: string[] = [];
    const cpuLines: string[] = [];
    for (const path of ["direct", "bridge"] as const) {
      const a = s(all.without[path].ms);
      const b = s(all.with[path].ms);
      const cpuA = all.without[path].busyUs / all.without[path].ms.length;
      const cpuB = all.with[path].busyUs / all.with[path].ms.length;
      const label = path === "direct" ? "handler called in process" : "POST /invoke on the agent bridge";
      rows.push({
        invocation: `${label}, no telemetry`,
        mean: fmtMs(a.mean),
        p50: fmtMs(a.p50),
        p99: fmtMs(a.p99),
        "busy/inv": `${cpuA.toFixed(1)} µs`,
      });
      rows.push({
        invocation: `${label}, telemetry on`,
        mean: fmtMs(b.mean),
        p50: fmtMs(b.p50),
        p99: fmtMs(b.p99),
        "busy/inv": `${cpuB.toFixed(1)} µs`,
      });
      ratios.push(
        `${path}: p50 ${(b.p50 / a.p50).toFixed(3)}x, mean ${(b.mean / a.mean).toFixed(3)}x, p99 ${(b.p99 / a.p99).toFixed(3)}x`,
      );
      cpuLines.push(
        `${path}: +${(cpuB - cpuA).toFixed(1)} µs of event-loop work per invocation (${(1 + (cpuB - cpuA) / 1000).toFixed(3)}x of a 1 ms handler)`,
      );
    }
    printTable(rows);
    console.log(`ratio telemetry on / off: ${ratios.join("; ")} (goal < 1.1x)`);
    // Wall-clock means and tails move with whatever else the machine runs; event-loop busy time barely does.
    console.log(`instrumentation cost, export included: ${cpuLines.join("; ")}`);
    const received = (await (
      await fetch(`${url}/api/v1/traces?limit=100&agent=bench-agent`, { headers: { authorization: `Bearer ${key}` } })
    ).json()) as {
      items: unknown[];
    };
    console.log(
      `spans exported over OTLP: ${exported} (${failed} failed); the platform lists ${received.items.length}+ bench traces`,
    );
  } finally {
    await platform.stop();
  }
}

await main();
