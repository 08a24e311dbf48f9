/**
 * bench/api: a tenant-scoped GET through the full Hexr stack (API key auth, tenant authorization,
 * SQLite read, problem+json-capable router) beside a bare node:http server answering the same JSON,
 * both in their own process, same client, same run. Prints p50/p99/throughput and the ratios.
 *
 *   npm run build && npx tsx bench/api/run.ts [--requests 20000] [--concurrency 16]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { runLoad } from "../lib/http-load.js";
import { startPlatform, type BenchPlatform } from "../lib/platform.js";
import { fmtMs, printTable } from "../lib/stats.js";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const REQUESTS = arg("requests", 20_000);
const CONCURRENCY = arg("concurrency", 16);

const BARE_SERVER = `
const http = require("node:http");
const body = JSON.stringify(JSON.parse(process.argv[1]));
const server = http.createServer({ keepAliveTimeout: 65000 }, (req, res) => {
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
});
server.listen(0, "127.0.0.1", () => process.stdout.write(String(server.address().port) + "\\n"));
`;

async function main() {
  const children: ChildProcess[] = [];
  let platform: BenchPlatform | undefined;
  try {
    platform = await startPlatform({ name: "hexr-bench-api" });
    const { url, adminKey } = platform;
    const auth = { authorization: `Bearer ${adminKey}`, "content-type": "application/json" };
    await fetch(url + "/api/v1/tenants", { method: "POST", headers: auth, body: JSON.stringify({ name: "acme-corp" }) });
    const keyRes = await fetch(url + "/api/v1/keys", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ scope: "tenant", tenant: "acme-corp", name: "bench" }),
    });
    const tenantKey = ((await keyRes.json()) as { key: string }).key;
    const tenantPath = "/api/v1/tenants/acme-corp";
    const tenantJson = await (await fetch(url + tenantPath, { headers: { authorization: `Bearer ${tenantKey}` } })).text();

    const bare = spawn(process.execPath, ["-e", BARE_SERVER, tenantJson], { stdio: ["ignore", "pipe", "inherit"] });
    children.push(bare);
    const barePort = await new Promise<number>((resolve) =>
      bare.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))),
    );

    console.log(`bench/api: ${REQUESTS} GET requests, ${CONCURRENCY} keep-alive connections, each server in its own process`);
    // Alternate the two sides so that neither benefits from running second.
    const rounds = 2;
    const results = { hexr: [] as Awaited<ReturnType<typeof runLoad>>[], bare: [] as Awaited<ReturnType<typeof runLoad>>[] };
    for (let i = 0; i < rounds; i++) {
      results.hexr.push(
        await runLoad({
          url: url + tenantPath,
          headers: { authorization: `Bearer ${tenantKey}` },
          concurrency: CONCURRENCY,
          requests: REQUESTS / rounds,
        }),
      );
      results.bare.push(
        await runLoad({
          url: `http://127.0.0.1:${barePort}${tenantPath}`,
          concurrency: CONCURRENCY,
          requests: REQUESTS / rounds,
        }),
      );
    }
    const avg = (xs: Array<{ p50: number; p99: number; throughput: number }>, k: "p50" | "p99" | "throughput") =>
      xs.reduce((a, x) => a + x[k], 0) / xs.length;
    const h = { p50: avg(results.hexr, "p50"), p99: avg(results.hexr, "p99"), rps: avg(results.hexr, "throughput") };
    const b = { p50: avg(results.bare, "p50"), p99: avg(results.bare, "p99"), rps: avg(results.bare, "throughput") };
    printTable([
      {
        server: "hexr GET /api/v1/tenants/:tenant (tenant key)",
        p50: fmtMs(h.p50),
        p99: fmtMs(h.p99),
        "req/s": h.rps.toFixed(0),
      },
      { server: "bare node:http, same JSON", p50: fmtMs(b.p50), p99: fmtMs(b.p99), "req/s": b.rps.toFixed(0) },
    ]);
    console.log(
      `ratio hexr/bare: p50 ${(h.p50 / b.p50).toFixed(2)}x, p99 ${(h.p99 / b.p99).toFixed(2)}x, throughput ${(h.rps / b.rps).toFixed(2)}x`,
    );
  } finally {
    for (const c of children) c.kill("SIGKILL");
    await platform?.stop();
  }
}

await main();
