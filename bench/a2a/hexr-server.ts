/**
 * The Hexr side of bench/a2a: the A2A server with the echo handler and persisted tasks (SQLite in a
 * temp data dir by default, PostgreSQL with --postgres URL). Prints its port on stdout.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unsafeTenantScope } from "../../packages/platform/src/auth/principal.js";
import { anonymousCaller } from "../../packages/platform/src/a2a/caller.js";
import { startA2AServer } from "../../packages/platform/src/a2a/server.js";
import { createPostgresStorage } from "../../packages/platform/src/storage/postgres.js";
import { createCheckpointedSqliteStorage } from "../../packages/platform/src/a2a/wal-checkpointer.js";

const pgIndex = process.argv.indexOf("--postgres");
const dir = mkdtempSync(join(tmpdir(), "hexr-bench-a2a-"));
const storage =
  pgIndex !== -1
    ? await createPostgresStorage({ connectionString: process.argv[pgIndex + 1]!, schema: `bench_${process.pid}` })
    : await createCheckpointedSqliteStorage({ filename: join(dir, "a2a.db") });

const server = await startA2AServer({
  storage,
  scope: unsafeTenantScope("bench", "bench"),
  agent: "echo",
  handler: async (m) => `echo: ${m.parts.map((p) => p.text ?? "").join("")}`,
  metadata: { name: "echo", description: "echoes its input" },
  authenticate: anonymousCaller(),
  security: "none",
});
process.stdout.write(`${server.port}\n`);
const stop = async () => {
  await server.close();
  if (pgIndex !== -1) await storage.run(`DROP SCHEMA IF EXISTS bench_${process.pid} CASCADE`).catch(() => undefined);
  await storage.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
