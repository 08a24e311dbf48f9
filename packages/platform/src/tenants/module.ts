import type { Logger } from "pino";
import type { PlatformModule } from "../module.js";
import type { Storage } from "../storage/types.js";
import { tenantRoutes } from "./routes.js";
import { TenantService } from "./service.js";
import { TenantStore, tenantMigrations } from "./store.js";

export function createTenantsModule(deps: { storage: Storage; log: Logger }): PlatformModule & { service: TenantService } {
  const service = new TenantService({ store: new TenantStore(deps.storage) });
  return { name: "tenants", migrations: tenantMigrations, routes: tenantRoutes(service), service };
}
