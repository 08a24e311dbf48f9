import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../test-support/platform.js";

for (const storage of ["sqlite", "postgres"] as const) {
  describe(`tenants and API keys over HTTP (${storage})`, () => {
    let p: TestPlatform;
    beforeAll(async () => {
      p = await startTestPlatform({ storage });
    });
    afterAll(async () => {
      await p.dispose();
    });

    it("creates, gets, lists and deletes a tenant", async () => {
      const created = await p.api("/api/v1/tenants", { method: "POST", json: { name: "acme-corp", displayName: "Acme" } });
      expect(created.status).toBe(201);
      expect(created.headers.get("location")).toBe("/api/v1/tenants/acme-corp");
      const body = (await created.json()) as { name: string; displayName: string; id: string };
      expect(body).toMatchObject({ name: "acme-corp", displayName: "Acme" });

      const got = await p.api("/api/v1/tenants/acme-corp");
      expect(got.status).toBe(200);
      expect(((await got.json()) as { id: string }).id).toBe(body.id);

      const list = (await (await p.api("/api/v1/tenants")).json()) as { items: Array<{ name: string }> };
      expect(list.items.map((t) => t.name)).toContain("acme-corp");

      expect((await p.api("/api/v1/tenants/acme-corp", { method: "DELETE" })).status).toBe(204);
      const gone = await p.api("/api/v1/tenants/acme-corp");
      expect(gone.status).toBe(404);
      expect(gone.headers.get("content-type")).toBe("application/problem+json");
      expect(await gone.json()).toMatchObject({ code: "tenant.not_found", status: 404 });
    });

    it("refuses a duplicate tenant with 409 and keeps the original", async () => {
      await p.api("/api/v1/tenants", { method: "POST", json: { name: "dup-co", displayName: "First" } });
      const again = await p.api("/api/v1/tenants", { method: "POST", json: { name: "dup-co", displayName: "Second" } });
      expect(again.status).toBe(409);
      expect(await again.json()).toMatchObject({ code: "tenant.already_exists" });
      expect(await (await p.api("/api/v1/tenants/dup-co")).json()).toMatchObject({ displayName: "First" });
    });

    it.each([
      ["not a DNS label", { name: "Bad_Name" }, "name"],
      ["too long", { name: "a".repeat(64) }, "name"],
      ["wrong type", { name: 42 }, "name"],
      ["unknown field", { name: "ok-name", colour: "red" }, ""],
      ["missing name", {}, "name"],
    ])("rejects a body that is %s with a 400 naming the field", async (_label, json, path) => {
      const res = await p.api("/api/v1/tenants", { method: "POST", json });
      expect(res.status).toBe(400);
      const problem = (await res.json()) as { code: string; errors: Array<{ path: string; message: string }>; stack?: string };
      expect(problem.code).toBe("request.validation_failed");
      expect(problem.errors[0]!.path).toBe(path);
      expect(problem.stack).toBeUndefined();
      expect((await p.api("/api/v1/tenants/ok-name")).status).toBe(404);
    });

    it("rejects malformed JSON, a missing body, a wrong content type and an oversized body", async () => {
      const bad = await p.api("/api/v1/tenants", {
        method: "POST",
        body: "{not json",
        headers: { "content-type": "application/json" },
      });
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({ code: "request.invalid_json" });

      const empty = await p.api("/api/v1/tenants", { method: "POST", headers: { "content-type": "application/json" } });
      expect(await empty.json()).toMatchObject({ code: "request.body_required", status: 400 });

      const form = await p.api("/api/v1/tenants", { method: "POST", body: "name=x", headers: { "content-type": "text/plain" } });
      expect(form.status).toBe(415);

      const huge = await p.api("/api/v1/tenants", {
        method: "POST",
        body: JSON.stringify({ name: "x".repeat(2 * 1024 * 1024) }),
        headers: { "content-type": "application/json" },
      });
      expect(huge.status).toBe(413);
      expect(await huge.json()).toMatchObject({ code: "request.too_large" });
    });

    it("answers unknown routes with 404 and wrong methods with 405 + Allow", async () => {
      const nf = await p.api("/api/v1/nope");
      expect(nf.status).toBe(404);
      expect(await nf.json()).toMatchObject({ code: "request.not_found" });
      const wrong = await p.api("/api/v1/tenants", { method: "PUT", json: {} });
      expect(wrong.status).toBe(405);
      expect(wrong.headers.get("allow")).toContain("GET");
    });

    it("requires credentials and refuses bad ones with 401", async () => {
      expect((await p.api("/api/v1/tenants", { auth: null })).status).toBe(401);
      const bogus = await p.api("/api/v1/tenants", { auth: "hexr_aaaaaaaaaaaaaaaa_" + "A".repeat(43) });
      expect(bogus.status).toBe(401);
      expect(await bogus.json()).toMatchObject({ code: "auth.invalid_api_key" });
      expect((await p.api("/api/v1/tenants", { auth: "garbage" })).status).toBe(401);
    });

    it("scopes tenant keys to their tenant and lets admins revoke them", async () => {
      await p.api("/api/v1/tenants", { method: "POST", json: { name: "tenant-a" } });
      await p.api("/api/v1/tenants", { method: "POST", json: { name: "tenant-b" } });
      const res = await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "tenant-a", name: "a-key" } });
      expect(res.status).toBe(201);
      const { key, id } = (await res.json()) as { key: string; id: string };
      expect(key).toMatch(/^hexr_[a-z0-9]{16}_/);

      expect((await p.api("/api/v1/tenants/tenant-a", { auth: key })).status).toBe(200);
      const other = await p.api("/api/v1/tenants/tenant-b", { auth: key });
      expect(other.status).toBe(403);
      expect(await other.json()).toMatchObject({ code: "auth.forbidden" });
      const listed = (await (await p.api("/api/v1/tenants", { auth: key })).json()) as { items: Array<{ name: string }> };
      expect(listed.items.map((t) => t.name)).toEqual(["tenant-a"]);
      // A tenant key cannot mint admin keys or create tenants.
      expect((await p.api("/api/v1/keys", { method: "POST", auth: key, json: { scope: "admin" } })).status).toBe(403);
      expect((await p.api("/api/v1/tenants", { method: "POST", auth: key, json: { name: "evil" } })).status).toBe(403);

      const keys = (await (await p.api("/api/v1/keys")).json()) as { items: Array<Record<string, unknown>> };
      const listedKey = keys.items.find((k) => k["id"] === id)!;
      expect(listedKey).toBeDefined();
      expect(JSON.stringify(keys)).not.toContain(key.slice(22));
      expect(listedKey["hash"]).toBeUndefined();

      expect((await p.api(`/api/v1/keys/${id}`, { method: "DELETE" })).status).toBe(204);
      expect((await p.api("/api/v1/tenants/tenant-a", { auth: key })).status).toBe(401);
      const twice = await p.api(`/api/v1/keys/${id}`, { method: "DELETE" });
      expect(twice.status).toBe(409);
    });

    it("revokes a tenant's keys when the tenant is deleted", async () => {
      await p.api("/api/v1/tenants", { method: "POST", json: { name: "short-lived" } });
      const { key } = (await (
        await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "short-lived" } })
      ).json()) as {
        key: string;
      };
      expect((await p.api("/api/v1/tenants/short-lived", { auth: key })).status).toBe(200);
      await p.api("/api/v1/tenants/short-lived", { method: "DELETE" });
      expect((await p.api("/api/v1/tenants", { auth: key })).status).toBe(401);
    });

    it("validates key creation input", async () => {
      const noTenant = await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant" } });
      expect(noTenant.status).toBe(400);
      expect(((await noTenant.json()) as { errors: Array<{ path: string }> }).errors[0]!.path).toBe("tenant");
      const missing = await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "no-such-tenant" } });
      expect(missing.status).toBe(404);
      expect((await p.api("/api/v1/keys/NOT-AN-ID", { method: "DELETE" })).status).toBe(400);
      expect((await p.api("/api/v1/keys?includeRevoked=maybe")).status).toBe(400);
    });

    it("serves health, readiness and an OpenAPI 3.1 document generated from the schemas", async () => {
      expect(await (await p.api("/healthz", { auth: null })).json()).toEqual({ status: "ok" });
      const ready = await p.api("/readyz", { auth: null });
      expect(ready.status).toBe(200);
      expect(((await ready.json()) as { checks: Record<string, string> }).checks["storage"]).toBe("ok");
      const doc = (await (await p.api("/api/v1/openapi.json", { auth: null })).json()) as {
        openapi: string;
        paths: Record<
          string,
          Record<string, { requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown> } }> } }>
        >;
      };
      expect(doc.openapi).toBe("3.1.0");
      const create = doc.paths["/api/v1/tenants"]!["post"]!;
      expect(Object.keys(create.requestBody!.content["application/json"]!.schema.properties)).toEqual(["name", "displayName"]);
      expect(doc.paths["/api/v1/tenants/{tenant}"]!["get"]).toBeDefined();
    });

    it("echoes a sane request id and replaces an unsafe one", async () => {
      const ok = await p.api("/healthz", { headers: { "x-request-id": "abc-123" } });
      expect(ok.headers.get("x-request-id")).toBe("abc-123");
      const bad = await p.api("/healthz", { headers: { "x-request-id": "bad id with spaces" } });
      expect(bad.headers.get("x-request-id")).not.toBe("bad id with spaces");
    });
  });
}
