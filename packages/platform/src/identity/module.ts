import { systemSpiffeId } from "@hexr/core";
import type { Logger } from "pino";
import type { PlatformConfig } from "../config/schema.js";
import { loadMasterKey } from "../keys/master-key.js";
import type { PlatformModule } from "../module.js";
import type { Storage } from "../storage/types.js";
import { LocalAuthority } from "./authority/authority.js";
import { authorityRoutes } from "./authority/routes.js";
import { authorityMigrations } from "./authority/store.js";
import { entryRoutes } from "./entries/routes.js";
import { EntryService } from "./entries/service.js";
import { EntryStore, entryMigrations } from "./entries/store.js";
import { JwtSvidAuthenticator } from "./jwt-svid-authenticator.js";
import { oidcRoutes } from "./oidc/routes.js";
import { createWorkloadApi } from "./workload-api/workload-api.js";

export interface IdentityModuleDeps {
  storage: Storage;
  log: Logger;
  config: PlatformConfig;
  /** Where the master key file lives when HEXR_MASTER_KEY is not set; defaults to config.dataDir. */
  dataDir?: string;
  /** Overrides the master key (tests); otherwise HEXR_MASTER_KEY or `<dataDir>/master.key`. */
  masterKey?: Buffer;
  clock?: () => number;
  /** Platform services whose SPIFFE ID (`spiffe://<td>/system/<name>`) JWT-SVID bearers may address; default `platform`. */
  systemServices?: string[];
}

/** The system service name of the platform's REST API; JWT-SVIDs for it use audience `spiffe://<td>/system/platform`. */
export const PLATFORM_SERVICE = "platform";

export interface IdentityModule extends PlatformModule {
  readonly authority: LocalAuthority;
  readonly entries: EntryService;
  readonly jwtSvidAuthenticator: JwtSvidAuthenticator;
  /** The SPIFFE Workload API unix socket (`<dataDir>/run/workload.sock`). */
  readonly workloadSocket: string;
  /**
   * Tells the module the URL the platform listens on. When `publicUrl` is not configured it becomes
   * the OIDC issuer; `server.ts` calls it after listening, since port 0 is only known then.
   */
  setPlatformUrl(url: string): void;
}

/** `http://host:port` from the config, or undefined when the port is chosen at listen time. */
export function configuredIssuer(config: PlatformConfig): string | undefined {
  if (config.publicUrl) return config.publicUrl;
  if (config.port === 0) return undefined;
  const host =
    config.host === "0.0.0.0" || config.host === "::"
      ? "127.0.0.1"
      : config.host.includes(":")
        ? `[${config.host}]`
        : config.host;
  return `http://${host}:${config.port}`;
}

export function createIdentityModule(deps: IdentityModuleDeps): IdentityModule {
  const { config, log } = deps;
  const dataDir = deps.dataDir ?? config.dataDir;
  const issuer = configuredIssuer(config);
  const authority = new LocalAuthority({
    storage: deps.storage,
    trustDomain: config.trustDomain,
    masterKey: deps.masterKey ?? (() => loadMasterKey(dataDir)),
    ...(issuer ? { issuer } : {}),
    config: {
      x509SvidTtlSeconds: config.identity.x509SvidTtlSeconds,
      jwtSvidTtlSeconds: config.identity.jwtSvidTtlSeconds,
      maxSvidTtlSeconds: config.identity.maxSvidTtlSeconds,
      caTtlSeconds: config.identity.caTtlSeconds,
      rootCaTtlSeconds: config.identity.rootCaTtlSeconds,
      bundleRefreshHintSeconds: config.identity.bundleRefreshHintSeconds,
      jwtLeewaySeconds: config.identity.jwtLeewaySeconds,
    },
    ...(deps.clock ? { clock: deps.clock } : {}),
    log: log.child({ module: "identity" }),
  });

  const entries = new EntryService({
    store: new EntryStore(deps.storage),
    trustDomain: config.trustDomain,
    defaults: {
      x509SvidTtlSeconds: config.identity.x509SvidTtlSeconds,
      jwtSvidTtlSeconds: config.identity.jwtSvidTtlSeconds,
      maxSvidTtlSeconds: config.identity.maxSvidTtlSeconds,
    },
    ...(deps.clock ? { clock: deps.clock } : {}),
    log: log.child({ module: "identity" }),
  });
  const jwtSvidAuthenticator = new JwtSvidAuthenticator({
    authority,
    audiences: (deps.systemServices ?? [PLATFORM_SERVICE]).map((s) => systemSpiffeId(config.trustDomain, s).toString()),
  });

  const workloadApi = createWorkloadApi({ authority, entries, dataDir, log });

  let rotationTimer: NodeJS.Timeout | undefined;
  // One periodic job: CA rotation steps, entries written by other replicas, expired entries.
  const periodic = async () => {
    await authority.tick();
    await entries.purgeExpired();
    await entries.refresh();
  };

  return {
    name: "identity",
    migrations: [...authorityMigrations, ...entryMigrations],
    routes: [...authorityRoutes(authority), ...entryRoutes(entries), ...oidcRoutes(authority)],
    authenticators: [jwtSvidAuthenticator],
    authority,
    entries,
    jwtSvidAuthenticator,
    workloadSocket: workloadApi.socketPath,
    setPlatformUrl(url: string) {
      if (!config.publicUrl) authority.setIssuer(url);
    },
    async start() {
      await authority.init();
      await entries.refresh();
      await workloadApi.start();
      const s = authority.status();
      log.info({ trustDomain: s.trustDomain, bundleSequence: s.sequence, issuer: authority.issuer }, "identity authority ready");
      rotationTimer = setInterval(() => {
        periodic().catch((err: unknown) => log.error({ err }, "identity: periodic CA rotation / entry refresh failed"));
      }, config.identity.rotationCheckSeconds * 1000);
      rotationTimer.unref();
    },
    async stop() {
      if (rotationTimer) clearInterval(rotationTimer);
      rotationTimer = undefined;
      await workloadApi.stop();
    },
    ready: () => authority.ready && entries.ready,
  };
}
