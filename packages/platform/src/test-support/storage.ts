import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { createPostgresStorage } from "../storage/postgres.js";
import { createSqliteStorage } from "../storage/sqlite.js";
import type { Storage } from "../storage/types.js";

export const PG_URL = process.env["HEXR_TEST_DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/test";

export interface StorageFixture {
  name: "sqlite" | "postgres";
  open(): Promise<Storage>;
  /** Drops everything the fixture created. */
  cleanup(): Promise<void>;
}

/** A fresh SQLite file in a temp dir; reopening gives the same database. */
export function sqliteFixture(): StorageFixture {
  const dir = mkdtempSync(join(tmpdir(), "hexr-sqlite-"));
  return {
    name: "sqlite",
    open: async () => createSqliteStorage({ filename: join(dir, "test.db") }),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A fresh PostgreSQL schema; reopening gives the same schema. */
export function postgresFixture(): StorageFixture {
  const schema = `t_${randomBytes(6).toString("hex")}`;
  return {
    name: "postgres",
    open: () => createPostgresStorage({ connectionString: PG_URL, schema, max: 4 }),
    cleanup: async () => {
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    },
  };
}

export const storageFixtures: Array<() => StorageFixture> = [sqliteFixture, postgresFixture];
