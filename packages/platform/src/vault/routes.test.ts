import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { startTestPlatform, type TestPlatform } from "../test-support/platform.js";
import { PG_URL } from "../test-support/storage.js";

const TD = "hexr.local";
const VAULT = `spiffe://${TD}/system/vault`;
const agentId = (tenant: string, agent = "bot", role = "main") => `spiffe://${TD}/agent/${tenant}/${agent}/${role}`;
const enc = encodeURIComponent;

for (const storage of ["sqlite", "postgres"] as const) {
  describe(`vault over HTTP with JWT-SVIDs (${storage})`, () => {
    const dataDir = mkdtempSync(join(tmpdir(), "hexr-vault-http-"));
    let p: TestPlatform & { pgSchema?: string };
    let pgSchema: string | undefined;
    let acmeKey: string;
    let globexKey: string;

    const svid = async (spiffeId: string, audience = [VAULT]) =>
      (await p.identity.authority.mintJwtSvid(spiffeId, audience)).token;
    const json = async (res: Response) => (await res.json()) as Record<string, unknown>;

    beforeAll(async () => {
      p = await startTestPlatform({ storage, dataDir });
      pgSchema = p.pgSchema;
      for (const name of ["acme", "globex"])
        expect((await p.api("/api/v1/tenants", { method: "POST", json: { name } })).status).toBe(201);
      const key = async (tenant: string) =>
        (
          (await (await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant, name: tenant } })).json()) as {
            key: string;
          }
        ).key;
      acmeKey = await key("acme");
      globexKey = await key("globex");
    });
    afterAll(async () => {
      await p.dispose();
      rmSync(dataDir, { recursive: true, force: true });
      if (pgSchema) {
        const c = new pg.Client({ connectionString: PG_URL });
        await c.connect();
        await c.query(`DROP SCHEMA IF EXISTS ${pgSchema} CASCADE`);
        await c.end();
      }
    });

    it("an operator writes, an agent reads with a JWT-SVID for the vault", async () => {
      const put = await p.api(`/api/v1/tenants/acme/secrets/${enc("db/password")}`, {
        method: "PUT",
        json: { value: "pg-pass-1" },
        auth: acmeKey,
      });
      expect(put.status).toBe(201);
      expect(await json(put)).toMatchObject({ name: "db/password", version: 1, sizeBytes: 9, destroyed: false });
      const got = await p.api(`/api/v1/tenants/acme/secrets/${enc("db/password")}`, { auth: await svid(agentId("acme")) });
      expect(got.status).toBe(200);
      expect(got.headers.get("cache-control")).toBe("no-store");
      expect(await json(got)).toMatchObject({ name: "db/password", version: 1, value: "pg-pass-1", encoding: "utf8" });
    });

    it("tenant A's agent can never read tenant B's secret", async () => {
      await p.api(`/api/v1/tenants/globex/secrets/${enc("db/password")}`, {
        method: "PUT",
        json: { value: "globex-pass" },
        auth: globexKey,
      });
      const token = await svid(agentId("acme"));
      for (const path of [
        `/api/v1/tenants/globex/secrets/${enc("db/password")}`,
        `/api/v1/tenants/globex/secrets/${enc("db/password")}?version=1`,
        "/api/v1/tenants/globex/secrets",
        `/api/v1/tenants/globex/secrets/${enc("db/password")}/versions`,
      ]) {
        const res = await p.api(path, { auth: token });
        expect(res.status, path).toBe(403);
        expect(JSON.stringify(await res.json())).not.toContain("globex-pass");
      }
      // ... and not with acme's operator key either.
      expect((await p.api(`/api/v1/tenants/globex/secrets/${enc("db/password")}`, { auth: acmeKey })).status).toBe(403);
      // A token for globex minted for an acme agent does not exist: the subject decides the tenant.
      const own = await p.api(`/api/v1/tenants/acme/secrets/${enc("db/password")}`, { auth: token });
      expect(((await own.json()) as { value: string }).value).toBe("pg-pass-1");
    });

    it("a JWT-SVID for another audience is refused with 401", async () => {
      const platformToken = await svid(agentId("acme"), [`spiffe://${TD}/system/platform`]);
      const res = await p.api(`/api/v1/tenants/acme/secrets/${enc("db/password")}`, { auth: platformToken });
      expect(res.status).toBe(401);
      expect(await json(res)).toMatchObject({ code: "vault.wrong_audience" });
      const foreign = await svid(agentId("acme"), ["spiffe://elsewhere.example/system/vault"]);
      expect((await p.api(`/api/v1/tenants/acme/secrets/${enc("db/password")}`, { auth: foreign })).status).toBe(401);
      expect((await p.api(`/api/v1/tenants/acme/secrets/${enc("db/password")}`, { auth: "garbage.token.here" })).status).toBe(
        401,
      );
    });

    it("agents cannot write without a policy: 403 problem+json", async () => {
      const res = await p.api(`/api/v1/tenants/acme/secrets/${enc("agents/bot/note")}`, {
        method: "PUT",
        json: { value: "x" },
        auth: await svid(agentId("acme")),
      });
      expect(res.status).toBe(403);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(await json(res)).toMatchObject({ code: "policy.denied" });
    });

    it("progressive enforcement: audit allows and logs, warn adds a header, enforce denies", async () => {
      await p.api(`/api/v1/tenants/acme/secrets/${enc("prod/db")}`, {
        method: "PUT",
        json: { value: "prod-pass" },
        auth: acmeKey,
      });
      const policy = `@id("no-prod") forbid (principal is Hexr::Agent, action == Hexr::Action::"vault:read", resource is Hexr::Secret) when { resource.name like "prod/*" };`;
      const apply = (mode: string) =>
        p.api("/api/v1/tenants/acme/policies/prod-guard", { method: "PUT", json: { policy, mode }, auth: acmeKey });
      const read = async () => p.api(`/api/v1/tenants/acme/secrets/${enc("prod/db")}`, { auth: await svid(agentId("acme")) });

      expect((await apply("audit")).status).toBe(201);
      const audited = await read();
      expect(audited.status).toBe(200);
      expect(audited.headers.get("hexr-policy-warning")).toBeNull();
      const log = await json(await p.api("/api/v1/tenants/acme/policies/decisions?flagged=true&limit=5", { auth: acmeKey }));
      expect((log["items"] as unknown[])[0]).toMatchObject({
        principal: agentId("acme"),
        action: "vault:read",
        resource: { type: "Secret", id: "prod/db" },
        allowed: true,
        effect: "deny",
        mode: "audit",
        flagged: true,
        policyIds: ["prod-guard#no-prod"],
      });

      expect((await apply("warn")).status).toBe(201);
      const warned = await read();
      expect(warned.status).toBe(200);
      expect(warned.headers.get("hexr-policy-warning")).toContain("prod-guard#no-prod");

      expect((await apply("enforce")).status).toBe(201);
      const denied = await read();
      expect(denied.status).toBe(403);
      expect(await json(denied)).toMatchObject({ code: "policy.denied", policyIds: ["prod-guard#no-prod"] });
      // other secrets are unaffected
      expect(
        (await p.api(`/api/v1/tenants/acme/secrets/${enc("db/password")}`, { auth: await svid(agentId("acme")) })).status,
      ).toBe(200);
    });

    it("lists metadata only and pages", async () => {
      for (const n of ["app/a", "app/b", "app/c"])
        await p.api(`/api/v1/tenants/acme/secrets/${enc(n)}`, { method: "PUT", json: { value: `v-${n}` }, auth: acmeKey });
      const first = await json(
        await p.api("/api/v1/tenants/acme/secrets?prefix=app/&limit=2", { auth: await svid(agentId("acme")) }),
      );
      expect((first["items"] as Array<{ name: string }>).map((i) => i.name)).toEqual(["app/a", "app/b"]);
      expect(first["nextAfter"]).toBe("app/b");
      expect(JSON.stringify(first)).not.toContain("v-app");
      const second = await json(
        await p.api(`/api/v1/tenants/acme/secrets?prefix=app/&limit=2&after=${enc("app/b")}`, { auth: acmeKey }),
      );
      expect((second["items"] as Array<{ name: string }>).map((i) => i.name)).toEqual(["app/c"]);
    });

    it("versions, destroy and delete", async () => {
      const path = `/api/v1/tenants/acme/secrets/${enc("rot/key")}`;
      await p.api(path, { method: "PUT", json: { value: "one" }, auth: acmeKey });
      await p.api(path, { method: "PUT", json: { value: "two" }, auth: acmeKey });
      expect(((await json(await p.api(`${path}?version=1`, { auth: acmeKey }))) as { value: string }).value).toBe("one");
      expect((await p.api(`${path}/versions/1`, { method: "DELETE", auth: acmeKey })).status).toBe(204);
      const destroyed = await p.api(`${path}?version=1`, { auth: acmeKey });
      expect(destroyed.status).toBe(404);
      expect(await json(destroyed)).toMatchObject({ code: "vault.version_destroyed" });
      const versions = await json(await p.api(`${path}/versions`, { auth: acmeKey }));
      expect((versions["items"] as Array<{ version: number; destroyed: boolean }>).map((v) => [v.version, v.destroyed])).toEqual([
        [1, true],
        [2, false],
      ]);
      expect((await p.api(path, { method: "DELETE", auth: acmeKey })).status).toBe(204);
      expect(await json(await p.api(path, { auth: acmeKey }))).toMatchObject({ code: "vault.secret_not_found" });
    });

    it("bad input: typed 4xx, nothing stored", async () => {
      const cases: Array<[string, RequestInit & { json?: unknown }, number, string]> = [
        [
          `/api/v1/tenants/acme/secrets/${enc("../etc")}`,
          { method: "PUT", json: { value: "x" } },
          400,
          "request.validation_failed",
        ],
        [`/api/v1/tenants/acme/secrets/${enc("ok")}`, { method: "PUT", json: { value: 5 } }, 400, "request.validation_failed"],
        [
          `/api/v1/tenants/acme/secrets/${enc("ok")}`,
          { method: "PUT", json: { value: "x", colour: "red" } },
          400,
          "request.validation_failed",
        ],
        [
          `/api/v1/tenants/acme/secrets/${enc("ok")}`,
          { method: "PUT", json: { value: "%%%", encoding: "base64" } },
          400,
          "vault.invalid_value",
        ],
        [
          `/api/v1/tenants/acme/secrets/${enc("ok")}`,
          { method: "PUT", json: { value: "x".repeat(70_000) } },
          413,
          "vault.value_too_large",
        ],
        [
          `/api/v1/tenants/acme/secrets/${enc("ok")}`,
          { method: "PUT", body: "{not json", headers: { "content-type": "application/json" } },
          400,
          "request.invalid_json",
        ],
        [`/api/v1/tenants/acme/secrets/${enc("ok")}?version=0`, {}, 400, "request.validation_failed"],
      ];
      for (const [path, init, status, code] of cases) {
        const res = await p.api(path, { ...init, auth: acmeKey });
        expect(res.status, `${path} ${JSON.stringify(init.json ?? "")}`.slice(0, 120)).toBe(status);
        expect(await json(res)).toMatchObject({ code });
      }
      expect((await p.api(`/api/v1/tenants/acme/secrets/${enc("ok")}`, { auth: acmeKey })).status).toBe(404);
    });

    it("the audit log names who read what, never values; agents cannot read it", async () => {
      const audit = await json(await p.api(`/api/v1/tenants/acme/vault/audit?name=${enc("db/password")}`, { auth: acmeKey }));
      const items = audit["items"] as Array<{ principal: string; action: string; outcome: string }>;
      expect(items.some((i) => i.principal === agentId("acme") && i.action === "vault:read" && i.outcome === "ok")).toBe(true);
      expect(JSON.stringify(audit)).not.toContain("pg-pass-1");
      expect((await p.api("/api/v1/tenants/acme/vault/audit", { auth: await svid(agentId("acme")) })).status).toBe(403);
      // The agent's refused write is there too; cross-tenant calls never get this far (the router refuses them).
      const all = await json(await p.api("/api/v1/tenants/acme/vault/audit?limit=1000", { auth: acmeKey }));
      expect(
        (all["items"] as Array<{ action: string; name: string; outcome: string }>).some(
          (i) => i.action === "vault:write" && i.name === "agents/bot/note" && i.outcome === "denied",
        ),
      ).toBe(true);
    });

    it("a stale compare-and-set is a 409 that does not echo the value", async () => {
      const res = await p.api(`/api/v1/tenants/acme/secrets/${enc("db/password")}`, {
        method: "PUT",
        json: { value: "cas-value", expectedVersion: 7 },
        auth: acmeKey,
      });
      expect(res.status).toBe(409);
      expect(await json(res)).toMatchObject({ code: "vault.version_mismatch" });
      expect(JSON.stringify(await res.json().catch(() => ({})))).not.toContain("cas-value");
    });

    it("a restart keeps secrets, versions, policies and the decision log", async () => {
      await p.close();
      p = await startTestPlatform({ storage, dataDir, ...(pgSchema ? { pgSchema } : {}) });
      const got = await p.api(`/api/v1/tenants/acme/secrets/${enc("db/password")}`, { auth: await svid(agentId("acme")) });
      expect(got.status).toBe(200);
      expect(((await got.json()) as { value: string }).value).toBe("pg-pass-1");
      expect((await p.api(`/api/v1/tenants/acme/secrets/${enc("prod/db")}`, { auth: await svid(agentId("acme")) })).status).toBe(
        403,
      );
      const policy = await json(await p.api("/api/v1/tenants/acme/policies/prod-guard", { auth: acmeKey }));
      expect(policy).toMatchObject({ name: "prod-guard", version: 3, mode: "enforce" });
      const log = await json(await p.api("/api/v1/tenants/acme/policies/decisions?flagged=true", { auth: acmeKey }));
      expect((log["items"] as unknown[]).length).toBeGreaterThanOrEqual(2);
    });
  });
}
