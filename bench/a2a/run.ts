/**
 * bench/a2a: `SendMessage` and `SendStreamingMessage` (A2A v1.0 over JSON-RPC) against a trivial
 * echo agent — the Hexr A2A server with tasks persisted in SQLite, beside the @a2a-js/sdk express
 * server (DefaultRequestHandler + InMemoryTaskStore) running the same echo logic. Each server in
 * its own process, the same client and run for both, rounds alternated. Prints throughput,
 * p50/p99 and the ratios.
 *
 * Also Hexr over the mTLS mesh path (caller's outbound proxy → mTLS → inbound proxy → server),
 * the way one agent calls another, and the server CPU each call costs (from /proc: robust to other
 * load on the machine).
 *
 *   npx tsx bench/a2a/run.ts [--requests 20000] [--concurrency 32] [--rounds 2] [--postgres URL] [--no-mtls]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { fmtMs, printTable, summarize, type LatencySummary } from "../lib/stats.js";
import { RawConnection } from "./raw-client.js";

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : process.argv[i + 1]!;
};
const REQUESTS = Number(arg("requests", "20000"));
const CONCURRENCY = Number(arg("concurrency", "32"));
const ROUNDS = Number(arg("rounds", "2"));
const POSTGRES = arg("postgres", "");
const MTLS = !process.argv.includes("--no-mtls");

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

interface Started {
  child: ChildProcess;
  port: number;
  mesh?: { outboundPort: number; meshToken: string; target: string };
}

function startServer(script: string, args: string[] = []): Promise<Started> {
  const child = spawn(process.execPath, ["--import", "tsx", here(script), ...args], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`${script} exited with ${code}`)));
    child.stdout!.once("data", (d: Buffer) => {
      const line = d.toString().trim();
      resolve(line.startsWith("{") ? { child, ...(JSON.parse(line) as Omit<Started, "child">) } : { child, port: Number(line) });
    });
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

const HEADERS = {
  send: { "content-type": "application/json", accept: "application/json", "a2a-version": "1.0" },
  stream: { "content-type": "application/json", accept: "text/event-stream", "a2a-version": "1.0" },
};

interface Route {
  path: string;
  headers: Record<string, string>;
}

/** One call; resolves with its latency after checking that the echo task completed. */
async function call(conn: RawConnection, mode: Mode, route: Route): Promise<number> {
  const payload = body(mode);
  const t0 = process.hrtime.bigint();
  const res = await conn.post(route.path, payload, { ...HEADERS[mode], ...route.headers });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (res.status !== 200 || !res.body.includes("TASK_STATE_COMPLETED") || !res.body.includes("echo: hello")) {
    throw new Error(`unexpected ${mode} response (HTTP ${res.status}): ${res.body.slice(0, 300)}`);
  }
  return ms;
}

/** CPU seconds (user + system) a process has used, from /proc (robust to other load on the machine). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Measured extends LatencySummary {
  /** Server CPU milliseconds per call. */
  cpuMsPerCall: number;
}

async function load(
  port: number,
  pid: number,
  mode: Mode,
  total: number,
  route: Route = { path: "/", headers: {} },
): Promise<Measured> {
  const conns = await Promise.all(Array.from({ length: CONCURRENCY }, () => RawConnection.open(port)));
  const run = async (n: number, samples?: number[]) => {
    let issued = 0;
    await Promise.all(
      conns.map(async (c) => {
        while (issued < n) {
          issued++;
          const ms = await call(c, mode, route);
          samples?.push(ms);
        }
      }),
    );
  };
  await run(Math.min(2000, Math.ceil(total / 5)));
  const samples: number[] = [];
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  await run(total, samples);
  const wall = performance.now() - t0;
  const cpu = cpuSeconds(pid) - cpu0;
  for (const c of conns) c.close();
  return { ...summarize(samples, wall), cpuMsPerCall: (cpu * 1000) / total };
}

const mean = (xs: Measured[], k: "p50" | "p99" | "throughput" | "cpuMsPerCall") => xs.reduce((a, x) => a + x[k], 0) / xs.length;

async function main() {
  const children: ChildProcess[] = [];
  try {
    const hexr = await startServer("./hexr-server.ts", [
      ...(POSTGRES ? ["--postgres", POSTGRES] : []),
      ...(MTLS ? ["--mtls"] : []),
    ]);
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
      const res = { hexr: [] as Measured[], ref: [] as Measured[], mesh: [] as Measured[] };
      const meshRoute: Route | undefined = hexr.mesh && {
        path: "/a2a",
        headers: { "x-hexr-mesh-token": hexr.mesh.meshToken, "x-hexr-target": hexr.mesh.target },
      };
      for (let r = 0; r < ROUNDS; r++) {
        res.hexr.push(await load(hexr.port, hexr.child.pid!, mode, REQUESTS / ROUNDS, { path: "/a2a", headers: {} }));
        res.ref.push(await load(ref.port, ref.child.pid!, mode, REQUESTS / ROUNDS));
        // The proxies run in the server's process, so its CPU per call includes them.
        if (meshRoute) res.mesh.push(await load(hexr.mesh!.outboundPort, hexr.child.pid!, mode, REQUESTS / ROUNDS, meshRoute));
      }
      const method = mode === "send" ? "SendMessage" : "SendStreamingMessage";
      const stat = (xs: Measured[]) => ({
        p50: mean(xs, "p50"),
        p99: mean(xs, "p99"),
        rps: mean(xs, "throughput"),
        cpu: mean(xs, "cpuMsPerCall"),
      });
      const h = stat(res.hexr);
      const b = stat(res.ref);
      const row = (server: string, x: typeof h) => ({
        method,
        server,
        "calls/s": x.rps.toFixed(0),
        p50: fmtMs(x.p50),
        p99: fmtMs(x.p99),
        "server CPU/call": fmtMs(x.cpu),
      });
      rows.push(row("hexr (persisted)", h), row("@a2a-js/sdk express", b));
      const mesh = res.mesh.length ? stat(res.mesh) : undefined;
      if (mesh) rows.push(row("hexr over the mTLS mesh (2 proxies)", mesh));
      ratios.push(
        `${method}: hexr/reference throughput ${(h.rps / b.rps).toFixed(2)}x, p50 ${(h.p50 / b.p50).toFixed(2)}x, p99 ${(h.p99 / b.p99).toFixed(2)}x; reference/hexr CPU per call ${(b.cpu / h.cpu).toFixed(2)}x`,
      );
      if (mesh) {
        ratios.push(
          `${method} over the mTLS mesh vs the reference over plain HTTP: throughput ${(mesh.rps / b.rps).toFixed(2)}x, p50 ${(mesh.p50 / b.p50).toFixed(2)}x, CPU per call ${(b.cpu / mesh.cpu).toFixed(2)}x`,
        );
      }
    }
    printTable(rows);
    for (const r of ratios) console.log(r);
  } finally {
    for (const c of children) c.kill("SIGTERM");
  }
}

await main();
