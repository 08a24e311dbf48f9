/**
 * The Hexr side of bench/a2a: the A2A server with the echo handler and persisted tasks (SQLite in a
 * temp data dir, WAL checkpointed off the event loop; PostgreSQL with --postgres URL). With --mtls,
 * also the agent-to-agent path of the mesh: the caller's outbound proxy (plain HTTP on loopback,
 * mesh token + target) → mTLS with X.509-SVIDs, the target's SPIFFE ID verified → the target's
 * inbound proxy → the A2A server. Prints `{"port":N,"mesh":{...}}` on stdout.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unsafeTenantScope } from "../../packages/platform/src/auth/principal.js";
import { anonymousCaller, firstOf, meshCaller } from "../../packages/platform/src/a2a/caller.js";
import { startA2AServer } from "../../packages/platform/src/a2a/server.js";
import { createCheckpointedSqliteStorage } from "../../packages/platform/src/a2a/wal-checkpointer.js";
import { LocalAuthority } from "../../packages/platform/src/identity/authority/authority.js";
import { authorityMigrations } from "../../packages/platform/src/identity/authority/store.js";
import { startInboundProxy } from "../../packages/platform/src/mesh/inbound.js";
import { startOutboundProxy } from "../../packages/platform/src/mesh/outbound.js";
import { createStaticIdentitySource, derToPem, type TlsIdentity } from "../../packages/platform/src/mesh/svid.js";
import { newMeshToken } from "../../packages/platform/src/mesh/token.js";
import { createPostgresStorage } from "../../packages/platform/src/storage/postgres.js";
import { createSqliteStorage } from "../../packages/platform/src/storage/sqlite.js";

const pgIndex = process.argv.indexOf("--postgres");
const mtls = process.argv.includes("--mtls");
const dir = mkdtempSync(join(tmpdir(), "hexr-bench-a2a-"));
const schema = `bench_${process.pid}`;
const storage =
  pgIndex !== -1
    ? await createPostgresStorage({ connectionString: process.argv[pgIndex + 1]!, schema })
    : await createCheckpointedSqliteStorage({ filename: join(dir, "a2a.db") });

const meshToken = newMeshToken();
const server = await startA2AServer({
  storage,
  scope: unsafeTenantScope("bench", "bench"),
  agent: "echo",
  handler: async (m) => `echo: ${m.parts.map((p) => p.text ?? "").join("")}`,
  metadata: { name: "echo", description: "echoes its input" },
  // Plain HTTP callers are anonymous; through the mesh they are the verified caller.
  authenticate: firstOf(meshCaller({ meshToken }), anonymousCaller()),
  security: "none",
  // Where the sidecar serves it (the mesh routes /a2a to it).
  rpcPath: "/a2a",
});

const closers: Array<() => Promise<void>> = [];
let mesh: { outboundPort: number; meshToken: string; target: string } | undefined;
if (mtls) {
  const authDb = createSqliteStorage({ filename: ":memory:" });
  await authDb.migrate(authorityMigrations);
  const authority = new LocalAuthority({ storage: authDb, trustDomain: "hexr.local", masterKey: randomBytes(32) });
  await authority.init();
  const bundlePem = authority
    .x509Authorities()
    .map((d) => derToPem(d))
    .join("");
  const identity = async (spiffeId: string): Promise<TlsIdentity> => {
    const s = await authority.mintX509Svid(spiffeId);
    return {
      spiffeId,
      certChainPem: s.certChainDer.map((d) => derToPem(d)).join(""),
      keyPem: derToPem(s.privateKeyPkcs8Der, "PRIVATE KEY"),
      bundlePem,
      expiresAt: s.expiresAt,
    };
  };
  const echoId = "spiffe://hexr.local/agent/bench/echo/main";
  const inbound = await startInboundProxy({
    identity: createStaticIdentitySource(await identity(echoId)),
    upstream: { port: server.port },
    meshToken,
  });
  const callerToken = newMeshToken();
  const outbound = await startOutboundProxy({
    identity: createStaticIdentitySource(await identity("spiffe://hexr.local/agent/bench/caller/main")),
    meshToken: callerToken,
    resolve: async () => ({ url: inbound.url, spiffeId: echoId }),
  });
  closers.push(
    () => outbound.close(),
    () => inbound.close(),
    () => authDb.close(),
  );
  mesh = { outboundPort: outbound.port, meshToken: callerToken, target: "echo" };
}

process.stdout.write(JSON.stringify({ port: server.port, ...(mesh ? { mesh } : {}) }) + "\n");
const stop = async () => {
  for (const c of closers) await c();
  await server.close();
  if (pgIndex !== -1) await storage.run(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
  await storage.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
