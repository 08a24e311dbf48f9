/**
 * The cloud doubles against the clouds' own SDKs, with tokens minted by the platform's real
 * authority and discovered through its real OIDC endpoints: a test here passes only if the double
 * speaks the wire format the SDK expects and verifies the token like the cloud.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { AssumeRoleWithWebIdentityCommand, GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { IdentityPoolClient } from "google-auth-library";
import { request } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../test-support/platform.js";
import { startAwsStsDouble, type AwsStsDouble } from "./aws-sts.js";
import { startEntraDouble, type EntraDouble } from "./azure-entra.js";
import { startGcpStsDouble, type GcpStsDouble } from "./gcp-sts.js";
import { startS3Double, type S3Double } from "./s3.js";
import { selfSignedCertificate } from "./tls.js";

const AGENT = "spiffe://hexr.local/agent/acme-corp/research/main";
const OTHER_AGENT = "spiffe://hexr.local/agent/globex/research/main";
const ROLE = "arn:aws:iam::123456789012:role/agent";
const POOL = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/hexr-pool/providers/hexr-oidc";
const SA = "reports@proj.iam.gserviceaccount.com";

let p: TestPlatform;
let issuer: string;
let offsetMs = 0;
const cloudClock = () => Date.now() + offsetMs;

const mint = async (sub: string, aud: string, ttlSeconds = 120) =>
  (await p.identity.authority.mintJwtSvid(sub, [aud], { ttlSeconds })).token;
const anonymousCreds = { accessKeyId: "unused", secretAccessKey: "unused" };

beforeAll(async () => {
  p = await startTestPlatform();
  issuer = p.identity.authority.issuer!;
});
afterAll(async () => {
  await p.dispose();
});

describe("AWS STS + S3 double with @aws-sdk", () => {
  let sts: AwsStsDouble;
  let s3: S3Double;
  let client: STSClient;
  const assume = async (token: string, extra: { RoleArn?: string; DurationSeconds?: number } = {}) =>
    client.send(
      new AssumeRoleWithWebIdentityCommand({
        RoleArn: ROLE,
        RoleSessionName: "research.main",
        WebIdentityToken: token,
        ...extra,
      }),
    );

  beforeAll(async () => {
    sts = await startAwsStsDouble({
      providers: [{ url: issuer, clientIds: ["sts.amazonaws.com"] }],
      roles: [
        { arn: ROLE, trust: { provider: issuer, subjects: ["spiffe://hexr.local/agent/acme-corp/*"] } },
        { arn: "arn:aws:iam::123456789012:role/other", trust: { provider: issuer, subjects: ["*"] } },
      ],
      clock: cloudClock,
    });
    s3 = await startS3Double({ sts, buckets: { reports: [ROLE] }, clock: cloudClock });
    client = new STSClient({ region: "us-east-1", endpoint: sts.url, credentials: anonymousCreds });
  });
  afterAll(async () => {
    client.destroy();
    await s3.close();
    await sts.close();
  });

  it("assumes the role for a trusted SPIFFE ID and the credentials pass SigV4 on GetCallerIdentity", async () => {
    const out = await assume(await mint(AGENT, "sts.amazonaws.com"));
    expect(out.SubjectFromWebIdentityToken).toBe(AGENT);
    expect(out.AssumedRoleUser?.Arn).toBe("arn:aws:sts::123456789012:assumed-role/agent/research.main");
    const c = out.Credentials!;
    expect(c.AccessKeyId).toMatch(/^ASIA[A-Z0-9]{16}$/);
    expect(c.Expiration!.getTime() - Date.now()).toBeGreaterThan(3500_000);

    const signed = new STSClient({
      region: "us-east-1",
      endpoint: sts.url,
      credentials: { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! },
    });
    const who = await signed.send(new GetCallerIdentityCommand({}));
    expect(who.Arn).toBe(out.AssumedRoleUser?.Arn);
    signed.destroy();

    const forged = new STSClient({
      region: "us-east-1",
      endpoint: sts.url,
      credentials: { accessKeyId: c.AccessKeyId!, secretAccessKey: "x".repeat(40), sessionToken: c.SessionToken! },
    });
    await expect(forged.send(new GetCallerIdentityCommand({}))).rejects.toMatchObject({ name: "SignatureDoesNotMatch" });
    forged.destroy();
  });

  it("lets S3Client put, get and list with the credentials, and S3 refuses another role and a bad signature", async () => {
    const c = (await assume(await mint(AGENT, "sts.amazonaws.com"))).Credentials!;
    const creds = { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! };
    const s3c = new S3Client({ region: "us-east-1", endpoint: s3.url, forcePathStyle: true, credentials: creds });
    await s3c.send(new PutObjectCommand({ Bucket: "reports", Key: "q3/summary final.txt", Body: "revenue up" }));
    const got = await s3c.send(new GetObjectCommand({ Bucket: "reports", Key: "q3/summary final.txt" }));
    expect(await got.Body!.transformToString()).toBe("revenue up");
    const listed = await s3c.send(new ListObjectsV2Command({ Bucket: "reports", Prefix: "q3/" }));
    expect(listed.Contents?.map((o) => o.Key)).toEqual(["q3/summary final.txt"]);
    s3c.destroy();

    const other = (await assume(await mint(AGENT, "sts.amazonaws.com"), { RoleArn: "arn:aws:iam::123456789012:role/other" }))
      .Credentials!;
    const otherClient = new S3Client({
      region: "us-east-1",
      endpoint: s3.url,
      forcePathStyle: true,
      credentials: {
        accessKeyId: other.AccessKeyId!,
        secretAccessKey: other.SecretAccessKey!,
        sessionToken: other.SessionToken!,
      },
    });
    await expect(
      otherClient.send(new GetObjectCommand({ Bucket: "reports", Key: "q3/summary final.txt" })),
    ).rejects.toMatchObject({ name: "AccessDenied" });
    otherClient.destroy();

    const bad = new S3Client({
      region: "us-east-1",
      endpoint: s3.url,
      forcePathStyle: true,
      credentials: { ...creds, secretAccessKey: "y".repeat(40) },
    });
    await expect(bad.send(new GetObjectCommand({ Bucket: "reports", Key: "q3/summary final.txt" }))).rejects.toMatchObject({
      name: "SignatureDoesNotMatch",
    });
    bad.destroy();
  });

  it("rejects a wrong audience, an untrusted subject, an unknown issuer, a forged signature and an expired token like STS", async () => {
    await expect(assume(await mint(AGENT, "api://AzureADTokenExchange"))).rejects.toMatchObject({
      name: "InvalidIdentityTokenException",
      message: "Incorrect token audience",
    });
    await expect(assume(await mint(OTHER_AGENT, "sts.amazonaws.com"))).rejects.toMatchObject({
      name: "AccessDenied",
      $metadata: { httpStatusCode: 403 },
    });
    const good = await mint(AGENT, "sts.amazonaws.com");
    const [h, b, s] = good.split(".") as [string, string, string];
    const claims = JSON.parse(Buffer.from(b, "base64url").toString()) as Record<string, unknown>;
    const reissued = Buffer.from(JSON.stringify({ ...claims, iss: "https://evil.example" })).toString("base64url");
    await expect(assume(`${h}.${reissued}.${s}`)).rejects.toMatchObject({ name: "InvalidIdentityTokenException" });
    const widened = Buffer.from(
      JSON.stringify({ ...claims, sub: "spiffe://hexr.local/agent/acme-corp/admin/main", exp: Number(claims["exp"]) + 1 }),
    ).toString("base64url");
    await expect(assume(`${h}.${widened}.${s}`)).rejects.toMatchObject({ name: "InvalidIdentityTokenException" });
    await expect(assume(good, { DurationSeconds: 7200 })).rejects.toMatchObject({ name: "ValidationError" });

    offsetMs = 10 * 60_000;
    try {
      await expect(assume(good)).rejects.toMatchObject({ name: "ExpiredTokenException" });
    } finally {
      offsetMs = 0;
    }
    expect(sts.calls.filter((c) => c.outcome === "ok").every((c) => c.subject === AGENT)).toBe(true);
  });
});

describe("GCP STS double with google-auth-library", () => {
  let gcp: GcpStsDouble;
  const poolClient = (audience: string, sub: string, impersonate: boolean) =>
    new IdentityPoolClient({
      type: "external_account",
      audience: POOL,
      subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
      token_url: `${gcp.url}/v1/token`,
      ...(impersonate
        ? { service_account_impersonation_url: `${gcp.url}/v1/projects/-/serviceAccounts/${SA}:generateAccessToken` }
        : {}),
      subject_token_supplier: { getSubjectToken: () => mint(sub, audience) },
    });

  beforeAll(async () => {
    gcp = await startGcpStsDouble({
      providers: [{ name: POOL, issuerUri: issuer, subjectCondition: ["spiffe://hexr.local/agent/acme-corp/*"] }],
      serviceAccounts: [{ email: SA, workloadIdentityUsers: ["spiffe://hexr.local/agent/acme-corp/*"] }],
      buckets: { "acme-reports": [SA] },
      clock: cloudClock,
    });
  });
  afterAll(async () => {
    await gcp.close();
  });

  it("exchanges, impersonates the service account and calls Cloud Storage with the token", async () => {
    const client = poolClient(`https:${POOL}`, AGENT, true);
    const res = await client.request<{ kind: string }>({ url: `${gcp.url}/storage/v1/b/acme-reports/o` });
    expect(res.data.kind).toBe("storage#objects");
    expect(gcp.calls.map((c) => c.endpoint)).toEqual(expect.arrayContaining(["token", "generateAccessToken", "storage"]));
    expect(gcp.calls.find((c) => c.endpoint === "storage")?.principal).toBe(SA);
  });

  it("refuses a token for another audience and a subject outside the attribute condition", async () => {
    await expect(poolClient("sts.amazonaws.com", AGENT, false).getAccessToken()).rejects.toThrow(/audience/);
    await expect(poolClient(`https:${POOL}`, OTHER_AGENT, false).getAccessToken()).rejects.toThrow(/attribute condition/);
  });
});

describe("Entra token endpoint double over HTTPS", () => {
  let entra: EntraDouble;
  let ca: string;
  const TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
  const CLIENT = "5b3c1d2e-0f4a-4b6c-8d7e-9f0a1b2c3d4e";
  const post = (form: Record<string, string>, trust: string | undefined) =>
    new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
      const body = new URLSearchParams(form).toString();
      const req = request(
        `${entra.url}/${TENANT}/oauth2/v2.0/token`,
        { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, ...(trust ? { ca: trust } : {}) },
        (res) => {
          let text = "";
          res.on("data", (c: Buffer) => (text += c.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  const grant = async (sub: string, aud = "api://AzureADTokenExchange") => ({
    client_id: CLIENT,
    scope: "https://storage.azure.com/.default",
    grant_type: "client_credentials",
    client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    client_assertion: await mint(sub, aud),
  });

  beforeAll(async () => {
    const tls = selfSignedCertificate();
    ca = tls.cert;
    entra = await startEntraDouble({
      tls,
      apps: [
        {
          tenantId: TENANT,
          clientId: CLIENT,
          federatedCredentials: [{ issuer, subject: AGENT, audiences: ["api://AzureADTokenExchange"] }],
        },
      ],
      clock: cloudClock,
    });
  });
  afterAll(async () => {
    await entra.close();
  });

  it("issues a token for the federated credential's subject, only over TLS the client trusts", async () => {
    await expect(post(await grant(AGENT), undefined)).rejects.toThrow(/self-signed|certificate/);
    const ok = await post(await grant(AGENT), ca);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ token_type: "Bearer", expires_in: 3599 });
    expect(String(ok.body["access_token"]).split(".")).toHaveLength(3);
  });

  it("answers AADSTS errors for another subject, another audience and an expired assertion", async () => {
    const sub = await post(await grant(OTHER_AGENT), ca);
    expect(sub.status).toBe(400);
    expect(sub.body["error_codes"]).toEqual([700213]);
    const aud = await post(await grant(AGENT, "sts.amazonaws.com"), ca);
    expect(aud.body["error_codes"]).toEqual([700212]);
    const form = await grant(AGENT);
    offsetMs = 10 * 60_000;
    try {
      expect((await post(form, ca)).body["error_codes"]).toEqual([700024]);
    } finally {
      offsetMs = 0;
    }
  });
});
