import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { storageFixtures, type StorageFixture } from "../test-support/storage.js";
import { isUniqueViolation, type Migration, type Storage } from "./types.js";

const migrations: Migration[] = [
  { id: "contract/001", up: "CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT NOT NULL, flag INTEGER NOT NULL, note TEXT)" },
  {
    id: "contract/002",
    up: {
      sqlite: "CREATE INDEX items_n ON items (n); ALTER TABLE items ADD COLUMN extra TEXT",
      postgres: "CREATE INDEX items_n ON items (n); ALTER TABLE items ADD COLUMN extra TEXT",
    },
  },
];

// One contract, every implementation: the platform's services must behave the same on both.
for (const makeFixture of storageFixtures) {
  describe(`Storage contract: ${makeFixture().name}`, () => {
    let fx: StorageFixture;
    let db: Storage;

    beforeEach(async () => {
      fx = makeFixture();
      db = await fx.open();
      await db.migrate(migrations);
    });
    afterEach(async () => {
      await db.close();
      await fx.cleanup();
    });

    it("applies migrations once, in order, and records them", async () => {
      expect(await db.migrate(migrations)).toEqual([]);
      const more = [...migrations, { id: "contract/003", up: "CREATE TABLE other (id TEXT PRIMARY KEY)" }];
      expect(await db.migrate(more)).toEqual(["contract/003"]);
      const ids = (await db.all<{ id: string }>("SELECT id FROM hexr_migrations ORDER BY id")).map((r) => r.id);
      expect(ids).toEqual(["contract/001", "contract/002", "contract/003"]);
    });

    it("rejects duplicate migration ids", async () => {
      await expect(db.migrate([migrations[0]!, migrations[0]!])).rejects.toMatchObject({ code: "storage.duplicate_migration" });
    });

    it("rolls back a failing migration entirely", async () => {
      const bad: Migration = { id: "contract/bad", up: "CREATE TABLE half (id TEXT); INSERT INTO nope VALUES (1)" };
      await expect(db.migrate([...migrations, bad])).rejects.toThrow();
      expect(await db.get("SELECT id FROM hexr_migrations WHERE id = ?", ["contract/bad"])).toBeUndefined();
      // The first statement of the failed migration is gone too, so a fixed migration can run.
      expect(await db.migrate([...migrations, { id: "contract/bad", up: "CREATE TABLE half (id TEXT)" }])).toEqual([
        "contract/bad",
      ]);
    });

    it("round-trips values: text, large integers as numbers, booleans as 0/1, null", async () => {
      const big = 1_795_000_000_123;
      await db.run("INSERT INTO items (id, n, flag, note) VALUES (?, ?, ?, ?)", ["a", big, true, null]);
      const row = await db.get<{ id: string; n: number; flag: number; note: string | null }>(
        "SELECT id, n, flag, note FROM items WHERE id = ?",
        ["a"],
      );
      expect(row).toEqual({ id: "a", n: big, flag: 1, note: null });
      expect(typeof row!.n).toBe("number");
    });

    it("reports changes for run and nothing for a missing row", async () => {
      await db.run("INSERT INTO items (id, n, flag) VALUES (?, ?, ?)", ["a", 1, 0]);
      expect((await db.run("UPDATE items SET n = ? WHERE id = ?", [2, "a"])).changes).toBe(1);
      expect((await db.run("UPDATE items SET n = ? WHERE id = ?", [2, "zz"])).changes).toBe(0);
      expect(await db.get("SELECT * FROM items WHERE id = ?", ["zz"])).toBeUndefined();
    });

    it("detects unique violations in a dialect-independent way", async () => {
      await db.run("INSERT INTO items (id, n, flag) VALUES (?, ?, ?)", ["dup", 1, 0]);
      const err = await db.run("INSERT INTO items (id, n, flag) VALUES (?, ?, ?)", ["dup", 2, 0]).catch((e: unknown) => e);
      expect(isUniqueViolation(err)).toBe(true);
      expect(isUniqueViolation(new Error("other"))).toBe(false);
    });

    it("commits a transaction and rolls one back on error", async () => {
      await db.transaction(async (tx) => {
        await tx.run("INSERT INTO items (id, n, flag) VALUES (?, ?, ?)", ["t1", 1, 0]);
        await tx.run("INSERT INTO items (id, n, flag) VALUES (?, ?, ?)", ["t2", 2, 0]);
      });
      await expect(
        db.transaction(async (tx) => {
          await tx.run("INSERT INTO items (id, n, flag) VALUES (?, ?, ?)", ["t3", 3, 0]);
          throw new Error("boom");
        }),
      ).rejects.toThrow("boom");
      const ids = (await db.all<{ id: string }>("SELECT id FROM items ORDER BY id")).map((r) => r.id);
      expect(ids).toEqual(["t1", "t2"]);
    });

    it("keeps statements outside a transaction out of it while it is open", async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const tx = db.transaction(async (t) => {
        await t.run("INSERT INTO items (id, n, flag) VALUES (?, ?, ?)", ["in-tx", 1, 0]);
        await gate;
        throw new Error("rollback");
      });
      // Issued while the transaction is open; must not be rolled back with it.
      const outside = db.run("INSERT INTO items (id, n, flag) VALUES (?, ?, ?)", ["outside", 1, 0]);
      await new Promise((r) => setTimeout(r, 20));
      release();
      await expect(tx).rejects.toThrow("rollback");
      await outside;
      const ids = (await db.all<{ id: string }>("SELECT id FROM items ORDER BY id")).map((r) => r.id);
      expect(ids).toEqual(["outside"]);
    });

    it("serialises concurrent read-modify-write transactions without lost updates", async () => {
      await db.run("INSERT INTO items (id, n, flag) VALUES (?, ?, ?)", ["counter", 0, 0]);
      await Promise.all(
        Array.from({ length: 20 }, () =>
          db.transaction(async (tx) => {
            // FOR UPDATE is PostgreSQL's row lock; SQLite's BEGIN IMMEDIATE already serialises writers.
            const lock = db.dialect === "postgres" ? " FOR UPDATE" : "";
            const row = await tx.get<{ n: number }>(`SELECT n FROM items WHERE id = ?${lock}`, ["counter"]);
            await tx.run("UPDATE items SET n = ? WHERE id = ?", [row!.n + 1, "counter"]);
          }),
        ),
      );
      expect((await db.get<{ n: number }>("SELECT n FROM items WHERE id = ?", ["counter"]))!.n).toBe(20);
    });

    it("keeps committed data across close and reopen", async () => {
      await db.run("INSERT INTO items (id, n, flag) VALUES (?, ?, ?)", ["persist", 7, 1]);
      await db.close();
      db = await fx.open();
      expect(await db.migrate(migrations)).toEqual([]);
      expect(await db.get("SELECT n FROM items WHERE id = ?", ["persist"])).toEqual({ n: 7 });
    });

    it("answers ping and rejects invalid SQL with an error", async () => {
      await expect(db.ping()).resolves.toBeUndefined();
      await expect(db.all("SELEKT nonsense")).rejects.toThrow();
    });
  });
}
