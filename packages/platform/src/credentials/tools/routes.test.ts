import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../../test-support/platform.js";

const AWS = {
  name: "aws_s3",
  provider: "aws",
  config: { roleArn: "arn:aws:iam::123456789012:role/agent", region: "us-east-1" },
};

for (const storage of ["sqlite", "postgres"] as const) {
  describe(`tool configuration over HTTP (${storage})`, () => {
    let p: TestPlatform;
    let acmeKey: string;
    beforeAll(async () => {
      p = await startTestPlatform({ storage });
      for (const name of ["acme-corp", "globex"])
        expect((await p.api("/api/v1/tenants", { method: "POST", json: { name } })).status).toBe(201);
      const key = await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "acme-corp", name: "ops" } });
      acmeKey = ((await key.json()) as { key: string }).key;
    });
    afterAll(async () => {
      await p.dispose();
    });

    it("adds, lists, gets, replaces and removes a tool, with defaults filled in", async () => {
      const created = await p.api("/api/v1/tenants/acme-corp/tools", { method: "POST", json: AWS, auth: acmeKey });
      expect(created.status).toBe(201);
      expect(created.headers.get("location")).toBe("/api/v1/tenants/acme-corp/tools/aws_s3");
      expect(await created.json()).toMatchObject({
        name: "aws_s3",
        tenant: "acme-corp",
        provider: "aws",
        config: {
          roleArn: AWS.config.roleArn,
          region: "us-east-1",
          sessionDurationSeconds: 900,
          tokenAudience: "sts.amazonaws.com",
        },
      });
      const gcp = {
        name: "gcs",
        provider: "gcp",
        config: {
          audience: "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/hexr-pool/providers/hexr-oidc",
          serviceAccount: "reports@proj.iam.gserviceaccount.com",
        },
      };
      expect((await p.api("/api/v1/tenants/acme-corp/tools", { method: "POST", json: gcp })).status).toBe(201);
      const list = (await (await p.api("/api/v1/tenants/acme-corp/tools", { auth: acmeKey })).json()) as {
        items: Array<{ name: string }>;
      };
      expect(list.items.map((t) => t.name)).toEqual(["aws_s3", "gcs"]);

      const replaced = await p.api("/api/v1/tenants/acme-corp/tools/aws_s3", {
        method: "PUT",
        json: { provider: "aws", config: { ...AWS.config, region: "eu-west-1", sessionDurationSeconds: 3600 } },
      });
      expect(replaced.status).toBe(200);
      expect(await replaced.json()).toMatchObject({ config: { region: "eu-west-1", sessionDurationSeconds: 3600 } });
      expect(await (await p.api("/api/v1/tenants/acme-corp/tools/aws_s3")).json()).toMatchObject({
        config: { region: "eu-west-1" },
      });

      expect((await p.api("/api/v1/tenants/acme-corp/tools/gcs", { method: "DELETE", auth: acmeKey })).status).toBe(204);
      const gone = await p.api("/api/v1/tenants/acme-corp/tools/gcs");
      expect(gone.status).toBe(404);
      expect(await gone.json()).toMatchObject({ code: "credentials.tool_not_found" });
      expect((await p.api("/api/v1/tenants/acme-corp/tools/gcs", { method: "DELETE" })).status).toBe(404);
    });

    it("refuses a duplicate with 409 and keeps the original", async () => {
      await p.api("/api/v1/tenants/acme-corp/tools", { method: "POST", json: { ...AWS, name: "dup" } });
      const again = await p.api("/api/v1/tenants/acme-corp/tools", {
        method: "POST",
        json: { ...AWS, name: "dup", config: { ...AWS.config, region: "ap-south-1" } },
      });
      expect(again.status).toBe(409);
      expect(await again.json()).toMatchObject({ code: "credentials.tool_exists" });
      expect(await (await p.api("/api/v1/tenants/acme-corp/tools/dup")).json()).toMatchObject({
        config: { region: "us-east-1" },
      });
    });

    it.each([
      ["a bad role ARN", { ...AWS, name: "t1", config: { ...AWS.config, roleArn: "arn:aws:iam::12:user/x" } }, "config.roleArn"],
      ["a bad region", { ...AWS, name: "t2", config: { ...AWS.config, region: "mars" } }, "config.region"],
      [
        "a session below 900 s",
        { ...AWS, name: "t3", config: { ...AWS.config, sessionDurationSeconds: 60 } },
        "config.sessionDurationSeconds",
      ],
      [
        "an STS endpoint that is not a URL",
        { ...AWS, name: "t4", config: { ...AWS.config, stsEndpoint: "ftp://x" } },
        "config.stsEndpoint",
      ],
      [
        "a token audience that is a SPIFFE ID (a platform-valid token must never go to a cloud)",
        { ...AWS, name: "t9", config: { ...AWS.config, tokenAudience: "spiffe://hexr.local/system/vault" } },
        "config.tokenAudience",
      ],
      ["an unknown config field", { ...AWS, name: "t5", config: { ...AWS.config, secretKey: "AKIA..." } }, "config"],
      ["an unknown provider", { name: "t6", provider: "oracle", config: {} }, "provider"],
      ["a bad tool name", { ...AWS, name: "Bad Name" }, "name"],
      [
        "a GCP audience that is not a pool provider",
        { name: "t7", provider: "gcp", config: { audience: "sts.googleapis.com" } },
        "config.audience",
      ],
      [
        "an Azure client id that is not a GUID",
        { name: "t8", provider: "azure", config: { tenantId: "contoso.onmicrosoft.com", clientId: "app" } },
        "config.clientId",
      ],
    ])("rejects %s with a 400 naming the field and stores nothing", async (_label, json, path) => {
      const res = await p.api("/api/v1/tenants/acme-corp/tools", { method: "POST", json });
      expect(res.status).toBe(400);
      const problem = (await res.json()) as { code: string; errors: Array<{ path: string }> };
      expect(problem.code).toBe("request.validation_failed");
      expect(problem.errors.map((e) => e.path)).toContain(path);
      const name = (json as { name: string }).name;
      if (/^[a-z][a-z0-9_-]*$/.test(name)) expect((await p.api(`/api/v1/tenants/acme-corp/tools/${name}`)).status).toBe(404);
    });

    it("lets only an admin key point a tool at an endpoint that is not the cloud's own", async () => {
      const custom = { ...AWS, name: "private_sts", config: { ...AWS.config, stsEndpoint: "https://sts.internal.example" } };
      const refused = await p.api("/api/v1/tenants/acme-corp/tools", { method: "POST", json: custom, auth: acmeKey });
      expect(refused.status).toBe(403);
      expect(await refused.json()).toMatchObject({
        code: "credentials.endpoint_not_allowed",
        field: "config.stsEndpoint",
      });
      expect((await p.api("/api/v1/tenants/acme-corp/tools/private_sts")).status).toBe(404);
      expect((await p.api("/api/v1/tenants/acme-corp/tools", { method: "POST", json: custom })).status).toBe(201);
      const official = {
        ...AWS,
        name: "regional_sts",
        config: { ...AWS.config, stsEndpoint: "https://sts.us-east-1.amazonaws.com" },
      };
      expect((await p.api("/api/v1/tenants/acme-corp/tools", { method: "POST", json: official, auth: acmeKey })).status).toBe(
        201,
      );
    });

    it("keeps tenants apart: another tenant's key is refused and tools are invisible across tenants", async () => {
      const cross = await p.api("/api/v1/tenants/globex/tools", { method: "POST", json: AWS, auth: acmeKey });
      expect(cross.status).toBe(403);
      expect((await p.api("/api/v1/tenants/globex/tools", { auth: acmeKey })).status).toBe(403);
      const globexList = (await (await p.api("/api/v1/tenants/globex/tools")).json()) as { items: unknown[] };
      expect(globexList.items).toEqual([]);
      expect((await p.api("/api/v1/tenants/globex/tools/aws_s3")).status).toBe(404);
      expect((await p.api("/api/v1/tenants/nope/tools")).status).toBe(404);
    });

    it("does not let an agent (JWT-SVID) configure tools, even in its own tenant", async () => {
      const svid = await p.identity.authority.mintJwtSvid("spiffe://hexr.local/agent/acme-corp/research/main", [
        "spiffe://hexr.local/system/platform",
      ]);
      const res = await p.api("/api/v1/tenants/acme-corp/tools", {
        method: "POST",
        json: { ...AWS, name: "sneaky" },
        auth: svid.token,
      });
      expect(res.status).toBe(403);
      expect(await res.json()).toMatchObject({ code: "credentials.forbidden" });
      expect((await p.api("/api/v1/tenants/acme-corp/tools/sneaky")).status).toBe(404);
    });

    it("removes a tenant's tools with the tenant", async () => {
      await p.api("/api/v1/tenants", { method: "POST", json: { name: "shortlived" } });
      await p.api("/api/v1/tenants/shortlived/tools", { method: "POST", json: AWS });
      expect((await p.api("/api/v1/tenants/shortlived", { method: "DELETE" })).status).toBe(204);
      await p.api("/api/v1/tenants", { method: "POST", json: { name: "shortlived" } });
      expect(((await (await p.api("/api/v1/tenants/shortlived/tools")).json()) as { items: unknown[] }).items).toEqual([]);
    });
  });
}
