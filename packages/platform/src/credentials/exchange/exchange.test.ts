/**
 * The credential injector end to end: a real platform (authority, JWT-SVID authenticator, Cedar
 * policy, SQLite) exchanging agents' SVIDs at the cloud doubles, which verify the minted tokens
 * through the platform's own OIDC discovery and JWKS.
 */
import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAwsStsDouble, type AwsStsDouble } from "../../cloud-doubles/aws-sts.js";
import { startEntraDouble, type EntraDouble } from "../../cloud-doubles/azure-entra.js";
import { startGcpStsDouble, type GcpStsDouble } from "../../cloud-doubles/gcp-sts.js";
import { startS3Double, type S3Double } from "../../cloud-doubles/s3.js";
import { selfSignedCertificate } from "../../cloud-doubles/tls.js";
import { PlatformConfig } from "../../config/schema.js";
import { startPlatform, type Platform } from "../../server.js";

const TD = "hexr.local";
const RESEARCH = `spiffe://${TD}/agent/acme-corp/research/main`;
const INTERN = `spiffe://${TD}/agent/acme-corp/intern/main`;
const GLOBEX = `spiffe://${TD}/agent/globex/research/main`;
const CREDENTIALS_AUD = `spiffe://${TD}/system/credentials`;
const ROLE = "arn:aws:iam::123456789012:role/agent";
const GLOBEX_ROLE = "arn:aws:iam::210987654321:role/globex-agent";
const POOL = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/hexr-pool/providers/hexr-oidc";
const STRICT_POOL = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/hexr-pool/providers/strict-oidc";
const SA = "reports@proj.iam.gserviceaccount.com";
const AZ_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AZ_APP = "5b3c1d2e-0f4a-4b6c-8d7e-9f0a1b2c3d4e";
const AZ_OTHER_APP = "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a";

let platform: Platform;
let dir: string;
const logLines: string[] = [];
let sts: AwsStsDouble;
let s3: S3Double;
let gcp: GcpStsDouble;
let entra: EntraDouble;
let cloudOffsetMs = 0;
const cloudClock = () => Date.now() + cloudOffsetMs;

async function api(path: string, init: { method?: string; json?: unknown; bearer?: string } = {}): Promise<Response> {
  const bearer = init.bearer ?? platform.adminKey;
  return fetch(platform.url + path, {
    method: init.method ?? (init.json === undefined ? "GET" : "POST"),
    headers: { authorization: `Bearer ${bearer}`, ...(init.json !== undefined ? { "content-type": "application/json" } : {}) },
    ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}),
  });
}

const svid = async (sub: string, aud = CREDENTIALS_AUD, ttlSeconds?: number) =>
  (await platform.identity.authority.mintJwtSvid(sub, [aud], ttlSeconds ? { ttlSeconds } : {})).token;

const exchange = async (sub: string, tool: string, aud?: string) =>
  api("/api/v1/exchange", { json: { tool }, bearer: await svid(sub, aud) });

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function expectProblem(res: Response, status: number, code: string): Promise<Record<string, unknown>> {
  const text = await res.text();
  expect({ status: res.status, body: text }).toMatchObject({ status });
  const body = JSON.parse(text) as Record<string, unknown>;
  expect(body["code"]).toBe(code);
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
  return body;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "hexr-cred-"));
  const tls = selfSignedCertificate();
  writeFileSync(join(dir, "cloud-ca.pem"), tls.cert);
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  });
  const config = PlatformConfig.parse({
    dataDir: join(dir, "data"),
    port: 0,
    trustDomain: TD,
    identity: { jwtLeewaySeconds: 1 },
    credentials: { extraCaFile: join(dir, "cloud-ca.pem"), timeoutMs: 3000 },
  });
  platform = await startPlatform(config, { log: pino({ level: "debug" }, sink) });
  const issuer = platform.identity.authority.issuer!;

  sts = await startAwsStsDouble({
    providers: [{ url: issuer, clientIds: ["sts.amazonaws.com"] }],
    roles: [
      {
        arn: ROLE,
        trust: { provider: issuer, subjects: ["spiffe://hexr.local/agent/acme-corp/*"] },
        maxSessionDurationSeconds: 3600,
      },
      {
        arn: "arn:aws:iam::123456789012:role/locked",
        trust: { provider: issuer, subjects: ["spiffe://hexr.local/agent/acme-corp/billing/*"] },
      },
      { arn: GLOBEX_ROLE, trust: { provider: issuer, subjects: ["spiffe://hexr.local/agent/globex/*"] } },
    ],
    clock: cloudClock,
  });
  s3 = await startS3Double({ sts, buckets: { reports: [ROLE] }, clock: cloudClock });
  gcp = await startGcpStsDouble({
    providers: [
      { name: POOL, issuerUri: issuer, subjectCondition: ["spiffe://hexr.local/agent/acme-corp/*"] },
      { name: STRICT_POOL, issuerUri: issuer, subjectCondition: ["spiffe://hexr.local/agent/acme-corp/billing/*"] },
    ],
    serviceAccounts: [{ email: SA, workloadIdentityUsers: ["spiffe://hexr.local/agent/acme-corp/research/*"] }],
    clock: cloudClock,
  });
  entra = await startEntraDouble({
    tls,
    apps: [
      {
        tenantId: AZ_TENANT,
        clientId: AZ_APP,
        federatedCredentials: [{ issuer, subject: RESEARCH, audiences: ["api://AzureADTokenExchange"] }],
      },
      {
        tenantId: AZ_TENANT,
        clientId: AZ_OTHER_APP,
        federatedCredentials: [{ issuer, subject: INTERN, audiences: ["api://AzureADTokenExchange"] }],
      },
    ],
    clock: cloudClock,
  });

  for (const name of ["acme-corp", "globex"]) expect((await api("/api/v1/tenants", { json: { name } })).status).toBe(201);
  const aws = (name: string, config: Record<string, unknown> = {}) => ({
    name,
    provider: "aws",
    config: { roleArn: ROLE, region: "us-east-1", stsEndpoint: sts.url, ...config },
  });
  const acmeTools = [
    aws("aws_s3"),
    aws("aws_locked", { roleArn: "arn:aws:iam::123456789012:role/locked" }),
    aws("aws_bad_audience", { tokenAudience: "not-a-registered-client-id" }),
    aws("aws_down", { stsEndpoint: `http://127.0.0.1:${await closedPort()}` }),
    {
      name: "gcs",
      provider: "gcp",
      config: { audience: POOL, serviceAccount: SA, tokenUrl: `${gcp.url}/v1/token`, iamCredentialsUrl: gcp.url },
    },
    { name: "gcs_federated", provider: "gcp", config: { audience: POOL, tokenUrl: `${gcp.url}/v1/token` } },
    { name: "gcs_strict", provider: "gcp", config: { audience: STRICT_POOL, tokenUrl: `${gcp.url}/v1/token` } },
    {
      name: "azure_blob",
      provider: "azure",
      config: { tenantId: AZ_TENANT, clientId: AZ_APP, authorityHost: entra.url, scope: "https://storage.azure.com/.default" },
    },
    { name: "azure_other", provider: "azure", config: { tenantId: AZ_TENANT, clientId: AZ_OTHER_APP, authorityHost: entra.url } },
  ];
  for (const t of acmeTools) expect((await api("/api/v1/tenants/acme-corp/tools", { json: t })).status).toBe(201);
  expect((await api("/api/v1/tenants/globex/tools", { json: aws("aws_s3", { roleArn: GLOBEX_ROLE }) })).status).toBe(201);

  // acme: only the research agent may exchange; globex: every agent of the tenant.
  const permitResearch = `permit (principal == Hexr::Agent::"${RESEARCH}", action == Hexr::Action::"credentials:exchange", resource is Hexr::Credential);`;
  expect(
    (await api("/api/v1/tenants/acme-corp/policies/research-credentials", { method: "PUT", json: { policy: permitResearch } }))
      .status,
  ).toBe(201);
  const permitAll = `permit (principal is Hexr::Agent, action == Hexr::Action::"credentials:exchange", resource is Hexr::Credential);`;
  expect(
    (await api("/api/v1/tenants/globex/policies/agents-credentials", { method: "PUT", json: { policy: permitAll } })).status,
  ).toBe(201);
});

afterAll(async () => {
  await platform?.close();
  await Promise.all([sts?.close(), s3?.close(), gcp?.close(), entra?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

describe("POST /api/v1/exchange: success paths", () => {
  it("AWS: STS AssumeRoleWithWebIdentity → 15-minute credentials that S3 accepts", async () => {
    const res = await exchange(RESEARCH, "aws_s3");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as {
      tool: string;
      spiffeId: string;
      expiresAt: string;
      credentials: {
        provider: string;
        accessKeyId: string;
        secretAccessKey: string;
        sessionToken: string;
        region: string;
        assumedRoleArn: string;
      };
      cacheKey: { id: string; key: string };
    };
    expect(body).toMatchObject({ tool: "aws_s3", spiffeId: RESEARCH, credentials: { provider: "aws", region: "us-east-1" } });
    expect(body.credentials.assumedRoleArn).toBe("arn:aws:sts::123456789012:assumed-role/agent/research.main");
    const ttl = Date.parse(body.expiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(14 * 60_000);
    expect(ttl).toBeLessThanOrEqual(15 * 60_000);
    expect(Buffer.from(body.cacheKey.key, "base64")).toHaveLength(32);

    const c = body.credentials;
    const client = new S3Client({
      region: c.region,
      endpoint: s3.url,
      forcePathStyle: true,
      credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken },
    });
    await client.send(new PutObjectCommand({ Bucket: "reports", Key: "hello.txt", Body: "from an agent" }));
    const got = await client.send(new GetObjectCommand({ Bucket: "reports", Key: "hello.txt" }));
    expect(await got.Body!.transformToString()).toBe("from an agent");
    client.destroy();
  });

  it("GCP: STS token exchange, then impersonation of the service account", async () => {
    const res = await exchange(RESEARCH, "gcs");
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      credentials: { provider: string; accessToken: string; serviceAccount: string; expiresAt: string };
    };
    expect(body.credentials).toMatchObject({ provider: "gcp", serviceAccount: SA });
    expect(gcp.tokenInfo(body.credentials.accessToken)).toMatchObject({ principal: SA, subject: RESEARCH });

    const fed = (await (await exchange(RESEARCH, "gcs_federated")).json()) as { credentials: { accessToken: string } };
    expect(gcp.tokenInfo(fed.credentials.accessToken)?.principal).toBe(
      `principal://iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/hexr-pool/subject/${RESEARCH}`,
    );
  });

  it("Azure: Entra client credentials with the SVID as federated client assertion, over HTTPS", async () => {
    const res = await exchange(RESEARCH, "azure_blob");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { credentials: { provider: string; accessToken: string; tokenType: string } };
    expect(body.credentials).toMatchObject({ provider: "azure", tokenType: "Bearer" });
    const claims = JSON.parse(Buffer.from(body.credentials.accessToken.split(".")[1]!, "base64url").toString()) as {
      aud: string;
      appid: string;
    };
    expect(claims).toMatchObject({ aud: "https://storage.azure.com", appid: AZ_APP });
  });
});

describe("POST /api/v1/exchange: who may ask", () => {
  it("rejects a JWT-SVID addressed to another audience", async () => {
    await expectProblem(await exchange(RESEARCH, "aws_s3", `spiffe://${TD}/system/platform`), 401, "credentials.wrong_audience");
    await expectProblem(await exchange(RESEARCH, "aws_s3", "sts.amazonaws.com"), 401, "auth.invalid_svid");
  });

  it("rejects an expired JWT-SVID", async () => {
    const token = await svid(RESEARCH, CREDENTIALS_AUD, 1);
    await new Promise((r) => setTimeout(r, 3100));
    const body = await expectProblem(
      await api("/api/v1/exchange", { json: { tool: "aws_s3" }, bearer: token }),
      401,
      "auth.invalid_svid",
    );
    expect(String(body["detail"])).toMatch(/expired/);
  });

  it("asks the policy engine and does not call the cloud when it denies", async () => {
    const before = sts.calls.length;
    const body = await expectProblem(await exchange(INTERN, "aws_s3"), 403, "credentials.denied");
    expect(body["tool"]).toBe("aws_s3");
    expect(sts.calls.length).toBe(before);
  });

  it("refuses API keys: credentials are for agents", async () => {
    await expectProblem(await api("/api/v1/exchange", { json: { tool: "aws_s3" } }), 403, "credentials.workload_required");
  });

  it("resolves tools in the caller's own tenant only", async () => {
    // globex has no 'gcs': acme's tool of that name does not exist for it.
    await expectProblem(await exchange(GLOBEX, "gcs"), 404, "credentials.tool_not_found");
    // Both have 'aws_s3', each mapped to its own role.
    const g = (await (await exchange(GLOBEX, "aws_s3")).json()) as { credentials: { assumedRoleArn: string } };
    expect(g.credentials.assumedRoleArn).toBe("arn:aws:sts::210987654321:assumed-role/globex-agent/research.main");
    const a = (await (await exchange(RESEARCH, "aws_s3")).json()) as { credentials: { assumedRoleArn: string } };
    expect(a.credentials.assumedRoleArn).toContain("role/agent/");
  });

  it("validates the request body", async () => {
    await expectProblem(
      await api("/api/v1/exchange", { json: { tool: "Not A Tool" }, bearer: await svid(RESEARCH) }),
      400,
      "request.validation_failed",
    );
    await expectProblem(
      await api("/api/v1/exchange", { json: { tool: "aws_s3", tenant: "globex" }, bearer: await svid(RESEARCH) }),
      400,
      "request.validation_failed",
    );
  });
});

describe("POST /api/v1/exchange: cloud errors come back typed", () => {
  it("AWS trust policy refuses the subject → credentials.idp_rejected", async () => {
    const body = await expectProblem(await exchange(RESEARCH, "aws_locked"), 403, "credentials.idp_rejected");
    expect(body).toMatchObject({ provider: "aws", cloudCode: "AccessDenied", cloudStatus: 403 });
  });

  it("AWS does not know the token audience → credentials.invalid_identity_token", async () => {
    const body = await expectProblem(await exchange(RESEARCH, "aws_bad_audience"), 502, "credentials.invalid_identity_token");
    expect(body).toMatchObject({ cloudCode: "InvalidIdentityToken", cloudMessage: "Incorrect token audience" });
  });

  it("AWS finds the token expired (cloud clock ahead) → credentials.expired_token", async () => {
    cloudOffsetMs = 30 * 60_000;
    try {
      const body = await expectProblem(await exchange(RESEARCH, "aws_s3"), 502, "credentials.expired_token");
      expect(body["cloudCode"]).toBe("ExpiredToken");
    } finally {
      cloudOffsetMs = 0;
    }
  });

  it("AWS STS unreachable → credentials.cloud_unavailable", async () => {
    await expectProblem(await exchange(RESEARCH, "aws_down"), 503, "credentials.cloud_unavailable");
  });

  it("GCP attribute condition refuses the subject → credentials.idp_rejected", async () => {
    const body = await expectProblem(await exchange(RESEARCH, "gcs_strict"), 403, "credentials.idp_rejected");
    expect(body).toMatchObject({ provider: "gcp", cloudCode: "unauthorized_client" });
  });

  it("GCP service account not granted to the subject → credentials.idp_rejected", async () => {
    // The pool accepts every acme agent, the service account only research agents.
    const permitIntern = `permit (principal == Hexr::Agent::"${INTERN}", action == Hexr::Action::"credentials:exchange", resource == Hexr::Credential::"acme-corp/gcs");`;
    expect(
      (await api("/api/v1/tenants/acme-corp/policies/intern-gcs", { method: "PUT", json: { policy: permitIntern } })).status,
    ).toBe(201);
    const body = await expectProblem(await exchange(INTERN, "gcs"), 403, "credentials.idp_rejected");
    expect(body).toMatchObject({ provider: "gcp", cloudCode: "PERMISSION_DENIED" });
  });

  it("Entra has no federated credential for the subject → credentials.idp_rejected", async () => {
    const body = await expectProblem(await exchange(RESEARCH, "azure_other"), 403, "credentials.idp_rejected");
    expect(body).toMatchObject({ provider: "azure", cloudCode: "AADSTS700213" });
  });
});

describe("POST /api/v1/exchange/cache-key", () => {
  it("derives one key per identity, the same on every call, and only for agents", async () => {
    const key = async (sub: string) =>
      (
        (await (await api("/api/v1/exchange/cache-key", { method: "POST", bearer: await svid(sub) })).json()) as {
          cacheKey: { key: string };
        }
      ).cacheKey.key;
    const a1 = await key(RESEARCH);
    expect(await key(RESEARCH)).toBe(a1);
    expect(await key(INTERN)).not.toBe(a1);
    await expectProblem(await api("/api/v1/exchange/cache-key", { method: "POST" }), 403, "credentials.workload_required");
  });
});

describe("secrets stay out of the logs", () => {
  it("logs decisions and issuance without credentials or tokens", async () => {
    const res = await exchange(RESEARCH, "aws_s3");
    const body = (await res.json()) as { credentials: { secretAccessKey: string; sessionToken: string } };
    await exchange(RESEARCH, "aws_down");
    const text = logLines.join("");
    expect(text).toContain("issued cloud credentials");
    expect(text).toContain("credentials:exchange decision");
    expect(text).not.toContain(body.credentials.secretAccessKey);
    expect(text).not.toContain(body.credentials.sessionToken);
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/);
  });
});
