/**
 * hexrTool end to end: the SDK's caches in front of a real platform (authority, policy, exchange)
 * and the AWS/GCP doubles, with a real Redis as L2. JWT-SVIDs come from the platform's authority.
 */
import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { HexrError } from "@hexr/core";
import { OAuth2Client } from "google-auth-library";
import { Redis } from "iovalkey";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  startAwsStsDouble,
  startGcpStsDouble,
  startS3Double,
  type AwsStsDouble,
  type GcpStsDouble,
  type S3Double,
} from "../../../platform/src/cloud-doubles/index.js";
import { readBootId, readProcStat } from "../../../platform/src/identity/attestation/proc.js";
import { processSelectors } from "../../../platform/src/identity/attestation/unix-attestor.js";
import { startTestPlatform, type TestPlatform } from "../../../platform/src/test-support/platform.js";
import { defaultIdentity } from "../identity/default.js";
import { hexrTool } from "./hexr-tool.js";
import { ToolCredentialProvider, type ToolCredentialProviderOptions } from "./tool-credentials.js";
import type { ToolCredentials } from "./types.js";

const REDIS_URL = process.env["HEXR_TEST_REDIS_URL"] ?? "redis://127.0.0.1:6379";
const RESEARCH = "spiffe://hexr.local/agent/acme-corp/research/main";
const WRITER = "spiffe://hexr.local/agent/acme-corp/writer/main";
const INTERN = "spiffe://hexr.local/agent/acme-corp/intern/main";
const ROLE = "arn:aws:iam::123456789012:role/agent";
const POOL = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/hexr-pool/providers/hexr-oidc";
const SA = "reports@proj.iam.gserviceaccount.com";

let p: TestPlatform;
let sts: AwsStsDouble;
let s3: S3Double;
let gcp: GcpStsDouble;
let redis: Redis;
const prefix = `hexr-test-${randomBytes(6).toString("hex")}:`;
const exporter = new InMemorySpanExporter();
const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer("test");
const providers: ToolCredentialProvider[] = [];

function provider(
  spiffeId: string,
  opts: Partial<ToolCredentialProviderOptions> & { warnings?: string[] } = {},
): ToolCredentialProvider {
  const { warnings, ...rest } = opts;
  const pr = new ToolCredentialProvider({
    platformUrl: p.url,
    jwtSource: { fetchJwtSvid: (aud) => p.identity.authority.mintJwtSvid(spiffeId, [aud]) },
    l2: REDIS_URL,
    keyPrefix: prefix,
    tracer,
    warn: (m) => warnings?.push(m),
    ...rest,
  });
  providers.push(pr);
  return pr;
}

const tiers = (tool: string) =>
  exporter
    .getFinishedSpans()
    .filter((s) => s.name === "hexr.cache.lookup" && s.attributes["hexr.tool.service"] === tool)
    .map((s) => s.attributes["hexr.cache.tier"]);
const assumeCalls = () => sts.calls.filter((c) => c.outcome === "ok").length;
const aws = (c: ToolCredentials) => {
  if (c.provider !== "aws") throw new Error(`expected aws credentials, got ${c.provider}`);
  return c;
};
async function redisKeys(): Promise<string[]> {
  return (await redis.keys(`${prefix}*`)).sort();
}

beforeAll(async () => {
  p = await startTestPlatform();
  const issuer = p.identity.authority.issuer!;
  sts = await startAwsStsDouble({
    providers: [{ url: issuer, clientIds: ["sts.amazonaws.com"] }],
    roles: [{ arn: ROLE, trust: { provider: issuer, subjects: ["spiffe://hexr.local/agent/acme-corp/*"] } }],
  });
  s3 = await startS3Double({ sts, buckets: { reports: [ROLE] } });
  gcp = await startGcpStsDouble({
    providers: [{ name: POOL, issuerUri: issuer }],
    serviceAccounts: [{ email: SA, workloadIdentityUsers: ["spiffe://hexr.local/agent/acme-corp/*"] }],
    buckets: { "acme-reports": [SA] },
  });
  redis = new Redis(REDIS_URL);
  await p.api("/api/v1/tenants", { method: "POST", json: { name: "acme-corp" } });
  for (const tool of [
    { name: "aws_s3", provider: "aws", config: { roleArn: ROLE, region: "eu-west-1", stsEndpoint: sts.url } },
    {
      name: "gcs",
      provider: "gcp",
      config: { audience: POOL, serviceAccount: SA, tokenUrl: `${gcp.url}/v1/token`, iamCredentialsUrl: gcp.url },
    },
  ]) {
    expect((await p.api("/api/v1/tenants/acme-corp/tools", { method: "POST", json: tool })).status).toBe(201);
  }
  const policy = [RESEARCH, WRITER]
    .map(
      (id) =>
        `permit (principal == Hexr::Agent::"${id}", action == Hexr::Action::"credentials:exchange", resource is Hexr::Credential);`,
    )
    .join("\n");
  expect((await p.api("/api/v1/tenants/acme-corp/policies/tools", { method: "PUT", json: { policy } })).status).toBe(201);
});

beforeEach(() => exporter.reset());

afterAll(async () => {
  for (const pr of providers) await pr.close();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  await Promise.all([sts?.close(), s3?.close(), gcp?.close()]);
  await p?.dispose();
});

describe("hexrTool", () => {
  it("works with no configuration: this process is attested by the Workload API and gets its JWT-SVID there", async () => {
    // What `hexr run` does for an agent: a registration entry pinned to the process, and the environment.
    const { startTime } = await readProcStat(process.pid);
    const entry = await p.api("/api/v1/identity/entries", {
      method: "POST",
      json: { spiffeId: RESEARCH, selectors: processSelectors(process.pid, startTime, readBootId()), createdBy: "test" },
    });
    expect(entry.status).toBe(201);
    process.env["SPIFFE_ENDPOINT_SOCKET"] = `unix://${p.info.workloadSocket}`;
    process.env["HEXR_PLATFORM_URL"] = p.url;
    delete process.env["HEXR_TRUST_DOMAIN"];
    delete process.env["HEXR_CACHE_URL"];
    try {
      const client = await hexrTool("aws_s3", { clientConfig: { endpoint: s3.url, forcePathStyle: true } });
      await client.send(new PutObjectCommand({ Bucket: "reports", Key: "zero-config.txt", Body: "attested" }));
      const got = await client.send(new GetObjectCommand({ Bucket: "reports", Key: "zero-config.txt" }));
      expect(await got.Body!.transformToString()).toBe("attested");
      expect(sts.calls.at(-1)).toMatchObject({ outcome: "ok", subject: RESEARCH });
      client.destroy();
    } finally {
      defaultIdentity().close();
    }
  });

  it("aws_s3 returns an S3Client that works; the second call is answered by L1 without an exchange", async () => {
    const pr = provider(RESEARCH);
    const before = assumeCalls();
    const client = await hexrTool("aws_s3", { provider: pr, clientConfig: { endpoint: s3.url, forcePathStyle: true } });
    expect(client).toBeInstanceOf(S3Client);
    expect(await client.config.region()).toBe("eu-west-1");
    await client.send(new PutObjectCommand({ Bucket: "reports", Key: "agent.txt", Body: "written by hexrTool" }));
    const got = await client.send(new GetObjectCommand({ Bucket: "reports", Key: "agent.txt" }));
    expect(await got.Body!.transformToString()).toBe("written by hexrTool");

    const again = await pr.get("aws_s3");
    expect(again.expiresAt - Date.now()).toBeGreaterThan(14 * 60_000);
    expect(assumeCalls()).toBe(before + 1);
    expect(pr.exchanges).toBe(1);
    expect(tiers("aws_s3")[0]).toBe("L3");
    expect(
      tiers("aws_s3")
        .slice(1)
        .every((t) => t === "L1"),
    ).toBe(true);
    client.destroy();
  });

  it("gcs returns the raw credentials, usable with google-auth-library against Cloud Storage", async () => {
    const pr = provider(RESEARCH);
    const creds = await hexrTool("gcs", { provider: pr });
    expect(creds).toMatchObject({ tool: "gcs", provider: "gcp", serviceAccount: SA, tokenType: "Bearer" });
    const oauth = new OAuth2Client();
    oauth.setCredentials({ access_token: (creds as { accessToken: string }).accessToken });
    const res = await oauth.request<{ kind: string }>({ url: `${gcp.url}/storage/v1/b/acme-reports/o` });
    expect(res.data.kind).toBe("storage#objects");
  });

  it("shares credentials between agent processes of one identity through L2, sealed", async () => {
    const first = provider(RESEARCH);
    const c1 = aws(await first.get("aws_s3"));
    const before = assumeCalls();
    const second = provider(RESEARCH);
    const c2 = aws(await second.get("aws_s3"));
    expect(c2.accessKeyId).toBe(c1.accessKeyId);
    expect(assumeCalls()).toBe(before);
    expect(second.exchanges).toBe(0);
    expect(tiers("aws_s3").at(-1)).toBe("L2");

    // A dump of the cache shows neither the key id, the secret nor the session token.
    const keys = await redisKeys();
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) {
      expect(k).not.toContain("spiffe");
      const raw = (await redis.getBuffer(k))!;
      for (const secret of [c1.accessKeyId, c1.secretAccessKey, c1.sessionToken.slice(0, 40)]) {
        expect(raw.includes(Buffer.from(secret))).toBe(false);
        expect(raw.toString("base64")).not.toContain(Buffer.from(secret).toString("base64").slice(4, 30));
      }
    }
    // Entries leave Valkey before the credentials expire: 15-minute AWS credentials are kept 12 minutes.
    const ttl = await redis.pttl(keys.find((k) => k.endsWith(":aws_s3"))!);
    expect(ttl).toBeGreaterThan(11 * 60_000);
    expect(ttl).toBeLessThanOrEqual(12 * 60_000);
  });

  it("rejects tampered L2 data and an entry moved from another identity, and exchanges instead", async () => {
    const owner = provider(RESEARCH);
    const original = aws(await owner.get("aws_s3"));
    const [key] = (await redisKeys()).filter((k) => k.endsWith(":aws_s3"));
    const sealed = (await redis.getBuffer(key!))!;
    const flipped = Buffer.from(sealed);
    flipped[flipped.length - 5]! ^= 0x01;
    await redis.set(key!, flipped, "PX", 60_000);

    const warnings: string[] = [];
    const fresh = provider(RESEARCH, { warnings });
    const got = aws(await fresh.get("aws_s3"));
    expect(fresh.exchanges).toBe(1);
    expect(got.accessKeyId).not.toBe(original.accessKeyId);
    expect(warnings.join("\n")).toMatch(/failed authentication/);
    expect(tiers("aws_s3").at(-1)).toBe("L3");

    // The writer agent finds the research agent's entry copied into its own slot: its key cannot open it.
    const writerWarnings: string[] = [];
    const writer = provider(WRITER, { warnings: writerWarnings });
    await writer.get("gcs"); // learns its cache key and writes its own gcs entry
    const researchSlot = key!.split(":").at(-2)!;
    const writerGcsKey = (await redisKeys()).find((k) => k.endsWith(":gcs") && !k.includes(researchSlot))!;
    const stolen = (await redis.getBuffer(key!))!; // the research agent's valid, re-sealed entry
    await redis.set(writerGcsKey.replace(/:gcs$/, ":aws_s3"), stolen, "PX", 60_000);
    const writerCreds = aws(await writer.get("aws_s3"));
    expect(writerWarnings.join("\n")).toMatch(/failed authentication/);
    expect(writerCreds.accessKeyId).not.toBe(got.accessKeyId);
    expect(writer.exchanges).toBe(2);
  });

  it("keeps working with Redis down: L1 and the exchange answer, one warning", async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer();
      srv.listen(0, "127.0.0.1", () => {
        const { port } = srv.address() as { port: number };
        srv.close(() => resolve(port));
      });
    });
    const warnings: string[] = [];
    const pr = provider(RESEARCH, { warnings, l2: `redis://127.0.0.1:${port}` });
    const a = aws(await pr.get("aws_s3"));
    const b = aws(await pr.get("aws_s3"));
    await pr.get("gcs");
    await pr.get("gcs");
    expect(b.accessKeyId).toBe(a.accessKeyId);
    expect(pr.exchanges).toBe(2);
    expect(tiers("aws_s3")).toEqual(["L3", "L1"]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/L2 credential cache .* is unavailable/);
  });

  it("makes one exchange for concurrent misses of the same tool", async () => {
    const pr = provider(RESEARCH, { l2: undefined });
    const before = assumeCalls();
    const all = await Promise.all(Array.from({ length: 25 }, () => pr.get("aws_s3")));
    expect(new Set(all.map((c) => aws(c).accessKeyId)).size).toBe(1);
    expect(assumeCalls()).toBe(before + 1);
    expect(pr.exchanges).toBe(1);
    expect(tiers("aws_s3").filter((t) => t === "L3")).toHaveLength(25);
  });

  it("stops serving cached credentials before they expire", async () => {
    let offset = 0;
    const pr = provider(RESEARCH, { clock: () => Date.now() + offset });
    const first = aws(await pr.get("aws_s3"));
    offset = 11 * 60_000;
    expect(aws(await pr.get("aws_s3")).accessKeyId).toBe(first.accessKeyId);
    offset = 12 * 60_000 + 5_000;
    const renewed = aws(await pr.get("aws_s3"));
    expect(renewed.accessKeyId).not.toBe(first.accessKeyId);
    // Neither L1 nor the (sealed) L2 entry is served past its freshness bound.
    expect(tiers("aws_s3").slice(1)).toEqual(["L1", "L3"]);
  });

  it("surfaces typed errors: policy denial and an unknown tool", async () => {
    const intern = provider(INTERN);
    const denied = await hexrTool("aws_s3", { provider: intern }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(HexrError);
    expect(denied).toMatchObject({ code: "credentials.denied", kind: "permission_denied" });
    const unknown = await provider(RESEARCH)
      .get("nope")
      .catch((e: unknown) => e);
    expect(unknown).toMatchObject({ code: "credentials.tool_not_found", kind: "not_found" });
    const failed = exporter.getFinishedSpans().filter((s) => s.status.code === 2);
    expect(failed.length).toBeGreaterThanOrEqual(2);
  });
});
