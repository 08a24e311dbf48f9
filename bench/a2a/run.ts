/**
 * bench/a2a: `SendMessage` and `SendStreamingMessage` (A2A v1.0 over JSON-RPC) against a trivial
 * echo agent — the Hexr A2A server with tasks persisted in SQLite, beside the @a2a-js/sdk express
 * server (DefaultRequestHandler + InMemoryTaskStore) running the same echo logic. Each server in
 * its own process, the same client and run for both, rounds alternated. Prints throughput,
 * p50/p99 and the ratios.
 *
 *   npx tsx bench/a2a/run.ts [--requests 20000] [--concurrency 32] [--rounds 2] [--postgres URL]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { Agent, request } from "node:http";
import { fileURLToPath } from "node:url";
import { fmtMs, printTable, summarize, type LatencySummary } from "../lib/stats.js";

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : process.argv[i + 1]!;
};
const REQUESTS = Number(arg("requests", "20000"));
const CONCURRENCY = Number(arg("concurrency", "32"));
const ROUNDS = Number(arg("rounds", "2"));
const POSTGRES = arg("postgres", "");

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

function startServer(script: string, args: string[] = []): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ["--import", "tsx", here(script), ...args], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`${script} exited with ${code}`)));
    child.stdout!.once("data", (d: Buffer) => resolve({ child, port: Number(d.toString().trim()) }));
  });
}

type Mode = "send" | "stream";

let seq = 0;
function body(mode: Mode): string {
  const id = `bench-${process.pid}-${++seq}`;
  return JSON.stringify({
    jsonrpc: "2.0",
    id: seq,
    method: mode === "send" ? "SendMessage" : "SendStreamingMessage",
    params: { message: { messageId: id, role: "ROLE_USER", parts: [{ text: `hello ${seq}` }] } },
  });
}

/** One call; resolves with its latency after checking that the echo task completed. */
function call(agent: Agent, port: number, mode: Mode): Promise<number> {
  const payload = body(mode);
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path: "/",
        method: "POST",
        agent,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
          accept: mode === "send" ? "application/json" : "text/event-stream",
          "a2a-version": "1.0",
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (res.statusCode !== 200 || !text.includes("TASK_STATE_COMPLETED") || !text.includes("echo: hello")) {
            reject(new Error(`unexpected ${mode} response (HTTP ${res.statusCode}): ${text.slice(0, 300)}`));
          } else resolve(Number(process.hrtime.bigint() - t0) / 1e6);
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

async function load(port: number, mode: Mode, total: number): Promise<LatencySummary> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const run = async (n: number, samples?: number[]) => {
    let issued = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (issued < n) {
          issued++;
          const ms = await call(agent, port, mode);
          samples?.push(ms);
        }
      }),
    );
  };
  await run(Math.min(2000, Math.ceil(total / 5)));
  const samples: number[] = [];
  const t0 = performance.now();
  await run(total, samples);
  const wall = performance.now() - t0;
  agent.destroy();
  return summarize(samples, wall);
}

const mean = (xs: LatencySummary[], k: "p50" | "p99" | "throughput") => xs.reduce((a, x) => a + x[k], 0) / xs.length;

async function main() {
  const children: ChildProcess[] = [];
  try {
    const hexr = await startServer("./hexr-server.ts", POSTGRES ? ["--postgres", POSTGRES] : []);
    children.push(hexr.child);
    const ref = await startServer("./reference-server.ts");
    children.push(ref.child);
    console.log(
      `bench/a2a: echo agent, A2A v1.0 JSON-RPC over plain HTTP, ${REQUESTS} calls per mode per server, ${CONCURRENCY} keep-alive connections, ${ROUNDS} alternating rounds`,
    );
    console.log(
      `hexr: tasks persisted in ${POSTGRES ? "PostgreSQL" : "SQLite (WAL)"}; reference: @a2a-js/sdk 1.3.0 express + InMemoryTaskStore`,
    );
    const rows: Array<Record<string, string>> = [];
    const ratios: string[] = [];
    for (const mode of ["send", "stream"] as Mode[]) {
      const res = { hexr: [] as LatencySummary[], ref: [] as LatencySummary[] };
      for (let r = 0; r < ROUNDS; r++) {
        res.hexr.push(await load(hexr.port, mode, REQUESTS / ROUNDS));
        res.ref.push(await load(ref.port, mode, REQUESTS / ROUNDS));
      }
      const method = mode === "send" ? "SendMessage" : "SendStreamingMessage";
      const h = { p50: mean(res.hexr, "p50"), p99: mean(res.hexr, "p99"), rps: mean(res.hexr, "throughput") };
      const b = { p50: mean(res.ref, "p50"), p99: mean(res.ref, "p99"), rps: mean(res.ref, "throughput") };
      rows.push({ method, server: "hexr (persisted)", "calls/s": h.rps.toFixed(0), p50: fmtMs(h.p50), p99: fmtMs(h.p99) });
      rows.push({ method, server: "@a2a-js/sdk express", "calls/s": b.rps.toFixed(0), p50: fmtMs(b.p50), p99: fmtMs(b.p99) });
      ratios.push(
        `${method}: hexr/reference throughput ${(h.rps / b.rps).toFixed(2)}x, p50 ${(h.p50 / b.p50).toFixed(2)}x, p99 ${(h.p99 / b.p99).toFixed(2)}x`,
      );
    }
    printTable(rows);
    for (const r of ratios) console.log(r);
  } finally {
    for (const c of children) c.kill("SIGTERM");
  }
}

await main();
