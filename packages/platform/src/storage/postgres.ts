import pg from "pg";
import { applyMigrations } from "./migrate.js";
import type { Migration, Queryable, RunResult, SqlValue, Storage } from "./types.js";

// BIGINT (int8) columns hold epoch milliseconds and counters: numbers, not strings.
pg.types.setTypeParser(20, (v: string) => Number(v));

export interface PostgresOptions {
  connectionString: string;
  /** Pool size; the platform is mostly I/O bound on few cores. */
  max?: number;
  /** PostgreSQL schema to use (created when missing); lets tests run in isolation. */
  schema?: string;
}

/** Rewrites portable `?` placeholders to `$1..$n`. Our SQL never has `?` inside string literals. */
export function toPgPlaceholders(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/** Booleans are stored as 0/1 in both dialects. */
const bindValue = (p: SqlValue) => (typeof p === "boolean" ? (p ? 1 : 0) : p);

const textCache = new Map<string, string>();
function pgText(sql: string): string {
  let t = textCache.get(sql);
  if (t === undefined) {
    t = toPgPlaceholders(sql);
    if (textCache.size > 1000) textCache.clear();
    textCache.set(sql, t);
  }
  return t;
}

function queryable(client: { query: pg.Pool["query"] }): Queryable {
  const q = async (sql: string, params?: readonly SqlValue[]) =>
    client.query({ text: pgText(sql), values: params ? params.map(bindValue) : [] });
  return {
    async all<T>(sql: string, params?: readonly SqlValue[]) {
      return (await q(sql, params)).rows as T[];
    },
    async get<T>(sql: string, params?: readonly SqlValue[]) {
      return (await q(sql, params)).rows[0] as T | undefined;
    },
    async run(sql: string, params?: readonly SqlValue[]): Promise<RunResult> {
      return { changes: (await q(sql, params)).rowCount ?? 0 };
    },
  };
}

export async function createPostgresStorage({ connectionString, max = 10, schema }: PostgresOptions): Promise<Storage> {
  if (schema !== undefined && !/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`invalid schema name ${schema}`);
  const pool = new pg.Pool({
    connectionString,
    max,
    ...(schema ? { options: `-c search_path=${schema}` } : {}),
  });
  pool.on("error", () => {
    // An idle client died (server restart); the pool replaces it. Queries report their own errors.
  });
  if (schema) await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  const base = queryable(pool);

  const transaction = async <T>(fn: (tx: Queryable) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      const result = await fn(queryable(client));
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  };

  let closed = false;
  return {
    dialect: "postgres",
    ...base,
    transaction,
    async migrate(migrations: readonly Migration[]) {
      // Serialise concurrent platform starts against one database with an advisory lock.
      const client = await pool.connect();
      try {
        await client.query("SELECT pg_advisory_lock(74207420)");
        const c = queryable(client);
        return await applyMigrations("postgres", migrations, c, async (fn) => {
          await client.query("BEGIN");
          try {
            const r = await fn(c);
            await client.query("COMMIT");
            return r;
          } catch (err) {
            await client.query("ROLLBACK").catch(() => undefined);
            throw err;
          }
        });
      } finally {
        await client.query("SELECT pg_advisory_unlock(74207420)").catch(() => undefined);
        client.release();
      }
    },
    async ping() {
      await pool.query("SELECT 1");
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}
