import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import pino from "pino";
import { PlatformConfig, type PlatformConfigInput } from "../config/schema.js";
import type { PlatformModule } from "../module.js";
import { startPlatform, type Platform } from "../server.js";
import { PG_URL } from "./storage.js";

export interface TestPlatform extends Platform {
  dataDir: string;
  /** fetch relative to the platform URL, with the admin key unless `auth` says otherwise. */
  api(path: string, init?: RequestInit & { auth?: string | null; json?: unknown }): Promise<Response>;
  /** Stops the platform and removes its data (and PostgreSQL schema). */
  dispose(): Promise<void>;
}

export interface TestPlatformOptions {
  storage?: "sqlite" | "postgres";
  config?: Partial<PlatformConfigInput>;
  modules?: PlatformModule[];
  /** Reuse a data dir (restart tests). */
  dataDir?: string;
  /** Reuse a PostgreSQL schema (restart tests). */
  pgSchema?: string;
}

/** A real platform on port 0 with a temp data dir, for tests. */
export async function startTestPlatform(opts: TestPlatformOptions = {}): Promise<TestPlatform & { pgSchema?: string }> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "hexr-test-"));
  const pgSchema = opts.storage === "postgres" ? (opts.pgSchema ?? `t_${randomBytes(6).toString("hex")}`) : undefined;
  const databaseUrl = pgSchema ? `${PG_URL}?options=-c%20search_path%3D${pgSchema}` : undefined;
  if (pgSchema) {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`CREATE SCHEMA IF NOT EXISTS ${pgSchema}`);
    await c.end();
  }
  const config = PlatformConfig.parse({
    dataDir,
    port: 0,
    log: { level: "silent" },
    ...(databaseUrl ? { databaseUrl } : {}),
    ...opts.config,
  });
  const platform = await startPlatform(config, {
    log: pino({ level: "silent" }),
    ...(opts.modules ? { modules: opts.modules } : {}),
  });
  const api: TestPlatform["api"] = (path, init = {}) => {
    const { auth, json, headers, ...rest } = init;
    const key = auth === undefined ? platform.adminKey : auth;
    return fetch(platform.url + path, {
      ...rest,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(json !== undefined ? { "content-type": "application/json" } : {}),
        ...(headers as Record<string, string> | undefined),
      },
      ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
    });
  };
  return Object.assign(platform, {
    dataDir,
    api,
    ...(pgSchema ? { pgSchema } : {}),
    async dispose() {
      await platform.close();
      if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
      if (pgSchema && !opts.pgSchema) {
        const c = new pg.Client({ connectionString: PG_URL });
        await c.connect();
        await c.query(`DROP SCHEMA IF EXISTS ${pgSchema} CASCADE`);
        await c.end();
      }
    },
  });
}
