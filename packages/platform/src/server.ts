import { HexrError, VERSION } from "@hexr/core";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Logger } from "pino";
import { createAgentsModule } from "./agents/module.js";
import { createApiKeysModule } from "./apikeys/module.js";
import { createCredentialsModule } from "./credentials/module.js";
import { createIdentityModule, type IdentityModule } from "./identity/module.js";
import { loadMasterKey } from "./keys/master-key.js";
import { createPolicyModule } from "./policy/module.js";
import { createSandboxModule } from "./sandbox/module.js";
import { createVaultModule } from "./vault/module.js";
import type { Authenticator } from "./auth/authenticator.js";
import type { PlatformConfig } from "./config/schema.js";
import { buildOpenApi } from "./http/openapi.js";
import { sendProblem, toProblem } from "./http/problem.js";
import { defineRoute, Reply, Router } from "./http/router.js";
import { createLogger } from "./logging/logger.js";
import type { PlatformModule } from "./module.js";
import { openStorage, redactUrl, type Storage } from "./storage/index.js";
import { createTenantsModule } from "./tenants/module.js";
import { createTelemetryModule } from "./telemetry/module.js";
import { createA2AIngressModule, registryResolver } from "./a2a/ingress.js";
import { writeFileAtomic } from "./util/fs.js";

/** What `hexr up` writes so that other commands on the machine find the platform. */
export interface PlatformInfo {
  url: string;
  pid: number;
  version: string;
  dataDir: string;
  startedAt: string;
  storage: "sqlite" | "postgres";
  trustDomain: string;
  /** The SPIFFE Workload API socket (`SPIFFE_ENDPOINT_SOCKET=unix://<this>`). */
  workloadSocket: string;
}

export interface Platform {
  readonly url: string;
  readonly info: PlatformInfo;
  readonly storage: Storage;
  readonly log: Logger;
  /** The admin API key (also in `<dataDir>/admin.key`). */
  readonly adminKey: string;
  /** The SPIFFE authority and registration entries. */
  readonly identity: IdentityModule;
  /** Drains requests, stops services, closes storage. Idempotent. */
  close(): Promise<void>;
}

export interface StartOptions {
  log?: Logger;
  /** Extra modules (tests, embedding). */
  modules?: PlatformModule[];
}

export const PLATFORM_FILE = "platform.json";
export const ADMIN_KEY_FILE = "admin.key";

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Refuses to start a second platform on the same data dir. */
function checkNotRunning(dataDir: string): void {
  const file = join(dataDir, PLATFORM_FILE);
  if (!existsSync(file)) return;
  try {
    const info = JSON.parse(readFileSync(file, "utf8")) as PlatformInfo;
    if (info.pid !== process.pid && isAlive(info.pid)) {
      throw new HexrError(
        "platform.already_running",
        `a platform is already running on data dir ${dataDir} (pid ${info.pid}, ${info.url}); stop it or use another --data-dir`,
        { kind: "conflict" },
      );
    }
  } catch (err) {
    if (err instanceof HexrError) throw err;
    // A torn or stale file from a killed process: ours replaces it.
  }
}

/** The composition root: wires storage, services, authentication and HTTP. */
export async function startPlatform(config: PlatformConfig, opts: StartOptions = {}): Promise<Platform> {
  const log = opts.log ?? createLogger({ level: config.log.level, format: config.log.format });
  const dataDir = config.dataDir;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  checkNotRunning(dataDir);

  const storage = await openStorage({ dataDir, databaseUrl: config.databaseUrl });
  const tenants = createTenantsModule({ storage, log });
  const apiKeys = createApiKeysModule({ storage, log, tenants: tenants.service });
  const identity = createIdentityModule({ storage, log, config, dataDir });
  // A deleted tenant's registration entries go with it: a tenant re-created under the same name starts clean.
  tenants.service.onDelete(async (name) => {
    for (const e of await identity.entries.list({ tenant: name }, 100_000)) await identity.entries.delete(e.id);
  });
  const agents = createAgentsModule({ storage, tenants: tenants.service, trustDomain: config.trustDomain });
  const policy = createPolicyModule({
    storage,
    log,
    tenants: tenants.service,
    engine: config.policy.engine === "opa" && config.policy.opa ? { kind: "opa", ...config.policy.opa } : { kind: "cedar" },
    decisionLogRetentionDays: config.policy.decisionLogRetentionDays,
  });
  const vault = createVaultModule({
    storage,
    log,
    tenants: tenants.service,
    policy: policy.engine,
    masterKey: loadMasterKey(dataDir),
    trustDomain: config.trustDomain,
  });
  identity.jwtSvidAuthenticator.addAudience(vault.spiffeId);
  const credentials = createCredentialsModule({
    storage,
    log,
    tenants: tenants.service,
    authority: identity.authority,
    policy: policy.engine,
    masterKey: () => loadMasterKey(dataDir),
    timeoutMs: config.credentials.timeoutMs,
    cloudTokenTtlSeconds: config.credentials.cloudTokenTtlSeconds,
    ...(config.credentials.extraCaFile ? { extraCaFile: config.credentials.extraCaFile } : {}),
  });
  identity.jwtSvidAuthenticator.addAudience(credentials.exchange.audience);
  const sandbox = createSandboxModule({
    config: config.sandbox,
    dataDir,
    trustDomain: config.trustDomain,
    log,
    policy: policy.engine,
  });
  identity.jwtSvidAuthenticator.addAudience(sandbox.spiffeId);
  const telemetry = createTelemetryModule({ storage, log, config, resolveTenant: (name) => tenants.service.scope(name) });
  const a2a = createA2AIngressModule({
    resolve: registryResolver({
      lookup: (scope, name) => agents.service.resolve(scope, name),
      authority: identity.authority,
      trustDomain: config.trustDomain,
    }),
    policy: policy.engine,
    trustDomain: config.trustDomain,
    bodyLimit: config.http.bodyLimitBytes,
    log,
    ...(config.publicUrl ? { publicUrl: config.publicUrl } : {}),
  });
  identity.jwtSvidAuthenticator.addAudience(a2a.spiffeId);
  const modules: PlatformModule[] = [
    tenants,
    apiKeys,
    identity,
    agents,
    policy,
    vault,
    credentials,
    sandbox,
    telemetry,
    a2a,
    ...(opts.modules ?? []),
  ];

  const started: PlatformModule[] = [];
  let server: Server | undefined;
  const shutdown = new AbortController();
  try {
    const applied = await storage.migrate(modules.flatMap((m) => m.migrations ?? []));
    if (applied.length) log.info({ applied }, "storage migrated");

    for (const m of modules) {
      await m.start?.();
      started.push(m);
    }

    const adminKeyPath = join(dataDir, ADMIN_KEY_FILE);
    const existingKey = existsSync(adminKeyPath) ? readFileSync(adminKeyPath, "utf8") : undefined;
    const admin = await apiKeys.service.ensureAdminKey(existingKey);
    if (admin.created) {
      writeFileAtomic(adminKeyPath, admin.key + "\n", 0o600);
      log.info({ file: adminKeyPath }, "created the admin API key");
    }

    const authenticators: Authenticator[] = modules.flatMap((m) => m.authenticators ?? []);
    const router = new Router({
      log,
      authenticators,
      resolveTenant: (name) => tenants.service.scope(name),
      bodyLimit: config.http.bodyLimitBytes,
      shutdownSignal: shutdown.signal,
    });
    for (const m of modules) router.add(...(m.routes ?? []));

    let draining = false;
    router.add(
      defineRoute({
        method: "GET",
        path: "/healthz",
        summary: "Liveness",
        auth: "public",
        handler: async () => ({ status: "ok" }),
      }),
      defineRoute({
        method: "GET",
        path: "/readyz",
        summary: "Readiness: storage open and every service up",
        auth: "public",
        handler: async () => {
          const checks: Record<string, string> = {};
          try {
            await storage.ping();
            checks["storage"] = "ok";
          } catch {
            checks["storage"] = "unavailable";
          }
          for (const m of modules) checks[m.name] = m.ready?.() === false ? "not ready" : "ok";
          if (draining) checks["server"] = "shutting down";
          const ok = Object.values(checks).every((v) => v === "ok");
          return new Reply({ status: ok ? "ready" : "not ready", checks }, ok ? 200 : 503);
        },
      }),
    );
    const openapi = buildOpenApi(router.defs);
    router.add(
      defineRoute({
        method: "GET",
        path: "/api/v1/openapi.json",
        summary: "This API's OpenAPI 3.1 document",
        auth: "public",
        handler: async () => openapi,
      }),
    );

    const notFound = (req: IncomingMessage, res: ServerResponse) =>
      sendProblem(
        res,
        toProblem(
          new HexrError(
            "request.not_found",
            `no route for ${req.method} ${(req.url ?? "/").split("?")[0]}; see /api/v1/openapi.json`,
            {
              kind: "not_found",
            },
          ),
          String(res.getHeader("x-request-id") ?? ""),
        ),
      );

    server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 300_000 }, (req, res) => {
      router.handle(req, res).then(
        (handled) => {
          if (!handled) notFound(req, res);
        },
        (err: unknown) => {
          log.error({ err }, "unhandled request error");
          sendProblem(res, toProblem(err));
        },
      );
    });
    const srv = server;
    telemetry.observeHttp(srv, router.defs);
    await new Promise<void>((resolveListen, reject) => {
      srv.once("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "EADDRINUSE") {
          reject(
            new HexrError("platform.port_in_use", `port ${config.port} on ${config.host} is in use; pick another with --port`, {
              kind: "conflict",
            }),
          );
        } else reject(err);
      });
      srv.listen(config.port, config.host, () => resolveListen());
    });
    const addr = srv.address() as AddressInfo;
    const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
    const url = `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${addr.port}`;
    // The OIDC issuer defaults to this URL, known only now when the port was 0.
    identity.setPlatformUrl(url);
    const info: PlatformInfo = {
      url,
      pid: process.pid,
      version: VERSION,
      dataDir,
      startedAt: new Date().toISOString(),
      storage: storage.dialect,
      trustDomain: config.trustDomain,
      workloadSocket: identity.workloadSocket,
    };
    const infoPath = join(dataDir, PLATFORM_FILE);
    writeFileAtomic(infoPath, JSON.stringify(info, null, 2) + "\n", 0o600);
    log.info(
      { url, dataDir, storage: storage.dialect === "postgres" ? redactUrl(config.databaseUrl ?? "") : "sqlite" },
      `hexr platform ${VERSION} listening on ${url}`,
    );

    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        draining = true;
        log.info("shutting down: draining requests");
        const drained = new Promise<void>((r) => srv.close(() => r()));
        srv.closeIdleConnections();
        const timeout = new Promise<void>((r) => setTimeout(r, config.http.shutdownTimeoutMs).unref());
        await Promise.race([drained, timeout]);
        shutdown.abort();
        srv.closeAllConnections();
        // A module that cannot stop in time must not keep the platform from stopping: bounded, then on.
        for (const m of [...started].reverse()) {
          let timer: NodeJS.Timeout | undefined;
          const limit = new Promise<"timeout">(
            (r) => (timer = setTimeout(() => r("timeout"), config.http.shutdownTimeoutMs).unref()),
          );
          const outcome = await Promise.race([
            (m.stop?.() ?? Promise.resolve()).then(
              () => "stopped" as const,
              (err: unknown) => log.error({ err, module: m.name }, "module failed to stop"),
            ),
            limit,
          ]);
          clearTimeout(timer);
          if (outcome === "timeout")
            log.error({ module: m.name, ms: config.http.shutdownTimeoutMs }, "module did not stop in time; going on");
        }
        await storage.close();
        try {
          const current = JSON.parse(readFileSync(infoPath, "utf8")) as PlatformInfo;
          if (current.pid === process.pid) rmSync(infoPath, { force: true });
        } catch {
          // already gone
        }
        log.info("stopped");
      })());
    return { url, info, storage, log, adminKey: admin.key, identity, close };
  } catch (err) {
    server?.close();
    for (const m of started.reverse()) await m.stop?.().catch(() => undefined);
    await storage.close();
    throw err;
  }
}
