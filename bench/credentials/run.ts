/**
 * bench/credentials: the three answers hexrTool() can get, each beside a baseline measured in the
 * same run.
 *
 * - L1 hit: `provider.get()` answered in-process (goal ~1 µs), timed in batches so the clock's own
 *   cost does not dominate; baseline: a bare `Map.get` behind an `await`.
 *   L2 and exchange are timed in pairs (one Hexr call, one baseline call, alternating order), so both
 *   sides see the same load on a shared machine.
 * - L2 hit: L1 off, the sealed entry read from Redis/Valkey, authenticated and decrypted; baseline: a
 *   raw GET of a value of the same size on an identically configured client (goal ≤ 1.5x).
 * - Full exchange: L1 and L2 off, JWT-SVID → platform (auth, Cedar policy, mint) → local STS double
 *   (OIDC discovery cached, JWKS signature check) → credentials; baseline: the same
 *   AssumeRoleWithWebIdentity sent straight to the double with the AWS SDK.
 *
 *   npx tsx bench/credentials/run.ts [--l1 200000] [--l2 5000] [--exchanges 300] [--redis redis://127.0.0.1:6379]
 *
 * The platform runs in this process (SQLite, silent logs), so the exchange figure includes its work.
 */
import { AssumeRoleWithWebIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { Redis } from "iovalkey";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { startAwsStsDouble } from "../../packages/platform/src/cloud-doubles/aws-sts.js";
import { PlatformConfig } from "../../packages/platform/src/config/schema.js";
import { startPlatform } from "../../packages/platform/src/server.js";
import { ToolCredentialProvider } from "../../packages/sdk/src/credentials/tool-credentials.js";
import { fmtMs, percentile, printTable } from "../lib/stats.js";

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : process.argv[i + 1]!;
};
const L1_OPS = Number(arg("l1", "200000"));
const L2_OPS = Number(arg("l2", "5000"));
const EXCHANGES = Number(arg("exchanges", "300"));
const REDIS_URL = arg("redis", process.env["HEXR_BENCH_REDIS_URL"] ?? "redis://127.0.0.1:6379");
const AGENT = "spiffe://hexr.local/agent/acme-corp/research/main";
const ROLE = "arn:aws:iam::123456789012:role/agent";

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** Two operations timed alternately, one call each per step, so both see the same machine load. */
async function timePaired(ops: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[number[], number[]]> {
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < ops; i++) {
    const first = i % 2 === 0;
    for (const [fn, out] of first
      ? ([
          [a, ta],
          [b, tb],
        ] as const)
      : ([
          [b, tb],
          [a, ta],
        ] as const)) {
      const t0 = nowMs();
      await fn();
      out.push(nowMs() - t0);
    }
  }
  return [ta.sort((x, y) => x - y), tb.sort((x, y) => x - y)];
}

/** Per-op latency in ms, from batches of `batch` calls (for sub-microsecond work). */
async function timeBatched(ops: number, batch: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let done = 0; done < ops; done += batch) {
    const t0 = nowMs();
    for (let i = 0; i < batch; i++) await fn();
    out.push((nowMs() - t0) / batch);
  }
  return out.sort((a, b) => a - b);
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "hexr-bench-cred-"));
  const platform = await startPlatform(PlatformConfig.parse({ dataDir: dir, port: 0, log: { level: "silent" } }), {
    log: pino({ level: "silent" }),
  });
  const issuer = platform.identity.authority.issuer!;
  const sts = await startAwsStsDouble({
    providers: [{ url: issuer, clientIds: ["sts.amazonaws.com"] }],
    roles: [{ arn: ROLE, trust: { provider: issuer, subjects: ["spiffe://hexr.local/agent/acme-corp/*"] } }],
  });
  const redis = new Redis(REDIS_URL, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: 250,
    lazyConnect: true,
  });
  await redis.connect();
  const prefix = `hexr-bench-${randomBytes(4).toString("hex")}:`;
  const providers: ToolCredentialProvider[] = [];
  try {
    const admin = { authorization: `Bearer ${platform.adminKey}`, "content-type": "application/json" };
    const post = (path: string, body: unknown, method = "POST") =>
      fetch(platform.url + path, { method, headers: admin, body: JSON.stringify(body) }).then(async (r) => {
        if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
      });
    await post("/api/v1/tenants", { name: "acme-corp" });
    await post("/api/v1/tenants/acme-corp/tools", {
      name: "aws_s3",
      provider: "aws",
      config: { roleArn: ROLE, region: "us-east-1", stsEndpoint: sts.url },
    });
    await post(
      "/api/v1/tenants/acme-corp/policies/bench",
      {
        policy: `permit (principal == Hexr::Agent::"${AGENT}", action == Hexr::Action::"credentials:exchange", resource is Hexr::Credential);`,
      },
      "PUT",
    );
    const jwtSource = { fetchJwtSvid: (aud: string) => platform.identity.authority.mintJwtSvid(AGENT, [aud]) };
    const make = (opts: { l1?: boolean; l2?: string }) => {
      const p = new ToolCredentialProvider({
        platformUrl: platform.url,
        jwtSource,
        keyPrefix: prefix,
        warn: (m) => console.warn(m),
        ...opts,
      });
      providers.push(p);
      return p;
    };

    // L1: a warmed provider; baseline: Map.get behind an await (the floor for an async API).
    const l1 = make({});
    await l1.get("aws_s3");
    const map = new Map([["aws_s3", await l1.get("aws_s3")]]);
    const bareMap = async () => map.get("aws_s3");
    await timeBatched(20_000, 1000, () => l1.get("aws_s3"));
    await timeBatched(20_000, 1000, bareMap);
    const l1Hexr: number[] = [];
    const l1Base: number[] = [];
    for (let round = 0; round < 4; round++) {
      l1Hexr.push(...(await timeBatched(L1_OPS / 4, 1000, () => l1.get("aws_s3"))));
      l1Base.push(...(await timeBatched(L1_OPS / 4, 1000, bareMap)));
    }
    l1Hexr.sort((a, b) => a - b);
    l1Base.sort((a, b) => a - b);

    // L2: a provider without L1 whose entry is in Redis; baseline: GET of a same-size value.
    const writer = make({ l2: REDIS_URL });
    await writer.get("aws_s3");
    const l2 = make({ l1: false, l2: REDIS_URL });
    await l2.get("aws_s3");
    const keys = await redis.keys(`${prefix}*`);
    const sealedSize = (await redis.getBuffer(keys[0]!))!.length;
    const rawKey = `${prefix}raw`;
    await redis.set(rawKey, randomBytes(sealedSize), "PX", 600_000);
    const rawGet = () => redis.getBuffer(rawKey);
    await timePaired(500, () => l2.get("aws_s3"), rawGet);
    const [l2Hexr, l2Base] = await timePaired(L2_OPS, () => l2.get("aws_s3"), rawGet);
    if (l2.exchanges !== 0) throw new Error("the L2 provider exchanged: the L2 figures would be wrong");

    // Full exchange; baseline: the SDK straight to the STS double with a freshly minted token.
    const ex = make({ l1: false });
    const direct = new STSClient({
      region: "us-east-1",
      endpoint: sts.url,
      credentials: { accessKeyId: "x", secretAccessKey: "x" },
    });
    const directAssume = async () =>
      direct.send(
        new AssumeRoleWithWebIdentityCommand({
          RoleArn: ROLE,
          RoleSessionName: "research.main",
          WebIdentityToken: (await platform.identity.authority.mintJwtSvid(AGENT, ["sts.amazonaws.com"])).token,
        }),
      );
    await timePaired(30, () => ex.get("aws_s3"), directAssume);
    const [exHexr, exBase] = await timePaired(EXCHANGES, () => ex.get("aws_s3"), directAssume);
    direct.destroy();

    const row = (what: string, n: number, hexr: number[], baseline: string, base: number[]) => ({
      lookup: what,
      ops: n,
      "hexr p50": fmtMs(percentile(hexr, 50)),
      "hexr p99": fmtMs(percentile(hexr, 99)),
      baseline,
      "baseline p50": fmtMs(percentile(base, 50)),
      "ratio p50": `${(percentile(hexr, 50) / percentile(base, 50)).toFixed(2)}x`,
    });
    console.log(`bench/credentials (node ${process.version}, Redis ${REDIS_URL}, L2 value ${sealedSize} bytes)`);
    printTable([
      row("L1 hit", L1_OPS, l1Hexr, "await Map.get", l1Base),
      row("L2 hit", L2_OPS, l2Hexr, "raw Redis GET", l2Base),
      row("full exchange", EXCHANGES, exHexr, "SDK → STS double", exBase),
    ]);
    const l1p50us = percentile(l1Hexr, 50) * 1000;
    const l2Ratio = percentile(l2Hexr, 50) / percentile(l2Base, 50);
    console.log(`\nL1 hit p50 ${l1p50us.toFixed(2)} µs (goal ~1 µs: ${l1p50us <= 1.5 ? "met" : "missed"})`);
    console.log(
      `L2 hit p50 ${l2Ratio.toFixed(2)}x a raw GET of the same size (goal ≤ 1.5x: ${l2Ratio <= 1.5 ? "met" : "missed"})`,
    );
    console.log(
      `full exchange p50 ${fmtMs(percentile(exHexr, 50))} (platform + policy + STS double), ${(percentile(exHexr, 50) / percentile(exBase, 50)).toFixed(2)}x the bare STS call`,
    );
  } finally {
    for (const p of providers) await p.close();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await sts.close();
    await platform.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
