import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../test-support/platform.js";

const TD = "hexr.local";
const VAULT = `spiffe://${TD}/system/vault`;
const agentId = (tenant: string, agent = "bot", role = "main") => `spiffe://${TD}/agent/${tenant}/${agent}/${role}`;
const enc = encodeURIComponent;

const PROD_GUARD = `@id("no-prod")
forbid (principal is Hexr::Agent, action == Hexr::Action::"vault:read", resource is Hexr::Secret)
when { resource.name like "prod/*" && principal.agent != "deployer" };`;

for (const storage of ["sqlite", "postgres"] as const) {
  describe(`policy REST API (${storage})`, () => {
    let p: TestPlatform;
    let acmeKey: string;
    const json = async (res: Response) => (await res.json()) as Record<string, unknown>;
    const api = (path: string, init: Parameters<TestPlatform["api"]>[1] = {}) => p.api(path, { auth: acmeKey, ...init });
    const svid = async (spiffeId: string) => (await p.identity.authority.mintJwtSvid(spiffeId, [VAULT])).token;

    beforeAll(async () => {
      p = await startTestPlatform({ storage });
      for (const name of ["acme", "globex"]) await p.api("/api/v1/tenants", { method: "POST", json: { name } });
      acmeKey = (
        (await (await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "acme" } })).json()) as {
          key: string;
        }
      ).key;
    });
    afterAll(async () => {
      await p.dispose();
    });

    it("apply creates versions; re-applying the same text is a no-op; get, versions, list, delete", async () => {
      const first = await api("/api/v1/tenants/acme/policies/prod-guard", {
        method: "PUT",
        json: { policy: PROD_GUARD, mode: "audit", description: "keep agents off prod" },
      });
      expect(first.status).toBe(201);
      expect(await json(first)).toMatchObject({
        name: "prod-guard",
        version: 1,
        mode: "audit",
        unchanged: false,
        policyIds: ["prod-guard#no-prod"],
      });
      const same = await api("/api/v1/tenants/acme/policies/prod-guard", {
        method: "PUT",
        json: { policy: PROD_GUARD, mode: "audit", description: "keep agents off prod" },
      });
      expect(same.status).toBe(200);
      expect(await json(same)).toMatchObject({ version: 1, unchanged: true });
      expect(
        await json(
          await api("/api/v1/tenants/acme/policies/prod-guard", { method: "PUT", json: { policy: PROD_GUARD, mode: "enforce" } }),
        ),
      ).toMatchObject({ version: 2 });

      expect(await json(await api("/api/v1/tenants/acme/policies/prod-guard"))).toMatchObject({
        version: 2,
        mode: "enforce",
        policy: PROD_GUARD,
      });
      expect(await json(await api("/api/v1/tenants/acme/policies/prod-guard?version=1"))).toMatchObject({
        version: 1,
        mode: "audit",
      });
      const list = await json(await api("/api/v1/tenants/acme/policies"));
      expect((list["items"] as Array<{ name: string }>).map((i) => i.name)).toEqual(["prod-guard"]);

      await api("/api/v1/tenants/acme/policies/tmp", {
        method: "PUT",
        json: { policy: "permit (principal is Hexr::Admin, action, resource);" },
      });
      expect((await api("/api/v1/tenants/acme/policies/tmp", { method: "DELETE" })).status).toBe(204);
      expect(await json(await api("/api/v1/tenants/acme/policies/tmp"))).toMatchObject({ code: "policy.not_found" });
      const history = await json(await api("/api/v1/tenants/acme/policies/tmp/versions"));
      expect((history["items"] as Array<{ version: number; deleted: boolean }>).map((v) => [v.version, v.deleted])).toEqual([
        [1, false],
        [2, true],
      ]);
      expect((await api("/api/v1/tenants/acme/policies/tmp", { method: "DELETE" })).status).toBe(404);
    });

    it("invalid policies: 400 with Cedar's parse error, 422 with the validator's text; nothing stored", async () => {
      const syntax = await api("/api/v1/tenants/acme/policies/bad", {
        method: "PUT",
        json: { policy: "permit (principal, action, resource) when { principal.tenant == };" },
      });
      expect(syntax.status).toBe(400);
      expect(syntax.headers.get("content-type")).toBe("application/problem+json");
      const s = await json(syntax);
      expect(s).toMatchObject({ code: "policy.invalid_syntax" });
      expect((s["errors"] as Array<{ path: string }>)[0]!.path).toMatch(/^1:\d+$/);

      const schema = await api("/api/v1/tenants/acme/policies/bad", {
        method: "PUT",
        json: {
          policy: `permit (principal is Hexr::Agent, action == Hexr::Action::"vault:read", resource) when { principal.department == "x" };`,
        },
      });
      expect(schema.status).toBe(422);
      const v = await json(schema);
      expect(v).toMatchObject({ code: "policy.schema_violation" });
      expect(String(v["detail"])).toContain("department");

      for (const [name, body, status] of [
        ["Bad_Name", { policy: "permit (principal, action, resource);" }, 400],
        ["decisions", { policy: "permit (principal, action, resource);" }, 400],
        ["ok", { policy: "permit (principal, action, resource);", mode: "sometimes" }, 400],
        ["ok", { policy: "" }, 400],
        ["ok", { policy: "permit (principal, action, resource);", extra: 1 }, 400],
      ] as const) {
        expect(
          (await api(`/api/v1/tenants/acme/policies/${name}`, { method: "PUT", json: body })).status,
          `${name} ${JSON.stringify(body)}`,
        ).toBe(status);
      }
      expect((await api("/api/v1/tenants/acme/policies/bad")).status).toBe(404);
      expect((await api("/api/v1/tenants/acme/policies/ok")).status).toBe(404);
    });

    it("agents cannot manage or read policies; other tenants' keys cannot either", async () => {
      const token = await svid(agentId("acme"));
      expect((await p.api("/api/v1/tenants/acme/policies", { auth: token })).status).toBe(403);
      expect(
        (
          await p.api("/api/v1/tenants/acme/policies/x", {
            method: "PUT",
            json: { policy: "permit (principal, action, resource);" },
            auth: token,
          })
        ).status,
      ).toBe(403);
      const globexKey = (
        (await (await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "globex" } })).json()) as {
          key: string;
        }
      ).key;
      expect((await p.api("/api/v1/tenants/acme/policies", { auth: globexKey })).status).toBe(403);
    });

    it("policy test evaluates without side effects, with or without a candidate", async () => {
      const before = await json(await api("/api/v1/tenants/acme/policies/decisions?limit=1000"));
      const test = (body: unknown) => api("/api/v1/tenants/acme/policies/test", { method: "POST", json: body });
      const denied = await json(
        await test({ principal: agentId("acme"), action: "vault:read", resource: { type: "Secret", id: "prod/db" } }),
      );
      expect(denied).toMatchObject({ allowed: false, effect: "deny", policyIds: ["prod-guard#no-prod"] });
      const deployer = await json(
        await test({ principal: agentId("acme", "deployer"), action: "vault:read", resource: { type: "Secret", id: "prod/db" } }),
      );
      expect(deployer).toMatchObject({ allowed: true });
      const withCandidate = await json(
        await test({
          principal: agentId("acme"),
          action: "vault:read",
          resource: { type: "Secret", id: "prod/db" },
          candidate: { name: "prod-guard", policy: PROD_GUARD, mode: "warn" },
        }),
      );
      expect(withCandidate).toMatchObject({ allowed: true, flagged: true, mode: "warn" });
      expect(
        await json(await test({ principal: "tenant-key", action: "vault:write", resource: { type: "Secret", id: "a" } })),
      ).toMatchObject({ allowed: true });
      // bad requests are 400s
      expect((await test({ principal: "nobody", action: "vault:read", resource: { type: "Secret", id: "a" } })).status).toBe(400);
      expect(
        await json(await test({ principal: agentId("acme"), action: "vault:fly", resource: { type: "Secret", id: "a" } })),
      ).toMatchObject({ code: "policy.unknown_action" });
      const after = await json(await api("/api/v1/tenants/acme/policies/decisions?limit=1000"));
      expect((after["items"] as unknown[]).length).toBe((before["items"] as unknown[]).length);
      // the active policy did not change
      expect(await json(await api("/api/v1/tenants/acme/policies/prod-guard"))).toMatchObject({ version: 2, mode: "enforce" });
    });

    it("the decision log records every decision and filters; replay reports changes per agent", async () => {
      await api(`/api/v1/tenants/acme/secrets/${enc("prod/db")}`, { method: "PUT", json: { value: "p" } });
      await api(`/api/v1/tenants/acme/secrets/${enc("dev/db")}`, { method: "PUT", json: { value: "d" } });
      const bot = await svid(agentId("acme", "bot"));
      const deployer = await svid(agentId("acme", "deployer"));
      const read = (token: string, name: string) => p.api(`/api/v1/tenants/acme/secrets/${enc(name)}`, { auth: token });
      expect((await read(bot, "prod/db")).status).toBe(403);
      expect((await read(bot, "dev/db")).status).toBe(200);
      expect((await read(bot, "dev/db")).status).toBe(200);
      expect((await read(deployer, "prod/db")).status).toBe(200);

      const denied = await json(
        await api(`/api/v1/tenants/acme/policies/decisions?allowed=false&principal=${enc(agentId("acme", "bot"))}`),
      );
      const items = denied["items"] as Array<Record<string, unknown>>;
      expect(items[0]).toMatchObject({
        action: "vault:read",
        resource: { type: "Secret", id: "prod/db" },
        allowed: false,
        mode: "enforce",
      });
      expect(typeof items[0]!["evaluationMicros"]).toBe("number");
      const page = await json(await api("/api/v1/tenants/acme/policies/decisions?limit=2"));
      expect((page["items"] as unknown[]).length).toBe(2);
      const next = await json(
        await api(`/api/v1/tenants/acme/policies/decisions?limit=2&before=${page["nextBefore"] as string}`),
      );
      expect((next["items"] as Array<{ id: string }>)[0]!.id < (page["items"] as Array<{ id: string }>)[1]!.id).toBe(true);

      // Candidate: also forbid dev/* to everyone but the deployer, and let the bot read prod.
      const candidate = `forbid (principal is Hexr::Agent, action == Hexr::Action::"vault:read", resource is Hexr::Secret)
when { resource.name like "dev/*" && principal.agent != "deployer" };`;
      const replay = await json(
        await api("/api/v1/tenants/acme/policies/replay", {
          method: "POST",
          json: { name: "prod-guard", policy: candidate, since: "1h" },
        }),
      );
      expect(replay).toMatchObject({ truncated: false, errors: 0 });
      const byPrincipal = replay["byPrincipal"] as Array<{
        principal: string;
        allowedToDenied: number;
        deniedToAllowed: number;
        changes: Array<Record<string, unknown>>;
      }>;
      const botChanges = byPrincipal.find((b) => b.principal === agentId("acme", "bot"))!;
      expect(botChanges.allowedToDenied).toBeGreaterThanOrEqual(2);
      expect(botChanges.deniedToAllowed).toBeGreaterThanOrEqual(1);
      expect(botChanges.changes).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            action: "vault:read",
            resource: { type: "Secret", id: "dev/db" },
            before: true,
            after: false,
          }),
          expect.objectContaining({
            action: "vault:read",
            resource: { type: "Secret", id: "prod/db" },
            before: false,
            after: true,
          }),
        ]),
      );
      expect(byPrincipal.find((b) => b.principal === agentId("acme", "deployer"))).toBeUndefined();
      // Replay changed nothing.
      expect(await json(await api("/api/v1/tenants/acme/policies/prod-guard"))).toMatchObject({ version: 2 });
      expect((await read(bot, "dev/db")).status).toBe(200);

      expect(
        (
          await api("/api/v1/tenants/acme/policies/replay", {
            method: "POST",
            json: { name: "x", policy: candidate, since: "yesterday" },
          })
        ).status,
      ).toBe(400);
      expect(
        (await api("/api/v1/tenants/acme/policies/replay", { method: "POST", json: { name: "x", policy: "permit (" } })).status,
      ).toBe(400);
    });

    it("the schema endpoint serves the schema and the baseline", async () => {
      const s = await json(await api("/api/v1/policies/schema"));
      expect(String(s["schema"])).toContain("namespace Hexr");
      expect(Object.keys(s["baseline"] as object)).toContain("baseline:tenant-isolation");
    });
  });
}
