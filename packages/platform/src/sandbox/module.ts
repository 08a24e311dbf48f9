import { systemSpiffeId } from "@hexr/core";
import type { Logger } from "pino";
import type { PlatformModule } from "../module.js";
import type { PolicyEngine } from "../policy/types.js";
import type { SandboxConfig } from "./config.js";
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { resolveExecutable, unreadableDir } from "./host-sandbox.js";
import { MicrovmBackend } from "./microvm/backend.js";
import { NamespaceBackend } from "./namespace/backend.js";
import { PackageFetcher } from "./package-fetch.js";
import { sandboxRoutes } from "./routes.js";
import { SandboxService } from "./service.js";
import type { BackendCheck, SandboxBackend, SandboxLimits } from "./types.js";

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

/**
 * What `hexr sandbox doctor` reports of the local package directories: each is a directory the
 * sandbox user can read (bubblewrap binds it as that user; a 0700 directory above it leaves the
 * sandbox without it), with what it holds; and, for python packages on the microvm backend, the
 * host tools that resolve them (bubblewrap and pip).
 */
export async function localPackageChecks(config: SandboxConfig, isRoot = process.getuid?.() === 0): Promise<BackendCheck[]> {
  const checks: BackendCheck[] = [];
  const user = { uid: config.namespace.uid, gid: config.namespace.gid };
  const dirs = [
    ["python", "pythonDir", config.packages.pythonDir, !!config.packages.python],
    ["npm", "npmDir", config.packages.npmDir, !!config.packages.npm],
  ] as const;
  for (const [language, key, dir, shadowed] of dirs) {
    if (!dir) continue;
    const name = `packages:${key}`;
    const setting = `sandbox.packages.${key}`;
    const why = unreadableDir(dir, isRoot ? user : undefined);
    if (why) {
      checks.push({
        name,
        ok: false,
        severity: "warning",
        detail: `${dir} ${why.detail}: sandboxes get it bound as that user, so executions with ${language} packages will fail; check ${setting}, make the directories on the way readable and searchable by others (0755) or move it`,
      });
      continue;
    }
    const names = readdirSync(dir);
    const held =
      language === "python"
        ? (() => {
            const wheels = names.filter((n) => n.endsWith(".whl")).length;
            const sdists = names.filter((n) => /\.(tar\.gz|zip)$/.test(n)).length;
            return `${wheels} wheel(s), ${sdists} source distribution(s)${sdists ? " (the microvm backend uses wheels only)" : ""}`;
          })()
        : `${names.filter((n) => n.endsWith(".tgz")).length} tarball(s)`;
    const unused = shadowed
      ? `; not used while sandbox.packages.${language === "python" ? "python" : "npm"} names an index, which wins`
      : "";
    checks.push({ name, ok: true, severity: "warning", detail: `${dir}: ${held}${unused}` });
  }
  if (config.packages.pythonDir && config.backend !== "namespace") {
    const pip = await new Promise<string | undefined>((resolve) =>
      execFile("/usr/bin/python3", ["-m", "pip", "--version"], { timeout: 30_000 }, (err, stdout) =>
        resolve(err ? undefined : /^pip (\S+)/.exec(stdout)?.[1]),
      ),
    );
    const missing = [
      ...(resolveExecutable(config.namespace.bwrapPath) ? [] : ["bubblewrap (apt-get install bubblewrap)"]),
      ...(pip ? [] : ["pip (apt-get install python3-pip)"]),
    ];
    checks.push({
      name: "packages:resolver",
      ok: missing.length === 0,
      severity: "warning",
      detail: missing.length
        ? `the microvm backend resolves python packages from sandbox.packages.pythonDir with bubblewrap and pip on the host; missing: ${missing.join(", ")}`
        : `bubblewrap and pip ${pip} on the host (the microvm backend resolves python packages from sandbox.packages.pythonDir with them, confined)`,
    });
  }
  return checks;
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
      forkServer: ns.forkServer,
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
