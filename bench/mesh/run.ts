/**
 * bench/mesh: request latency and throughput through the mTLS proxy pair (client → outbound proxy →
 * mTLS → inbound proxy → handler) versus plain HTTP straight to the same handler, same client, same
 * run. The handler, the proxy pair and the client each run in their own process, as under
 * `hexr run`; keep-alive on every hop (the proxies pool their mTLS connections).
 *
 *   npx tsx bench/mesh/run.ts [--requests 10000]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { MESH_TOKEN_HEADER, TARGET_HEADER } from "../../packages/platform/src/mesh/headers.js";
import { newMeshToken } from "../../packages/platform/src/mesh/token.js";
import { runLoad } from "../lib/http-load.js";
import { fmtMs, printTable } from "../lib/stats.js";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const REQUESTS = arg("requests", 10_000);

const HANDLER = `
const body = JSON.stringify({ output: { ok: true } });
const s = require("node:http").createServer((req, res) => { req.resume(); req.on("end", () => { res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }); res.end(body); }); });
s.keepAliveTimeout = 65000;
s.listen(0, "127.0.0.1", () => process.stdout.write(JSON.stringify({ port: s.address().port }) + "\\n"));
`;

function firstLine<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    child.once("exit", (c) => reject(new Error(`exited ${c}`)));
    child.stdout!.once("data", (d: Buffer) => resolve(JSON.parse(d.toString().split("\n")[0]!) as T));
  });
}

const children: ChildProcess[] = [];
try {
  const handler = spawn(process.execPath, ["-e", HANDLER], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(handler);
  const { port } = await firstLine<{ port: number }>(handler);
  const serverToken = newMeshToken();
  const clientToken = newMeshToken();
  const sidecar = spawn(
    process.execPath,
    ["--import", "tsx", fileURLToPath(new URL("./sidecar.ts", import.meta.url)), String(port), serverToken, clientToken],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  children.push(sidecar);
  const { outbound } = await firstLine<{ outbound: string }>(sidecar);

  const meshOpts = {
    url: `${outbound}/invoke`,
    headers: { [MESH_TOKEN_HEADER]: clientToken, [TARGET_HEADER]: "research-analyst" },
  };
  const directOpts = { url: `http://127.0.0.1:${port}/invoke` };
  console.log(`bench/mesh: ${REQUESTS} GETs per measurement; handler, proxy pair and client in separate processes on 2 cores`);
  const rows: Array<Record<string, string>> = [];
  const ratios: string[] = [];
  for (const concurrency of [1, 8]) {
    const direct = await runLoad({ ...directOpts, concurrency, requests: REQUESTS });
    const mesh = await runLoad({ ...meshOpts, concurrency, requests: REQUESTS });
    rows.push(
      {
        path: "mTLS proxy pair",
        concurrency: String(concurrency),
        p50: fmtMs(mesh.p50),
        p99: fmtMs(mesh.p99),
        "req/s": mesh.throughput.toFixed(0),
      },
      {
        path: "direct plain HTTP",
        concurrency: String(concurrency),
        p50: fmtMs(direct.p50),
        p99: fmtMs(direct.p99),
        "req/s": direct.throughput.toFixed(0),
      },
    );
    ratios.push(
      `c=${concurrency}: added p50 ${fmtMs(mesh.p50 - direct.p50)}, ratio mesh/direct p50 ${(mesh.p50 / direct.p50).toFixed(2)}x, p99 ${(mesh.p99 / direct.p99).toFixed(2)}x, throughput ${(mesh.throughput / direct.throughput).toFixed(2)}x`,
    );
  }
  printTable(rows);
  for (const r of ratios) console.log(r);
} finally {
  for (const c of children) c.kill("SIGTERM");
}
