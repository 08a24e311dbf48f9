import { systemSpiffeId } from "@hexr/core";
import type { Logger } from "pino";
import type { PlatformModule } from "../module.js";
import type { PolicyEngine } from "../policy/types.js";
import type { SandboxConfig } from "./config.js";
import { join } from "node:path";
import { MicrovmBackend } from "./microvm/backend.js";
import { NamespaceBackend } from "./namespace/backend.js";
import { PackageFetcher } from "./package-fetch.js";
import { sandboxRoutes } from "./routes.js";
import { SandboxService } from "./service.js";
import type { SandboxBackend, SandboxLimits } from "./types.js";

/** The sandbox's system service name: agents request JWT-SVIDs with audience `spiffe://<td>/system/sandbox`. */
export const SANDBOX_SERVICE = "sandbox";

const MiB = 1024 * 1024;

export interface SandboxModuleDeps {
  config: SandboxConfig;
  /** The platform's data dir (default home of the microVM image). */
  dataDir: string;
  trustDomain: string;
  log: Logger;
  policy?: PolicyEngine;
  /** Overrides the backends built from the config (tests). */
  backends?: SandboxBackend[];
}

export interface SandboxModule extends PlatformModule {
  readonly service: SandboxService;
  /** `spiffe://<td>/system/sandbox`: the audience a JWT-SVID for the sandbox must carry. */
  readonly spiffeId: string;
}

export function limitsFrom(config: SandboxConfig): SandboxLimits {
  return {
    memoryBytes: config.memoryMb * MiB,
    pids: config.pids,
    cpus: config.cpus,
    tmpfsBytes: config.tmpfsMb * MiB,
    maxOutputBytes: config.maxOutputBytes,
  };
}

/** Where `hexr sandbox setup` puts the microVM image unless the config says otherwise. */
export function microvmImageDir(config: SandboxConfig, dataDir: string): string {
  return config.microvm.imageDir ?? join(dataDir, "sandbox", "microvm");
}

/**
 * Where pip's and npm's download caches live: the config's, else under the data dir — unless the
 * platform runs as root, whose data dir the fetch user (uid 65534) usually cannot reach.
 */
export function packageCacheDir(config: SandboxConfig, dataDir: string, isRoot = process.getuid?.() === 0): string {
  return config.packages.cacheDir ?? (isRoot ? "/var/cache/hexr/packages" : join(dataDir, "sandbox", "package-cache"));
}

/** The fetcher for the package indexes the config names; undefined when it names none. */
export function packageFetcherFrom(config: SandboxConfig, dataDir: string, log: Logger): PackageFetcher | undefined {
  const { python, npm } = config.packages;
  if (!python && !npm) return undefined;
  return new PackageFetcher({
    ...(python
      ? {
          python: {
            url: python.indexUrl,
            allowHosts: python.allowHosts,
            ...(python.username && python.passwordEnv
              ? { auth: { username: python.username, passwordEnv: python.passwordEnv } }
              : {}),
          },
        }
      : {}),
    ...(npm
      ? { npm: { url: npm.registry, allowHosts: npm.allowHosts, ...(npm.tokenEnv ? { auth: { tokenEnv: npm.tokenEnv } } : {}) } }
      : {}),
    cacheDir: packageCacheDir(config, dataDir),
    cacheMaxBytes: config.packages.cacheMaxMb * 1024 * 1024,
    ...(config.packages.caFile ? { caFile: config.packages.caFile } : {}),
    bwrapPath: config.namespace.bwrapPath,
    uid: config.namespace.uid,
    gid: config.namespace.gid,
    log,
  });
}

/** The backends the config allows, in the order `auto` prefers them (namespace, then microvm). */
export function backendsFrom(config: SandboxConfig, log: Logger, dataDir: string): SandboxBackend[] {
  const limits = limitsFrom(config);
  const ns = config.namespace;
  const mv = config.microvm;
  return [
    new NamespaceBackend({
      limits,
      bwrapPath: ns.bwrapPath,
      uid: ns.uid,
      gid: ns.gid,
      cgroups: ns.cgroups,
      warmPool: ns.warmPool,
      packageDirs: {
        ...(config.packages.pythonDir ? { python: config.packages.pythonDir } : {}),
        ...(config.packages.npmDir ? { javascript: config.packages.npmDir } : {}),
      },
      log,
    }),
    new MicrovmBackend({
      imageDir: microvmImageDir(config, dataDir),
      limits,
      qemuPath: mv.qemuPath,
      poolSize: mv.poolSize,
      accel: mv.accel,
      resolver: { bwrapPath: ns.bwrapPath, uid: ns.uid, gid: ns.gid },
      log,
    }),
  ];
}

export function createSandboxModule(deps: SandboxModuleDeps): SandboxModule {
  const { config } = deps;
  const log = deps.log.child({ module: "sandbox" });
  const spiffeId = systemSpiffeId(deps.trustDomain, SANDBOX_SERVICE).toString();
  const backends = deps.backends ?? backendsFrom(config, log, deps.dataDir);
  const fetcher = packageFetcherFrom(config, deps.dataDir, log);
  const service = new SandboxService({
    backends,
    prefer: config.backend,
    enabled: config.enabled,
    limits: {
      maxConcurrent: config.maxConcurrent,
      maxQueue: config.maxQueue,
      maxTimeoutSeconds: config.maxTimeoutSeconds,
      maxCodeBytes: config.maxCodeBytes,
      installTimeoutSeconds: config.installTimeoutSeconds,
    },
    packages: {
      ...(config.packages.pythonDir ? { pythonDir: config.packages.pythonDir } : {}),
      ...(config.packages.npmDir ? { npmDir: config.packages.npmDir } : {}),
      index: { python: !!config.packages.python, javascript: !!config.packages.npm },
    },
    ...(fetcher ? { fetcher } : {}),
    languagesOf: (b) =>
      b instanceof NamespaceBackend || b instanceof MicrovmBackend ? b.languages() : ["python", "shell", "javascript"],
    ...(deps.policy ? { policy: deps.policy } : {}),
    audience: spiffeId,
    log,
  });
  return {
    name: "sandbox",
    routes: sandboxRoutes(service, { maxCodeBytes: config.maxCodeBytes }),
    service,
    spiffeId,
    // Probing runs in the background so the platform does not wait for it; executions do.
    async start() {
      service.startInBackground();
    },
    async stop() {
      await service.stop();
      await fetcher?.stop();
    },
  };
}
