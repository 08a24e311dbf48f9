import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { applyMigrations } from "./migrate.js";
import type { Migration, Queryable, RunResult, SqlValue, Storage } from "./types.js";

export interface SqliteOptions {
  /** File path, or ":memory:". */
  filename: string;
}

function bind(params: readonly SqlValue[] | undefined): unknown[] {
  if (!params) return [];
  return params.map((p) => (typeof p === "boolean" ? (p ? 1 : 0) : p));
}

/**
 * SQLite through better-sqlite3 (synchronous, so fast). WAL mode: readers never block the writer,
 * and a committed transaction survives the process being killed.
 */
export function createSqliteStorage({ filename }: SqliteOptions): Storage {
  if (filename !== ":memory:") mkdirSync(dirname(filename), { recursive: true });
  const db = new Database(filename);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("busy_timeout = 5000");
  db.pragma("foreign_keys = ON");

  const cache = new Map<string, Database.Statement>();
  const prepare = (sql: string): Database.Statement => {
    let stmt = cache.get(sql);
    if (!stmt) {
      stmt = db.prepare(sql);
      if (cache.size > 500) cache.clear();
      cache.set(sql, stmt);
    }
    return stmt;
  };

  const direct: Queryable = {
    async all<T>(sql: string, params?: readonly SqlValue[]) {
      return prepare(sql).all(...bind(params)) as T[];
    },
    async get<T>(sql: string, params?: readonly SqlValue[]) {
      return prepare(sql).get(...bind(params)) as T | undefined;
    },
    async run(sql: string, params?: readonly SqlValue[]): Promise<RunResult> {
      const stmt = prepare(sql);
      if (!stmt.reader) return { changes: stmt.run(...bind(params)).changes };
      stmt.all(...bind(params));
      return { changes: 0 };
    },
  };

  // One connection: while an async transaction is open, other callers wait for it, so their
  // statements are never swallowed into (or rolled back with) somebody else's transaction.
  let txTail: Promise<void> = Promise.resolve();
  let txOpen = false;
  const gate = async <T>(op: () => Promise<T>): Promise<T> => {
    while (txOpen) await txTail;
    return op();
  };

  const transaction = async <T>(fn: (tx: Queryable) => Promise<T>): Promise<T> => {
    while (txOpen) await txTail;
    txOpen = true;
    let release!: () => void;
    txTail = new Promise<void>((r) => (release = r));
    db.exec("BEGIN IMMEDIATE");
    try {
      const result = await fn(direct);
      db.exec("COMMIT");
      return result;
    } catch (err) {
      if (db.inTransaction) db.exec("ROLLBACK");
      throw err;
    } finally {
      txOpen = false;
      release();
    }
  };

  let closed = false;
  return {
    dialect: "sqlite",
    all: (sql, params) => (txOpen ? gate(() => direct.all(sql, params)) : direct.all(sql, params)),
    get: (sql, params) => (txOpen ? gate(() => direct.get(sql, params)) : direct.get(sql, params)),
    run: (sql, params) => (txOpen ? gate(() => direct.run(sql, params)) : direct.run(sql, params)),
    transaction,
    migrate: (migrations: readonly Migration[]) => applyMigrations("sqlite", migrations, direct, transaction),
    async ping() {
      prepare("SELECT 1").get();
    },
    async close() {
      if (closed) return;
      closed = true;
      while (txOpen) await txTail;
      db.close();
    },
  };
}
