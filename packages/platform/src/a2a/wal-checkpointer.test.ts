import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createCheckpointedSqliteStorage } from "./wal-checkpointer.js";

describe("WAL checkpoints off the event loop", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("commits never checkpoint; the worker copies the WAL into the database file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hexr-wal-"));
    dirs.push(dir);
    const file = join(dir, "a.db");
    const db = await createCheckpointedSqliteStorage({ filename: file, intervalMs: 50 });
    expect(await db.get<{ wal_autocheckpoint: number }>("PRAGMA wal_autocheckpoint")).toEqual({ wal_autocheckpoint: 0 });
    await db.run("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    const before = statSync(file).size;
    const blob = "x".repeat(4000);
    for (let i = 0; i < 2000; i++) await db.run("INSERT INTO t (v) VALUES (?)", [blob]);
    // 2000 rows of 4 KB went to the WAL; the database file grows only when the worker checkpoints.
    const deadline = Date.now() + 10_000;
    while (statSync(file).size < before + 4_000_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(statSync(file).size).toBeGreaterThan(before + 4_000_000);
    expect(await db.get<{ n: number }>("SELECT COUNT(*) AS n FROM t")).toEqual({ n: 2000 });
    await db.close();
    expect(existsSync(file)).toBe(true);
  });
});
