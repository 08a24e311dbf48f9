/**
 * bench/api/startup: time from spawning `hexr up` to the first 200 from /readyz, and idle RSS,
 * beside a bare `node -e` http server started the same way (the Node start-up floor) in the same run.
 *
 *   npm run build && npx tsx bench/api/startup.ts [--runs 5]
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { percentile, printTable } from "../lib/stats.js";

const BIN = fileURLToPath(new URL("../../packages/cli/dist/bin.js", import.meta.url));
const i = process.argv.indexOf("--runs");
const RUNS = i === -1 ? 5 : Number(process.argv[i + 1]);

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

async function measure(cmd: string[], urlOf: () => string | undefined): Promise<{ readyMs: number; rss: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, cmd, { stdio: "ignore" });
  try {
    for (;;) {
      const url = urlOf();
      if (url) {
        const ok = await fetch(url).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) break;
      }
      if (performance.now() - t0 > 30_000) throw new Error("not ready after 30 s");
      await new Promise((r) => setTimeout(r, 5));
    }
    const readyMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 2000));
    return { readyMs, rss: rssMb(child.pid!) };
  } finally {
    child.kill("SIGKILL");
  }
}

const hexr: Array<{ readyMs: number; rss: number }> = [];
const bare: Array<{ readyMs: number; rss: number }> = [];
for (let r = 0; r < RUNS; r++) {
  const dataDir = mkdtempSync(join(tmpdir(), "hexr-bench-start-"));
  const info = join(dataDir, "platform.json");
  // First start of a data dir creates keys and migrates: measure it, then a restart.
  hexr.push(
    await measure([BIN, "up", "--data-dir", dataDir, "--port", "0", "--log-format", "json"], () =>
      existsSync(info) ? (JSON.parse(readFileSync(info, "utf8")) as { url: string }).url + "/readyz" : undefined,
    ),
  );
  rmSync(dataDir, { recursive: true, force: true });
  const port = 7600 + r;
  bare.push(
    await measure(
      ["-e", `require("node:http").createServer((q,s)=>s.end("ok")).listen(${port},"127.0.0.1")`],
      () => `http://127.0.0.1:${port}/`,
    ),
  );
}
const med = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
const h = { ready: med(hexr.map((x) => x.readyMs)), rss: med(hexr.map((x) => x.rss)) };
const b = { ready: med(bare.map((x) => x.readyMs)), rss: med(bare.map((x) => x.rss)) };
console.log(`bench/api/startup: ${RUNS} cold starts each (fresh data dir for hexr), median`);
printTable([
  {
    process: "hexr up (spawn → /readyz 200)",
    ready: `${h.ready.toFixed(0)} ms`,
    "idle RSS": `${h.rss.toFixed(1)} MB`,
    "max ready": `${Math.max(...hexr.map((x) => x.readyMs)).toFixed(0)} ms`,
  },
  {
    process: "bare node:http",
    ready: `${b.ready.toFixed(0)} ms`,
    "idle RSS": `${b.rss.toFixed(1)} MB`,
    "max ready": `${Math.max(...bare.map((x) => x.readyMs)).toFixed(0)} ms`,
  },
]);
console.log(`ratio hexr/bare: ready ${(h.ready / b.ready).toFixed(2)}x, RSS ${(h.rss / b.rss).toFixed(2)}x`);
