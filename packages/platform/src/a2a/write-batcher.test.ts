import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Storage } from "../storage/types.js";
import { storageFixtures, type StorageFixture } from "../test-support/storage.js";
import { WriteBatcher } from "./write-batcher.js";

describe.each(storageFixtures.map((make) => [make().name, make] as const))("group commit on %s", (_name, make) => {
  let fixture: StorageFixture;
  let db: Storage;

  beforeEach(async () => {
    fixture = make();
    db = await fixture.open();
    await db.run("CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)");
  });
  afterEach(async () => {
    await db.close();
    await fixture.cleanup();
  });

  const put = (k: string, v: number) => async (tx: { run: Storage["run"] }) => {
    await tx.run("INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", [k, v]);
    return v;
  };

  it("commits writes of one turn together; a key's queued writes coalesce into the last", async () => {
    const b = new WriteBatcher({ storage: db });
    let runs = 0;
    const counted = (k: string, v: number) => async (tx: { run: Storage["run"] }) => {
      runs++;
      return put(k, v)(tx);
    };
    const results = await Promise.all([
      b.run(counted("a", 1), "a"),
      b.run(counted("a", 2), "a"),
      b.run(counted("b", 3)),
      b.run(counted("a", 4), "a"),
    ]);
    expect(results).toEqual([4, 4, 3, 4]);
    expect(runs).toBe(2);
    expect(await db.all("SELECT k, v FROM kv ORDER BY k")).toEqual([
      { k: "a", v: 4 },
      { k: "b", v: 3 },
    ]);
  });

  it("one failing write fails alone; its neighbours commit", async () => {
    const b = new WriteBatcher({ storage: db });
    const bad = async (tx: { run: Storage["run"] }) => tx.run("INSERT INTO no_such_table VALUES (1)");
    const [x, y, z] = await Promise.allSettled([b.run(put("x", 1)), b.run(bad), b.run(put("z", 3))]);
    expect(x.status).toBe("fulfilled");
    expect(y.status).toBe("rejected");
    expect(z.status).toBe("fulfilled");
    expect(await db.all("SELECT k FROM kv ORDER BY k")).toEqual([{ k: "x" }, { k: "z" }]);
  });

  it("writes to one key commit in order even when transactions overlap", async () => {
    const b = new WriteBatcher({ storage: db, maxConcurrent: 4 });
    const pending: Promise<unknown>[] = [];
    for (let i = 1; i <= 60; i++) {
      pending.push(b.run(put("k", i), "k", i % 2 === 0));
      pending.push(b.run(put(`other-${i}`, i)));
      // Spread over turns, so that several transactions are in flight.
      if (i % 5 === 0) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(pending);
    await b.drain();
    expect(await db.get("SELECT v FROM kv WHERE k = 'k'")).toEqual({ v: 60 });
    expect(await db.get<{ n: number }>("SELECT COUNT(*) AS n FROM kv")).toEqual({ n: 61 });
  });
});
