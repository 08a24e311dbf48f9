/**
 * bench/identity/fetch-jwt: FetchJWTSVID p50 over the Workload API unix socket, beside a bare unary
 * gRPC echo over the same kind of socket, same client, same run. The server runs in its own process
 * (as the platform does); the client is this process, attested by SO_PEERCRED on every call.
 *
 *   Rows: (1) baseline — node:http2 gRPC echo of a JWTSVIDResponse-sized message, no attestation;
 *         (2) FetchJWTSVID, same audience (served from the JWT-SVID cache: attestation + entry match);
 *         (3) FetchJWTSVID, a new audience each call (attestation + ES256 signing);
 *         (4) FetchJWTSVID through the SDK's WorkloadApiClient (what an agent calls);
 *         (5) FetchJWTSVID through @grpc/grpc-js (a stock client, as go-spiffe would be).
 *
 *   npx tsx bench/identity/fetch-jwt.ts [--calls 3000] [--warmup 300]
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createH2Server } from "node:http2";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { readBootId, readProcStat } from "../../packages/platform/src/identity/attestation/proc.js";
import { processSelectors } from "../../packages/platform/src/identity/attestation/unix-attestor.js";
import { createAuthority } from "../../packages/platform/src/identity/authority/authority.js";
import { authorityMigrations } from "../../packages/platform/src/identity/authority/store.js";
import { EntryService } from "../../packages/platform/src/identity/entries/service.js";
import { EntryStore, entryMigrations } from "../../packages/platform/src/identity/entries/store.js";
import { encodeFrame } from "../../packages/platform/src/identity/workload-api/grpc.js";
import { createWorkloadApi } from "../../packages/platform/src/identity/workload-api/workload-api.js";
import { createSqliteStorage } from "../../packages/platform/src/storage/sqlite.js";
import { parseEndpoint } from "../../packages/sdk/src/identity/endpoint.js";
import { GrpcClient } from "../../packages/sdk/src/identity/grpc-client.js";
import { encodeJwtSvidRequest } from "../../packages/sdk/src/identity/wire.js";
import { WorkloadApiClient } from "../../packages/sdk/src/identity/workload-client.js";
import { fmtMs, printTable, summarize } from "../lib/stats.js";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const CALLS = arg("calls", 3000);
const WARMUP = arg("warmup", 300);
const PROTO = fileURLToPath(new URL("../../test/identity/workloadapi.proto", import.meta.url));
const SPIFFE_ID = "spiffe://hexr.local/agent/bench/fetcher/main";

/** The server process: the Workload API (authority, entries, attestation) and a bare gRPC echo. */
async function serve(clientPid: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "hexr-bench-wl-"));
  const storage = createSqliteStorage({ filename: join(dir, "hexr.db") });
  await storage.migrate([...authorityMigrations, ...entryMigrations]);
  const authority = await createAuthority({
    storage,
    trustDomain: "hexr.local",
    masterKey: randomBytes(32),
    issuer: "http://127.0.0.1:1",
  });
  const entries = new EntryService({
    store: new EntryStore(storage),
    trustDomain: "hexr.local",
    defaults: { x509SvidTtlSeconds: 3600, jwtSvidTtlSeconds: 300, maxSvidTtlSeconds: 86_400 },
  });
  await entries.refresh();
  const { startTime } = await readProcStat(clientPid);
  await entries.create({ spiffeId: SPIFFE_ID, selectors: processSelectors(clientPid, startTime, readBootId()) }, "bench");
  const api = createWorkloadApi({ authority, entries, dataDir: dir });
  await api.start();

  // The baseline: same transport (node:http2 on a unix socket, gRPC framing), a fixed reply, nothing else.
  const reply = encodeFrame(Buffer.alloc(560, 0x61));
  const h2 = createH2Server();
  h2.on("stream", (stream) => {
    stream.on("data", () => undefined);
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(reply);
    });
  });
  const echoPath = join(dir, "echo.sock");
  const net = createNetServer((s) => h2.emit("connection", s));
  await new Promise<void>((r) => net.listen(echoPath, r));
  process.stdout.write(JSON.stringify({ workload: api.socketPath, echo: echoPath }) + "\n");
  process.stdin.resume();
  process.stdin.on("end", async () => {
    await api.stop();
    net.close();
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  });
}

async function measure(name: string, call: (i: number) => Promise<unknown>) {
  for (let i = 0; i < WARMUP; i++) await call(i);
  const samples: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < CALLS; i++) {
    const s = performance.now();
    await call(WARMUP + i);
    samples.push(performance.now() - s);
  }
  return { name, ...summarize(samples, performance.now() - t0) };
}

async function main(): Promise<void> {
  const server = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), "--serve", String(process.pid)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const first = await new Promise<string>((resolve) => createInterface({ input: server.stdout! }).once("line", resolve));
  const paths = JSON.parse(first) as { workload: string; echo: string };
  try {
    const echo = new GrpcClient(parseEndpoint(`unix://${paths.echo}`), { metadata: { "workload.spiffe.io": "true" } });
    const wl = new GrpcClient(parseEndpoint(`unix://${paths.workload}`), { metadata: { "workload.spiffe.io": "true" } });
    const sdk = new WorkloadApiClient({ address: `unix://${paths.workload}` });
    const def = protoLoader.loadSync(PROTO, { keepCase: true, defaults: true });
    const Api = (grpc.loadPackageDefinition(def) as unknown as { SpiffeWorkloadAPI: grpc.ServiceClientConstructor })
      .SpiffeWorkloadAPI;
    const ref = new Api(`unix://${paths.workload}`, grpc.credentials.createInsecure()) as unknown as {
      FetchJWTSVID(req: unknown, md: grpc.Metadata, cb: (e: Error | null, v: unknown) => void): void;
      close(): void;
    };
    const md = new grpc.Metadata();
    md.set("workload.spiffe.io", "true");
    const sameAudience = encodeJwtSvidRequest(["spiffe://hexr.local/system/platform"]);

    const rows = [
      await measure("baseline: bare gRPC echo (http2, unix socket)", () => echo.unary("/Echo/Echo", sameAudience)),
      await measure("FetchJWTSVID, same audience (cached token)", () =>
        wl.unary("/SpiffeWorkloadAPI/FetchJWTSVID", sameAudience),
      ),
      await measure("FetchJWTSVID, new audience each call (signs)", (i) =>
        wl.unary("/SpiffeWorkloadAPI/FetchJWTSVID", encodeJwtSvidRequest([`aud-${i}`])),
      ),
      await measure("FetchJWTSVID via SDK WorkloadApiClient", () => sdk.fetchJwtSvids("spiffe://hexr.local/system/platform")),
      await measure(
        "FetchJWTSVID via @grpc/grpc-js client",
        () =>
          new Promise((resolve, reject) =>
            ref.FetchJWTSVID({ audience: ["spiffe://hexr.local/system/platform"] }, md, (e, v) => (e ? reject(e) : resolve(v))),
          ),
      ),
    ];
    const base = rows[0]!.p50;
    printTable(
      rows.map((r) => ({
        call: r.name,
        p50: fmtMs(r.p50),
        p99: fmtMs(r.p99),
        "calls/s": r.throughput.toFixed(0),
        "p50 vs baseline": `${(r.p50 / base).toFixed(2)}x`,
      })),
    );
    echo.close();
    wl.close();
    sdk.close();
    ref.close();
  } finally {
    server.stdin!.end();
  }
}

if (process.argv.includes("--serve")) await serve(Number(process.argv[process.argv.indexOf("--serve") + 1]));
else await main();
