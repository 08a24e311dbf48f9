/**
 * The a2a-sidecar as a process of its own (a pod's a2a-sidecar container, or a test). Configured by
 * environment; prints `{"port":N,"url":...}` on stdout once it serves. SIGTERM stops it gracefully
 * (in-flight tasks are marked failed with the reason); after SIGKILL the next start does the same.
 *
 *   HEXR_TENANT, HEXR_AGENT_NAME          the agent
 *   HEXR_A2A_DATABASE_URL                 sqlite:/path/a2a.db or postgres://... (tasks)
 *   HEXR_A2A_BRIDGE_URL, HEXR_MESH_TOKEN  the agent process's bridge and the token shared with it
 *   HEXR_A2A_INBOUND_TOKEN                the token of the inbound proxy (absent: unauthenticated loopback)
 *   HEXR_A2A_METADATA                     the agent card metadata (JSON), default {name, description}
 *   HEXR_A2A_HOST, HEXR_A2A_PORT, HEXR_A2A_RUNNER, HEXR_A2A_PUBLIC_URL, HEXR_SPIFFE_ID   optional
 */
import { HexrError } from "@hexr/core";
import pino from "pino";
import { openStorage } from "../storage/index.js";
import type { AgentMetadata } from "./card.js";
import { startA2ASidecar } from "./sidecar.js";
import { createCheckpointedSqliteStorage, sqliteFileOf } from "./wal-checkpointer.js";

function need(name: string): string {
  const v = process.env[name];
  if (!v) throw new HexrError("a2a.missing_env", `${name} is not set`, { kind: "invalid_argument" });
  return v;
}

async function main(): Promise<void> {
  const env = process.env;
  const log = pino({ level: env["HEXR_LOG_LEVEL"] ?? "warn" }, pino.destination(2));
  const agent = need("HEXR_AGENT_NAME");
  const databaseUrl = need("HEXR_A2A_DATABASE_URL");
  // A sidecar's SQLite file is its own: checkpoint it off the request path.
  const storage = databaseUrl.startsWith("sqlite:")
    ? await createCheckpointedSqliteStorage({
        filename: sqliteFileOf(databaseUrl),
        onError: (m) => log.warn({ err: m }, "a2a: WAL checkpointer failed"),
      })
    : await openStorage({ dataDir: env["HEXR_A2A_DATA_DIR"] ?? ".", databaseUrl });
  const metadata: AgentMetadata = env["HEXR_A2A_METADATA"]
    ? (JSON.parse(env["HEXR_A2A_METADATA"]) as AgentMetadata)
    : { name: agent, description: `The ${agent} agent` };
  const server = await startA2ASidecar({
    storage,
    tenant: need("HEXR_TENANT"),
    agent,
    metadata,
    bridge: { url: need("HEXR_A2A_BRIDGE_URL"), meshToken: need("HEXR_MESH_TOKEN") },
    ...(env["HEXR_A2A_INBOUND_TOKEN"] ? { meshToken: env["HEXR_A2A_INBOUND_TOKEN"] } : {}),
    ...(env["HEXR_SPIFFE_ID"] ? { spiffeId: env["HEXR_SPIFFE_ID"] } : {}),
    ...(env["HEXR_A2A_PUBLIC_URL"] ? { publicUrl: env["HEXR_A2A_PUBLIC_URL"] } : {}),
    ...(env["HEXR_A2A_RUNNER"] ? { runner: env["HEXR_A2A_RUNNER"] } : {}),
    host: env["HEXR_A2A_HOST"] ?? "127.0.0.1",
    port: Number(env["HEXR_A2A_PORT"] ?? 0),
    log,
  });
  process.stdout.write(JSON.stringify({ port: server.port, url: server.url, recovered: server.recovered.length }) + "\n");
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.close();
    await storage.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
}

main().catch((err: unknown) => {
  process.stderr.write(`a2a-sidecar: ${(err as Error).message}\n`);
  process.exit(1);
});
