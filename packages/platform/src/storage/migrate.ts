import { HexrError } from "@hexr/core";
import type { Dialect, Migration, Queryable } from "./types.js";

export const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS hexr_migrations (id TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`;

export function migrationSql(m: Migration, dialect: Dialect): string {
  return typeof m.up === "string" ? m.up : m.up[dialect];
}

/** Splits a migration script into statements (our migrations never contain `;` inside literals). */
export function splitStatements(sql: string): string[] {
  return sql
    .split(";")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

export function assertUniqueIds(migrations: readonly Migration[]): void {
  const seen = new Set<string>();
  for (const m of migrations) {
    if (seen.has(m.id)) {
      throw new HexrError("storage.duplicate_migration", `migration id ${m.id} is defined twice`);
    }
    seen.add(m.id);
  }
}

/** Shared driver for both dialects: `runInTx` gives a transaction per migration. */
export async function applyMigrations(
  dialect: Dialect,
  migrations: readonly Migration[],
  db: Queryable,
  runInTx: <T>(fn: (tx: Queryable) => Promise<T>) => Promise<T>,
  now: () => number = Date.now,
): Promise<string[]> {
  assertUniqueIds(migrations);
  await db.run(MIGRATIONS_TABLE);
  const applied = new Set((await db.all<{ id: string }>("SELECT id FROM hexr_migrations")).map((r) => r.id));
  const done: string[] = [];
  for (const m of migrations) {
    if (applied.has(m.id)) continue;
    await runInTx(async (tx) => {
      // Re-check inside the transaction: two processes may migrate the same PostgreSQL database.
      const again = await tx.get("SELECT id FROM hexr_migrations WHERE id = ?", [m.id]);
      if (again) return;
      for (const stmt of splitStatements(migrationSql(m, dialect))) await tx.run(stmt);
      await tx.run("INSERT INTO hexr_migrations (id, applied_at) VALUES (?, ?)", [m.id, now()]);
      done.push(m.id);
    });
  }
  return done;
}
