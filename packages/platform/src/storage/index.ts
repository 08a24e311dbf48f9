import { HexrError } from "@hexr/core";
import { join } from "node:path";
import { createSqliteStorage } from "./sqlite.js";
import type { Storage } from "./types.js";

export * from "./types.js";
export { createSqliteStorage } from "./sqlite.js";
export type { PostgresOptions } from "./postgres.js";

/** PostgreSQL support is loaded on first use: the embedded (SQLite) platform never pays for `pg`. */
export async function createPostgresStorage(opts: import("./postgres.js").PostgresOptions): Promise<Storage> {
  const { createPostgresStorage: create } = await import("./postgres.js");
  return create(opts);
}

/** Embedded SQLite in the data dir by default; PostgreSQL when a `postgres://` URL is given. */
export async function openStorage(opts: { dataDir: string; databaseUrl?: string | undefined }): Promise<Storage> {
  const url = opts.databaseUrl;
  if (!url) return createSqliteStorage({ filename: join(opts.dataDir, "hexr.db") });
  if (/^postgres(ql)?:\/\//.test(url)) {
    try {
      const storage = await createPostgresStorage({ connectionString: url });
      await storage.ping();
      return storage;
    } catch (err) {
      throw new HexrError(
        "storage.unavailable",
        `cannot connect to PostgreSQL at ${redactUrl(url)}: ${(err as Error).message}. Check that the server runs and the URL is right.`,
        { kind: "unavailable", cause: err },
      );
    }
  }
  if (url.startsWith("sqlite:")) return createSqliteStorage({ filename: url.slice("sqlite:".length) });
  throw new HexrError("config.invalid", `databaseUrl must start with postgres:// or sqlite: (got ${redactUrl(url)})`, {
    kind: "invalid_argument",
  });
}

/** Hides the password of a connection URL so it can be logged. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "<unparseable url>";
  }
}
