import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unsafeTenantScope, type Principal } from "../../auth/principal.js";
import type { Storage } from "../../storage/types.js";
import { sqliteFixture, type StorageFixture } from "../../test-support/storage.js";
import { isOfficialEndpoint } from "./endpoints.js";
import { ToolService } from "./service.js";
import { ToolStore, toolMigrations } from "./store.js";

const acme = unsafeTenantScope("t-acme", "acme-corp");
const tenantKey: Principal = { kind: "tenant-key", keyId: "k1", tenant: "acme-corp" };
const admin: Principal = { kind: "admin", keyId: "root" };
const ROLE = "arn:aws:iam::123456789012:role/agent";
const POOL = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/hexr-pool/providers/hexr-oidc";
const AZ = { tenantId: "contoso.onmicrosoft.com", clientId: "5b3c1d2e-0f4a-4b6c-8d7e-9f0a1b2c3d4e" };

let fixture: StorageFixture;
let storage: Storage;
let store: ToolStore;
let tools: ToolService;
let n = 0;
const name = () => `t${++n}`;

beforeAll(async () => {
  fixture = sqliteFixture();
  storage = await fixture.open();
  await storage.migrate(toolMigrations);
  store = new ToolStore(storage);
  tools = new ToolService({ store });
});
afterAll(async () => {
  await storage.close();
  await fixture.cleanup();
});

async function refusal(p: Promise<unknown>): Promise<{ code: string; details?: Record<string, unknown> }> {
  try {
    await p;
  } catch (err) {
    return err as { code: string; details?: Record<string, unknown> };
  }
  throw new Error("accepted");
}

describe("which endpoints a tool may name", () => {
  it("lets a tenant key use the clouds' defaults and their own regional, FIPS, VPC and PSC hosts", async () => {
    const specs = [
      { provider: "aws", config: { roleArn: ROLE, region: "us-east-1" } },
      { provider: "aws", config: { roleArn: ROLE, region: "eu-west-1", stsEndpoint: "https://sts.eu-west-1.amazonaws.com" } },
      {
        provider: "aws",
        config: { roleArn: ROLE, region: "us-east-1", stsEndpoint: "https://sts-fips.us-east-1.amazonaws.com" },
      },
      {
        provider: "aws",
        config: {
          roleArn: ROLE,
          region: "us-east-1",
          stsEndpoint: "https://vpce-0a1b2c3d-x1y2.sts.us-east-1.vpce.amazonaws.com",
        },
      },
      { provider: "gcp", config: { audience: POOL } },
      {
        provider: "gcp",
        config: {
          audience: POOL,
          tokenUrl: "https://sts-hexr1.p.googleapis.com/v1/token",
          iamCredentialsUrl: "https://iamcredentials.mtls.googleapis.com",
        },
      },
      { provider: "azure", config: AZ },
      { provider: "azure", config: { ...AZ, authorityHost: "https://login.microsoftonline.us" } },
    ] as const;
    for (const spec of specs) {
      const t = await tools.create(acme, { name: name(), ...spec } as never, tenantKey);
      expect(t.provider).toBe(spec.provider);
    }
  });

  it.each([
    ["aws", "stsEndpoint", "http://127.0.0.1:8080"],
    ["aws", "stsEndpoint", "https://169.254.169.254"],
    ["aws", "stsEndpoint", "https://abc123.execute-api.us-east-1.amazonaws.com"],
    ["aws", "stsEndpoint", "https://sts.amazonaws.com.evil.example"],
    ["aws", "stsEndpoint", "https://sts.amazonaws.com:8443"],
    ["aws", "stsEndpoint", "https://user:pw@sts.amazonaws.com"],
    ["aws", "stsEndpoint", "http://sts.amazonaws.com"],
    ["gcp", "tokenUrl", "https://collector.evil.example/v1/token"],
    ["gcp", "iamCredentialsUrl", "https://storage.googleapis.com"],
    ["azure", "authorityHost", "https://login.microsoftonline.com.evil.example"],
  ])("refuses a tenant key's %s %s %s, stores nothing, and lets an admin set it", async (provider, field, url) => {
    const base =
      provider === "aws" ? { roleArn: ROLE, region: "us-east-1" } : provider === "gcp" ? { audience: POOL } : { ...AZ };
    const req = { name: name(), provider, config: { ...base, [field]: url } } as never;
    const err = await refusal(tools.create(acme, req, tenantKey));
    expect(err).toMatchObject({ code: "credentials.endpoint_not_allowed", details: { field: `config.${field}` } });
    expect(await store.get(acme, (req as { name: string }).name)).toBeUndefined();
    expect((await tools.create(acme, req, admin)).config).toMatchObject({ [field]: url });
  });

  it("checks a replacement the same way", async () => {
    const t = name();
    await tools.create(acme, { name: t, provider: "aws", config: { roleArn: ROLE, region: "us-east-1" } }, tenantKey);
    const custom = {
      provider: "aws",
      config: { roleArn: ROLE, region: "us-east-1", stsEndpoint: "https://sts.attacker.example" },
    };
    expect(await refusal(tools.replace(acme, t, custom as never, tenantKey))).toMatchObject({
      code: "credentials.endpoint_not_allowed",
    });
    expect((await tools.resolve(acme, t)).config).not.toHaveProperty("stsEndpoint");
    expect((await tools.replace(acme, t, custom as never, admin)).config).toMatchObject({
      stsEndpoint: "https://sts.attacker.example",
    });
  });

  it("recognises only exact cloud hosts", () => {
    expect(isOfficialEndpoint("stsEndpoint", "https://sts.amazonaws.com")).toBe(true);
    expect(isOfficialEndpoint("stsEndpoint", "https://sts.cn-north-1.amazonaws.com.cn")).toBe(true);
    expect(isOfficialEndpoint("stsEndpoint", "https://sts.us-east-1.api.aws")).toBe(true);
    expect(isOfficialEndpoint("stsEndpoint", "https://evil-sts.amazonaws.com")).toBe(false);
    expect(isOfficialEndpoint("stsEndpoint", "https://bucket.s3-website-us-east-1.amazonaws.com")).toBe(false);
    expect(isOfficialEndpoint("tokenUrl", "https://sts.googleapis.com/v1/token")).toBe(true);
    expect(isOfficialEndpoint("tokenUrl", "https://iamcredentials.googleapis.com")).toBe(false);
    expect(isOfficialEndpoint("authorityHost", "https://login.chinacloudapi.cn")).toBe(true);
    expect(isOfficialEndpoint("unknownField", "https://sts.amazonaws.com")).toBe(false);
    expect(isOfficialEndpoint("stsEndpoint", "not a url")).toBe(false);
  });
});

describe("stored configurations", () => {
  it("refuses to use a stored tool whose token audience is a SPIFFE ID, with a typed error", async () => {
    // As a row written before the rule existed: the exchange must not mint a platform-valid token for a cloud.
    const now = Date.now();
    const config = {
      roleArn: ROLE,
      region: "us-east-1",
      sessionDurationSeconds: 900,
      tokenAudience: "spiffe://hexr.local/system/vault",
    };
    expect(
      await store.insert(acme, {
        name: "legacy",
        provider: "aws",
        config: JSON.stringify(config),
        created_at: now,
        updated_at: now,
      }),
    ).toBe(true);
    const err = await refusal(tools.resolve(acme, "legacy"));
    expect(err).toMatchObject({ code: "credentials.tool_invalid", details: { tool: "legacy" } });
    expect((err as unknown as Error).message).toContain("config.tokenAudience");
  });
});
