import type { Logger } from "pino";
import type { PlatformModule } from "../module.js";
import type { Storage } from "../storage/types.js";
import type { TenantService } from "../tenants/service.js";
import { apiKeyRoutes } from "./routes.js";
import { ApiKeyService } from "./service.js";
import { ApiKeyStore, apiKeyMigrations } from "./store.js";

export function createApiKeysModule(deps: {
  storage: Storage;
  log: Logger;
  tenants: TenantService;
}): PlatformModule & { service: ApiKeyService } {
  const service = new ApiKeyService({ store: new ApiKeyStore(deps.storage), tenants: deps.tenants });
  return {
    name: "api-keys",
    migrations: apiKeyMigrations,
    routes: apiKeyRoutes(service),
    authenticators: [service.authenticator()],
    service,
  };
}
