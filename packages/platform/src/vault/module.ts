import { systemSpiffeId } from "@hexr/core";
import type { Logger } from "pino";
import type { PlatformModule } from "../module.js";
import type { PolicyEngine } from "../policy/types.js";
import type { Storage } from "../storage/types.js";
import type { TenantService } from "../tenants/service.js";
import { TenantKeyring } from "./keyring.js";
import { vaultRoutes } from "./routes.js";
import { VaultService } from "./service.js";
import { VaultStore, vaultMigrations } from "./store.js";

/** The vault's system service name: agents request JWT-SVIDs with audience `spiffe://<td>/system/vault`. */
export const VAULT_SERVICE = "vault";

export interface VaultModuleDeps {
  storage: Storage;
  log: Logger;
  tenants: TenantService;
  policy: PolicyEngine;
  masterKey: Buffer;
  previousMasterKeys?: Buffer[];
  trustDomain: string;
  maxValueBytes?: number;
  clock?: () => number;
}

export interface VaultModule extends PlatformModule {
  readonly service: VaultService;
  readonly keyring: TenantKeyring;
  /** `spiffe://<td>/system/vault`: the audience a JWT-SVID for the vault must carry. */
  readonly spiffeId: string;
}

export function createVaultModule(deps: VaultModuleDeps): VaultModule {
  const store = new VaultStore(deps.storage);
  const keyring = new TenantKeyring({
    store,
    masterKey: deps.masterKey,
    ...(deps.previousMasterKeys ? { previousMasterKeys: deps.previousMasterKeys } : {}),
    ...(deps.clock ? { clock: deps.clock } : {}),
  });
  const spiffeId = systemSpiffeId(deps.trustDomain, VAULT_SERVICE).toString();
  const log = deps.log.child({ module: "vault" });
  const service = new VaultService({
    store,
    keyring,
    policy: deps.policy,
    log,
    vaultId: spiffeId,
    ...(deps.maxValueBytes ? { maxValueBytes: deps.maxValueBytes } : {}),
    ...(deps.clock ? { clock: deps.clock } : {}),
  });
  deps.tenants.onDelete(async (tenant) => {
    await store.eraseTenant(tenant);
    keyring.forgetAll();
  });
  return {
    name: "vault",
    migrations: vaultMigrations,
    routes: vaultRoutes(service, deps.clock),
    service,
    keyring,
    spiffeId,
    async start() {
      const n = await keyring.adoptPreviousKeys();
      if (n > 0)
        log.info(
          { tenantKeys: n, masterKeyId: keyring.currentMasterKeyId },
          "vault tenant keys re-wrapped under the current master key",
        );
    },
    async stop() {
      await service.close();
      keyring.forgetAll();
    },
  };
}
