import type { PlatformModule } from "../module.js";
import type { Storage } from "../storage/types.js";
import type { TenantService } from "../tenants/service.js";
import { agentRoutes } from "./routes.js";
import { AgentService } from "./service.js";
import { AgentStore, agentMigrations } from "./store.js";

export function createAgentsModule(deps: {
  storage: Storage;
  tenants: TenantService;
  trustDomain: string;
}): PlatformModule & { service: AgentService } {
  const service = new AgentService({ store: new AgentStore(deps.storage), trustDomain: deps.trustDomain });
  return { name: "agents", migrations: agentMigrations, routes: agentRoutes(service, deps.tenants), service };
}
