import { randomBytes } from "node:crypto";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Principal, TenantScope } from "../auth/principal.js";
import { createPolicyModule, type PolicyModule } from "../policy/module.js";
import type { Storage } from "../storage/types.js";
import { apiKeyMigrations } from "../apikeys/store.js";
import { TenantService } from "../tenants/service.js";
import { TenantStore, tenantMigrations } from "../tenants/store.js";
import { storageFixtures, type StorageFixture } from "../test-support/storage.js";
import { masterKeyId } from "./envelope.js";
import { TenantKeyring } from "./keyring.js";
import { VaultService, type VaultCaller } from "./service.js";
import { VaultStore, vaultMigrations } from "./store.js";

const log = pino({ level: "silent" });
const VAULT_ID = "spiffe://hexr.local/system/vault";

const agent = (tenant: string, name = "bot", audience = [VAULT_ID]): Principal => ({
  kind: "workload",
  spiffeId: `spiffe://hexr.local/agent/${tenant}/${name}/main`,
  trustDomain: "hexr.local",
  tenant,
  agent: name,
  role: "main",
  audience,
  via: "jwt-svid",
});
const operator = (tenant: string): Principal => ({ kind: "tenant-key", keyId: `key-${tenant}`, tenant });

for (const makeFixture of storageFixtures) {
  describe(`vault service (${makeFixture().name})`, () => {
    let fx: StorageFixture;
    let db: Storage;
    let tenants: TenantService;
    let policy: PolicyModule;
    let store: VaultStore;
    let masterKey: Buffer;
    let vault: VaultService;
    let acme: TenantScope;
    let globex: TenantScope;

    const open = async (key: Buffer, previous: Buffer[] = []) => {
      const keyring = new TenantKeyring({ store, masterKey: key, previousMasterKeys: previous });
      return { keyring, vault: new VaultService({ store, keyring, policy: policy.engine, log, vaultId: VAULT_ID }) };
    };
    const as = (principal: Principal, scope: TenantScope): VaultCaller => ({ principal, scope });

    beforeEach(async () => {
      fx = makeFixture();
      db = await fx.open();
      tenants = new TenantService({ store: new TenantStore(db) });
      policy = createPolicyModule({ storage: db, log, tenants });
      await db.migrate([...tenantMigrations, ...apiKeyMigrations, ...(policy.migrations ?? []), ...vaultMigrations]);
      await tenants.create({ name: "acme" });
      await tenants.create({ name: "globex" });
      acme = await tenants.scope("acme");
      globex = await tenants.scope("globex");
      store = new VaultStore(db);
      masterKey = randomBytes(32);
      ({ vault } = await open(masterKey));
    });
    afterEach(async () => {
      await vault.close();
      await policy.stop?.();
      await db.close();
      await fx.cleanup();
    });

    it("writes versions and reads them back; the database holds no plaintext", async () => {
      const v1 = await vault.put(as(operator("acme"), acme), "db/password", { value: "hunter2-first" });
      const v2 = await vault.put(as(operator("acme"), acme), "db/password", { value: "hunter2-second" });
      expect([v1.result.version, v2.result.version]).toEqual([1, 2]);
      expect((await vault.get(as(agent("acme"), acme), "db/password")).result).toMatchObject({
        version: 2,
        value: "hunter2-second",
      });
      expect((await vault.get(as(agent("acme"), acme), "db/password", 1)).result.value).toBe("hunter2-first");
      const dump =
        JSON.stringify(await db.all("SELECT * FROM vault_versions")) +
        JSON.stringify(await db.all("SELECT * FROM vault_tenant_keys"));
      expect(dump).not.toContain("hunter2");
      expect(dump).not.toContain(Buffer.from("hunter2").toString("base64").slice(0, 8));
    });

    it("stores binary values as given (base64 in, base64 out)", async () => {
      const bytes = randomBytes(300);
      await vault.put(as(operator("acme"), acme), "tls/key", { value: bytes.toString("base64"), encoding: "base64" });
      const got = (await vault.get(as(agent("acme"), acme), "tls/key")).result;
      expect(got.encoding).toBe("base64");
      expect(Buffer.from(got.value, "base64").equals(bytes)).toBe(true);
    });

    it("tenant A's agent can never read tenant B's secret", async () => {
      await vault.put(as(operator("globex"), globex), "db/password", { value: "globex-secret" });
      // Even handed B's scope (which the router would never do), the policy engine refuses.
      await expect(vault.get(as(agent("acme"), globex), "db/password")).rejects.toMatchObject({
        code: "policy.denied",
        kind: "permission_denied",
      });
      await expect(vault.list(as(agent("acme"), globex))).rejects.toMatchObject({ code: "policy.denied" });
      await expect(vault.get(as(operator("acme"), globex), "db/password")).rejects.toMatchObject({ code: "policy.denied" });
      // In its own tenant the same name is simply another secret.
      await expect(vault.get(as(agent("acme"), acme), "db/password")).rejects.toMatchObject({ code: "vault.secret_not_found" });
    });

    it("agents read by default but need a policy to write", async () => {
      await expect(vault.put(as(agent("acme"), acme), "x", { value: "v" })).rejects.toMatchObject({ code: "policy.denied" });
      await policy.service.apply(
        acme,
        "bot-writes",
        {
          policy: `permit (principal is Hexr::Agent, action == Hexr::Action::"vault:write", resource) when { resource.name like "agents/bot/*" };`,
        },
        operator("acme"),
      );
      expect((await vault.put(as(agent("acme"), acme), "agents/bot/token", { value: "v" })).result.version).toBe(1);
      await expect(vault.put(as(agent("acme"), acme), "shared/token", { value: "v" })).rejects.toMatchObject({
        code: "policy.denied",
      });
    });

    it("refuses a JWT-SVID addressed to another service", async () => {
      await vault.put(as(operator("acme"), acme), "a", { value: "v" });
      const wrongAud = agent("acme", "bot", ["spiffe://hexr.local/system/platform"]);
      await expect(vault.get(as(wrongAud, acme), "a")).rejects.toMatchObject({
        code: "vault.wrong_audience",
        kind: "unauthenticated",
      });
      // An mTLS caller has no audience to check.
      const mtls: Principal = {
        kind: "workload",
        spiffeId: "spiffe://hexr.local/agent/acme/bot/main",
        trustDomain: "hexr.local",
        tenant: "acme",
        via: "x509-svid",
      };
      expect((await vault.get(as(mtls, acme), "a")).result.value).toBe("v");
    });

    it("lists metadata only, by prefix, with tombstones on request", async () => {
      for (const n of ["db/password", "db/user", "api/openai", "db_x"])
        await vault.put(as(operator("acme"), acme), n, { value: `value-of-${n}` });
      await vault.delete(as(operator("acme"), acme), "db/user");
      const db1 = (await vault.list(as(agent("acme"), acme), { prefix: "db/" })).result;
      expect(db1.map((s) => s.name)).toEqual(["db/password"]);
      expect(JSON.stringify(db1)).not.toContain("value-of");
      const all = (await vault.list(as(operator("acme"), acme), { includeDeleted: true })).result;
      expect(all.map((s) => [s.name, s.deleted])).toEqual([
        ["api/openai", false],
        ["db/password", false],
        ["db/user", true],
        ["db_x", false],
      ]);
      const page = (await vault.list(as(operator("acme"), acme), { after: "api/openai", limit: 1 })).result;
      expect(page.map((s) => s.name)).toEqual(["db/password"]);
    });

    it("delete keeps a tombstone; a new write revives the secret with the next version", async () => {
      await vault.put(as(operator("acme"), acme), "k", { value: "one" });
      await vault.delete(as(operator("acme"), acme), "k");
      await expect(vault.get(as(operator("acme"), acme), "k")).rejects.toMatchObject({ code: "vault.secret_not_found" });
      await expect(vault.delete(as(operator("acme"), acme), "k")).rejects.toMatchObject({ code: "vault.secret_not_found" });
      expect((await vault.versions(as(operator("acme"), acme), "k")).result.map((v) => v.version)).toEqual([1]);
      expect((await vault.put(as(operator("acme"), acme), "k", { value: "two" })).result.version).toBe(2);
      expect((await vault.get(as(operator("acme"), acme), "k")).result.value).toBe("two");
    });

    it("destroying a version erases its ciphertext for good", async () => {
      await vault.put(as(operator("acme"), acme), "k", { value: "one" });
      await vault.put(as(operator("acme"), acme), "k", { value: "two" });
      await vault.destroy(as(operator("acme"), acme), "k", 1);
      const row = await db.get<{ ciphertext: string | null; wrapped_data_key: string | null }>(
        "SELECT ciphertext, wrapped_data_key FROM vault_versions WHERE tenant_id = ? AND name = ? AND version = 1",
        [acme.tenantId, "k"],
      );
      expect(row).toEqual({ ciphertext: null, wrapped_data_key: null });
      await expect(vault.get(as(operator("acme"), acme), "k", 1)).rejects.toMatchObject({ code: "vault.version_destroyed" });
      expect((await vault.get(as(operator("acme"), acme), "k")).result.value).toBe("two");
      await expect(vault.destroy(as(operator("acme"), acme), "k", 1)).rejects.toMatchObject({ code: "vault.version_destroyed" });
      await expect(vault.destroy(as(operator("acme"), acme), "k", 9)).rejects.toMatchObject({ code: "vault.secret_not_found" });
      const versions = (await vault.versions(as(operator("acme"), acme), "k")).result;
      expect(versions.map((v) => [v.version, v.destroyed])).toEqual([
        [1, true],
        [2, false],
      ]);
    });

    it("compare-and-set writes refuse a stale expected version", async () => {
      await vault.put(as(operator("acme"), acme), "k", { value: "one", expectedVersion: 0 });
      await expect(vault.put(as(operator("acme"), acme), "k", { value: "x", expectedVersion: 0 })).rejects.toMatchObject({
        code: "vault.version_mismatch",
      });
      expect((await vault.put(as(operator("acme"), acme), "k", { value: "two", expectedVersion: 1 })).result.version).toBe(2);
    });

    it("concurrent writers of one secret each get their own version", async () => {
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => vault.put(as(operator("acme"), acme), "race", { value: `v${i}` })),
      );
      expect(results.map((r) => r.result.version).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    });

    it("rejects bad names and values with typed errors and stores nothing", async () => {
      for (const bad of ["", "a//b", "../etc", "a/./b", "/lead", "trail/", "sp ace", "x".repeat(257)]) {
        await expect(vault.put(as(operator("acme"), acme), bad, { value: "v" })).rejects.toMatchObject({
          code: "vault.invalid_name",
          kind: "invalid_argument",
        });
      }
      await expect(
        vault.put(as(operator("acme"), acme), "b", { value: "not base64!", encoding: "base64" }),
      ).rejects.toMatchObject({ code: "vault.invalid_value" });
      await expect(vault.put(as(operator("acme"), acme), "b", { value: "x".repeat(64 * 1024 + 1) })).rejects.toMatchObject({
        code: "vault.value_too_large",
      });
      expect(await db.all("SELECT name FROM vault_secrets")).toEqual([]);
    });

    describe("integrity: errors, never garbage", () => {
      beforeEach(async () => {
        await vault.put(as(operator("acme"), acme), "a", { value: "value-a" });
        await vault.put(as(operator("acme"), acme), "b", { value: "value-b" });
        await vault.put(as(operator("globex"), globex), "a", { value: "globex-a" });
      });

      const read = (scope: TenantScope, name: string, version?: number) =>
        vault.get(as(operator(scope.tenant), scope), name, version);
      const expectIntegrityError = async (p: Promise<unknown>) => {
        await expect(p).rejects.toMatchObject({ code: expect.stringMatching(/^(vault\.integrity_error|keys\.decrypt_failed)$/) });
      };

      it("a flipped bit in a ciphertext", async () => {
        const row = (await db.get<{ ciphertext: string }>(
          "SELECT ciphertext FROM vault_versions WHERE tenant_id = ? AND name = 'a'",
          [acme.tenantId],
        ))!;
        const buf = Buffer.from(row.ciphertext, "base64");
        buf[buf.length - 1]! ^= 0x01;
        await db.run("UPDATE vault_versions SET ciphertext = ? WHERE tenant_id = ? AND name = 'a'", [
          buf.toString("base64"),
          acme.tenantId,
        ]);
        await expectIntegrityError(read(acme, "a"));
        expect((await read(acme, "b")).result.value).toBe("value-b");
      });

      it("a tampered wrapped data key", async () => {
        const row = (await db.get<{ k: string }>(
          "SELECT wrapped_data_key AS k FROM vault_versions WHERE tenant_id = ? AND name = 'a'",
          [acme.tenantId],
        ))!;
        const buf = Buffer.from(row.k, "base64");
        buf[20]! ^= 0x80;
        await db.run("UPDATE vault_versions SET wrapped_data_key = ? WHERE tenant_id = ? AND name = 'a'", [
          buf.toString("base64"),
          acme.tenantId,
        ]);
        await expectIntegrityError(read(acme, "a"));
      });

      it("swapped rows between two secrets of a tenant (wrong AAD: name)", async () => {
        const rows = await db.all<{ name: string; k: string; c: string }>(
          "SELECT name, wrapped_data_key AS k, ciphertext AS c FROM vault_versions WHERE tenant_id = ? ORDER BY name",
          [acme.tenantId],
        );
        const [a, b] = rows as [{ k: string; c: string }, { k: string; c: string }];
        await db.run("UPDATE vault_versions SET wrapped_data_key = ?, ciphertext = ? WHERE tenant_id = ? AND name = 'a'", [
          b.k,
          b.c,
          acme.tenantId,
        ]);
        await db.run("UPDATE vault_versions SET wrapped_data_key = ?, ciphertext = ? WHERE tenant_id = ? AND name = 'b'", [
          a.k,
          a.c,
          acme.tenantId,
        ]);
        await expectIntegrityError(read(acme, "a"));
        await expectIntegrityError(read(acme, "b"));
      });

      it("a row moved to another version number (wrong AAD: version)", async () => {
        await vault.put(as(operator("acme"), acme), "a", { value: "value-a2" });
        const v1 = (await db.get<{ k: string; c: string }>(
          "SELECT wrapped_data_key AS k, ciphertext AS c FROM vault_versions WHERE tenant_id = ? AND name = 'a' AND version = 1",
          [acme.tenantId],
        ))!;
        await db.run(
          "UPDATE vault_versions SET wrapped_data_key = ?, ciphertext = ? WHERE tenant_id = ? AND name = 'a' AND version = 2",
          [v1.k, v1.c, acme.tenantId],
        );
        await expectIntegrityError(read(acme, "a"));
        expect((await read(acme, "a", 1)).result.value).toBe("value-a");
      });

      it("a secret row copied into another tenant (wrong AAD: tenant), and swapped tenant keys", async () => {
        const src = (await db.get<{ k: string; c: string }>(
          "SELECT wrapped_data_key AS k, ciphertext AS c FROM vault_versions WHERE tenant_id = ? AND name = 'a'",
          [acme.tenantId],
        ))!;
        await db.run("UPDATE vault_versions SET wrapped_data_key = ?, ciphertext = ? WHERE tenant_id = ? AND name = 'a'", [
          src.k,
          src.c,
          globex.tenantId,
        ]);
        await expectIntegrityError(read(globex, "a"));

        const keys = await db.all<{ tenant_id: string; wrapped_key: string }>(
          "SELECT tenant_id, wrapped_key FROM vault_tenant_keys",
        );
        const ka = keys.find((k) => k.tenant_id === acme.tenantId)!;
        const kg = keys.find((k) => k.tenant_id === globex.tenantId)!;
        await db.run("UPDATE vault_tenant_keys SET wrapped_key = ? WHERE tenant_id = ?", [kg.wrapped_key, acme.tenantId]);
        await db.run("UPDATE vault_tenant_keys SET wrapped_key = ? WHERE tenant_id = ?", [ka.wrapped_key, globex.tenantId]);
        const fresh = await open(masterKey);
        try {
          await expectIntegrityError(fresh.vault.get(as(operator("acme"), acme), "b"));
        } finally {
          await fresh.vault.close();
        }
      });

      it("a different master key cannot open the tenant keys", async () => {
        const other = await open(randomBytes(32));
        try {
          await expect(other.vault.get(as(operator("acme"), acme), "a")).rejects.toMatchObject({
            code: "vault.master_key_mismatch",
          });
        } finally {
          await other.vault.close();
        }
      });
    });

    it("master key rotation re-wraps tenant keys only; data rows are untouched", async () => {
      await vault.put(as(operator("acme"), acme), "a", { value: "value-a" });
      await vault.put(as(operator("globex"), globex), "g", { value: "value-g" });
      const before = await db.all("SELECT * FROM vault_versions ORDER BY tenant_id, name, version");
      const keysBefore = await db.all<{ wrapped_key: string }>("SELECT wrapped_key FROM vault_tenant_keys ORDER BY tenant_id");
      const { keyring, vault: v } = await open(masterKey);
      const next = randomBytes(32);
      expect(await keyring.rotateMasterKey(next)).toBe(2);
      expect(await db.all("SELECT * FROM vault_versions ORDER BY tenant_id, name, version")).toEqual(before);
      const keysAfter = await db.all<{ wrapped_key: string; master_key_id: string }>(
        "SELECT wrapped_key, master_key_id FROM vault_tenant_keys ORDER BY tenant_id",
      );
      expect(keysAfter.map((k) => k.wrapped_key)).not.toEqual(keysBefore.map((k) => k.wrapped_key));
      expect(new Set(keysAfter.map((k) => k.master_key_id))).toEqual(new Set([masterKeyId(next)]));
      await v.close();

      // A restart with only the new key reads everything; the old key alone no longer works.
      const restarted = await open(next);
      expect((await restarted.vault.get(as(agent("acme"), acme), "a")).result.value).toBe("value-a");
      expect((await restarted.vault.get(as(agent("globex"), globex), "g")).result.value).toBe("value-g");
      await restarted.vault.close();
      const old = await open(masterKey);
      await expect(old.vault.get(as(agent("acme"), acme), "a")).rejects.toMatchObject({ code: "vault.master_key_mismatch" });
      await old.vault.close();
    });

    it("a restart with a new master key and the old one as previous adopts the tenant keys", async () => {
      await vault.put(as(operator("acme"), acme), "a", { value: "value-a" });
      const next = randomBytes(32);
      const { keyring, vault: v } = await open(next, [masterKey]);
      expect(await keyring.adoptPreviousKeys()).toBe(1);
      expect((await v.get(as(agent("acme"), acme), "a")).result.value).toBe("value-a");
      await v.close();
      const onlyNew = await open(next);
      expect((await onlyNew.vault.get(as(agent("acme"), acme), "a")).result.value).toBe("value-a");
      await onlyNew.vault.close();
    });

    it("a rotation that cannot open one tenant key changes nothing", async () => {
      await vault.put(as(operator("acme"), acme), "a", { value: "value-a" });
      await vault.put(as(operator("globex"), globex), "g", { value: "value-g" });
      await db.run("UPDATE vault_tenant_keys SET wrapped_key = ? WHERE tenant_id = ?", [
        randomBytes(60).toString("base64"),
        globex.tenantId,
      ]);
      const keys = await db.all("SELECT * FROM vault_tenant_keys ORDER BY tenant_id");
      const { keyring, vault: v } = await open(masterKey);
      await expect(keyring.rotateMasterKey(randomBytes(32))).rejects.toMatchObject({ code: "keys.decrypt_failed" });
      expect(await db.all("SELECT * FROM vault_tenant_keys ORDER BY tenant_id")).toEqual(keys);
      expect((await v.get(as(agent("acme"), acme), "a")).result.value).toBe("value-a");
      await v.close();
    });

    it("audits every access (ok, denied, not found) and never the value", async () => {
      await vault.put(as(operator("acme"), acme), "db/password", { value: "s3cr3t-value" });
      await vault.get(as(agent("acme"), acme), "db/password");
      await expect(vault.put(as(agent("acme"), acme), "db/password", { value: "evil" })).rejects.toThrow();
      await expect(vault.get(as(agent("acme"), acme), "missing")).rejects.toThrow();
      await expect(vault.get(as(agent("acme"), globex), "db/password")).rejects.toThrow();
      const entries = await vault.audit(acme, { limit: 100 });
      expect(entries.map((e) => [e.principal, e.action, e.name, e.version, e.outcome]).reverse()).toEqual([
        ["apikey:key-acme", "vault:write", "db/password", 1, "ok"],
        ["spiffe://hexr.local/agent/acme/bot/main", "vault:read", "db/password", 1, "ok"],
        ["spiffe://hexr.local/agent/acme/bot/main", "vault:write", "db/password", null, "denied"],
        ["spiffe://hexr.local/agent/acme/bot/main", "vault:read", "missing", null, "vault.secret_not_found"],
      ]);
      const globexAudit = await vault.audit(globex, { limit: 100 });
      expect(globexAudit.map((e) => [e.principal, e.outcome])).toEqual([["spiffe://hexr.local/agent/acme/bot/main", "denied"]]);
      const raw = JSON.stringify(await db.all("SELECT * FROM vault_audit"));
      expect(raw).not.toContain("s3cr3t");
      expect(raw).not.toContain("evil");
    });

    it("deleting a tenant erases its vault", async () => {
      await vault.put(as(operator("acme"), acme), "a", { value: "v" });
      const { createVaultModule } = await import("./module.js");
      const mod = createVaultModule({ storage: db, log, tenants, policy: policy.engine, masterKey, trustDomain: "hexr.local" });
      await tenants.delete("acme");
      expect(await db.all("SELECT * FROM vault_tenant_keys WHERE tenant_id = ?", [acme.tenantId])).toEqual([]);
      expect(await db.all("SELECT * FROM vault_versions WHERE tenant_id = ?", [acme.tenantId])).toEqual([]);
      await mod.stop?.();
    });
  });
}
