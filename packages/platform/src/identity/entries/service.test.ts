import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { unsafeTenantScope } from "../../auth/principal.js";
import { storageFixtures, type StorageFixture } from "../../test-support/storage.js";
import type { Storage } from "../../storage/types.js";
import { EntryService, parseSelector, type CreateEntryRequest } from "./service.js";
import { EntryStore, entryMigrations } from "./store.js";

const TD = "hexr.local";
const agent = (tenant: string, name = "bot", role = "main") => `spiffe://${TD}/agent/${tenant}/${name}/${role}`;

describe.each(storageFixtures.map((make) => ({ name: make.name, make })))(
  "registration entries ($name)",
  ({ make: makeFixture }) => {
    let fixture: StorageFixture;
    let storage: Storage;
    let now: number;
    let svc: EntryService;
    const make = () =>
      new EntryService({
        store: new EntryStore(storage),
        trustDomain: TD,
        defaults: { x509SvidTtlSeconds: 3600, jwtSvidTtlSeconds: 300, maxSvidTtlSeconds: 86_400 },
        clock: () => now,
      });

    beforeEach(async () => {
      fixture = makeFixture();
      storage = await fixture.open();
      await storage.migrate(entryMigrations);
      now = Date.UTC(2030, 0, 1);
      svc = make();
      await svc.refresh();
    });
    afterEach(async () => {
      await storage.close();
      await fixture.cleanup();
    });

    const create = (req: Partial<CreateEntryRequest> & { spiffeId: string }) =>
      svc.create({ selectors: ["unix:uid:1000"], ...req } as CreateEntryRequest, "test");

    it("creates an entry with defaults, the tenant inferred from the agent ID, selectors normalised", async () => {
      const e = await create({
        spiffeId: agent("acme-corp"),
        selectors: ["unix:uid:1000", { type: "hexr", value: "tenant:acme-corp" }, "unix:uid:1000"],
      });
      expect(e).toMatchObject({
        spiffeId: agent("acme-corp"),
        tenant: "acme-corp",
        x509SvidTtlSeconds: 3600,
        jwtSvidTtlSeconds: 300,
        createdBy: "test",
        createdAt: now,
        expiresAt: null,
      });
      expect(e.id).toMatch(/^[0-9a-f]{32}$/);
      expect(e.selectors).toEqual([
        { type: "hexr", value: "tenant:acme-corp" },
        { type: "unix", value: "uid:1000" },
      ]);
      expect(await svc.get(e.id)).toEqual(e);
    });

    it("dedupes identical entries (same ID and selector set, any order): conflict with the existing id, or ensure() returns it", async () => {
      const e = await create({ spiffeId: agent("acme-corp"), selectors: ["a:1", "b:2"] });
      await expect(create({ spiffeId: agent("acme-corp"), selectors: ["b:2", "a:1"] })).rejects.toMatchObject({
        code: "identity.entry_exists",
        kind: "conflict",
        details: { id: e.id },
      });
      const again = await svc.ensure({ spiffeId: agent("acme-corp"), selectors: ["a:1", "b:2", "a:1"] }, "hexr-run");
      expect(again).toEqual({ entry: e, created: false });
      // A different selector set or ID is a different entry.
      await expect(create({ spiffeId: agent("acme-corp"), selectors: ["a:1"] })).resolves.toBeDefined();
      await expect(create({ spiffeId: agent("acme-corp", "other"), selectors: ["a:1", "b:2"] })).resolves.toBeDefined();
      expect(await svc.list()).toHaveLength(3);
    });

    it("rejects bad input with typed errors and stores nothing", async () => {
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ spiffeId: "spiffe://other.org/agent/a/b/c" }, "identity.foreign_trust_domain"],
        [{ spiffeId: `spiffe://${TD}` }, "identity.invalid_spiffe_id"],
        [{ spiffeId: `spiffe://${TD}/agent/acme/bot` }, "identity.invalid_spiffe_id"],
        [{ spiffeId: `spiffe://${TD}/agent/Acme/bot/main` }, "identity.invalid_spiffe_id"],
        [{ spiffeId: "not a spiffe id" }, "spiffe.invalid_id"],
        [{ spiffeId: `spiffe://${TD}/a//b` }, "spiffe.invalid_id"],
        [{ spiffeId: agent("acme"), tenant: "globex" }, "identity.entry_tenant_mismatch"],
        [{ spiffeId: `spiffe://${TD}/system/vault`, tenant: "acme" }, "identity.entry_tenant_mismatch"],
        [{ spiffeId: agent("acme"), selectors: [] }, "identity.invalid_entry"],
        [{ spiffeId: agent("acme"), selectors: ["nocolon"] }, "identity.invalid_selector"],
        [{ spiffeId: agent("acme"), selectors: [":value"] }, "identity.invalid_selector"],
        [{ spiffeId: agent("acme"), selectors: ["Unix:uid:1"] }, "identity.invalid_selector"],
        [{ spiffeId: agent("acme"), selectors: ["unix:"] }, "identity.invalid_selector"],
        [{ spiffeId: agent("acme"), selectors: ["unix:uid\n0"] }, "identity.invalid_selector"],
        [{ spiffeId: agent("acme"), selectors: Array.from({ length: 33 }, (_, i) => `a:${i}`) }, "identity.invalid_entry"],
        [{ spiffeId: agent("acme"), x509SvidTtlSeconds: 0 }, "identity.invalid_entry"],
        [{ spiffeId: agent("acme"), x509SvidTtlSeconds: 86_401 }, "identity.invalid_ttl"],
        [{ spiffeId: agent("acme"), jwtSvidTtlSeconds: 1.5 }, "identity.invalid_entry"],
        [{ spiffeId: agent("acme"), expiresAt: "tomorrow" }, "identity.invalid_entry"],
        [{ spiffeId: agent("acme"), expiresAt: new Date(now - 1000).toISOString() }, "identity.invalid_entry"],
        [{ spiffeId: agent("acme"), extra: 1 }, "identity.invalid_entry"],
      ];
      for (const [req, code] of cases) {
        await expect(create(req as never), JSON.stringify(req)).rejects.toMatchObject({ code });
      }
      expect(await svc.list()).toEqual([]);
      expect(svc.match([{ type: "unix", value: "uid:1000" }])).toEqual([]);
    });

    it("matches entries whose selectors are all among the caller's, never partial matches or expired entries", async () => {
      const both = await create({ spiffeId: agent("acme", "a"), selectors: ["unix:uid:1000", "hexr:agent:a"] });
      const uidOnly = await create({ spiffeId: agent("acme", "b"), selectors: ["unix:uid:1000"] });
      const expiring = await create({
        spiffeId: agent("acme", "c"),
        selectors: ["unix:uid:1000"],
        expiresAt: new Date(now + 60_000).toISOString(),
      });
      await create({ spiffeId: agent("acme", "d"), selectors: ["unix:uid:1000", "hexr:agent:d"] });
      const ids = (sel: string[]) => svc.match(sel.map((s) => parseSelector(s))).map((e) => e.id);

      expect(ids(["unix:uid:1000", "hexr:agent:a", "unix:gid:1000"]).sort()).toEqual([both.id, uidOnly.id, expiring.id].sort());
      expect(ids(["unix:uid:1000"]).sort()).toEqual([uidOnly.id, expiring.id].sort());
      expect(ids(["hexr:agent:a"])).toEqual([]);
      expect(ids(["unix:uid:1001", "hexr:agent:a"])).toEqual([]);
      // Values are compared exactly: no prefix or case folding.
      expect(ids(["unix:uid:10000"])).toEqual([]);
      expect(svc.match([{ type: "UNIX", value: "uid:1000" }])).toEqual([]);
      expect(ids([])).toEqual([]);
      now += 61_000;
      expect(ids(["unix:uid:1000"])).toEqual([uidOnly.id]);
      // Expired entries are purged from storage by the periodic job.
      expect(await svc.purgeExpired()).toBe(1);
      await expect(svc.get(expiring.id)).rejects.toMatchObject({ code: "identity.entry_not_found" });
    });

    it("deletes, notifies listeners, and keeps the match index in step", async () => {
      let changes = 0;
      svc.onChange(() => changes++);
      const e = await create({ spiffeId: agent("acme") });
      expect(svc.match([parseSelector("unix:uid:1000")])).toHaveLength(1);
      await svc.delete(e.id);
      expect(changes).toBe(2);
      expect(svc.match([parseSelector("unix:uid:1000")])).toEqual([]);
      await expect(svc.delete(e.id)).rejects.toMatchObject({ code: "identity.entry_not_found", kind: "not_found" });
      await expect(svc.delete("../etc")).rejects.toMatchObject({ code: "identity.entry_not_found" });
      await expect(svc.get("zz")).rejects.toMatchObject({ code: "identity.entry_not_found" });
    });

    it("sees entries written by another replica after refresh()", async () => {
      const other = make();
      await other.refresh();
      const e = await other.create({ spiffeId: agent("acme"), selectors: ["unix:uid:7"] }, "replica-2");
      expect(svc.match([parseSelector("unix:uid:7")])).toEqual([]);
      let changes = 0;
      svc.onChange(() => changes++);
      await svc.refresh();
      expect(svc.match([parseSelector("unix:uid:7")]).map((x) => x.id)).toEqual([e.id]);
      expect(changes).toBe(1);
    });

    it("lists per tenant only through a TenantScope, with pagination; admin lists filter by tenant and ID", async () => {
      const a1 = await create({ spiffeId: agent("acme", "one") });
      now += 1;
      const a2 = await create({ spiffeId: agent("acme", "two") });
      now += 1;
      const g = await create({ spiffeId: agent("globex", "one") });
      now += 1;
      const sys = await create({ spiffeId: `spiffe://${TD}/system/vault`, selectors: ["unix:uid:0"] });
      const acme = unsafeTenantScope("t-acme", "acme");
      expect((await svc.listForTenant(acme)).map((e) => e.id)).toEqual([a1.id, a2.id]);
      expect((await svc.listForTenant(acme, 1)).map((e) => e.id)).toEqual([a1.id]);
      expect((await svc.listForTenant(acme, 10, a1.id)).map((e) => e.id)).toEqual([a2.id]);
      expect((await svc.listForTenant(unsafeTenantScope("t-g", "globex"))).map((e) => e.id)).toEqual([g.id]);
      await expect(svc.getForTenant(acme, g.id)).rejects.toMatchObject({ code: "identity.entry_not_found" });
      await expect(svc.getForTenant(acme, sys.id)).rejects.toMatchObject({ code: "identity.entry_not_found" });
      expect((await svc.getForTenant(acme, a2.id)).id).toBe(a2.id);
      expect((await svc.list()).map((e) => e.id)).toEqual([a1.id, a2.id, g.id, sys.id]);
      expect((await svc.list({ tenant: "globex" })).map((e) => e.id)).toEqual([g.id]);
      expect((await svc.list({ spiffeId: `spiffe://${TD}/system/vault` })).map((e) => e.id)).toEqual([sys.id]);
      expect(sys.tenant).toBeNull();
    });
  },
);
