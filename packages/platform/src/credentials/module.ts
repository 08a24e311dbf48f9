import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import type { Authority } from "../identity/types.js";
import type { PlatformModule } from "../module.js";
import type { PolicyEngine } from "../policy/types.js";
import type { Storage } from "../storage/types.js";
import type { TenantService } from "../tenants/service.js";
import { exchangeRoutes } from "./exchange/routes.js";
import { ExchangeService, type Providers } from "./exchange/service.js";
import { createAwsProvider } from "./providers/aws.js";
import { createAzureProvider } from "./providers/azure.js";
import { createGcpProvider } from "./providers/gcp.js";
import type { ProviderClientOptions } from "./providers/types.js";
import { toolRoutes } from "./tools/routes.js";
import { ToolService } from "./tools/service.js";
import { ToolStore, toolMigrations } from "./tools/store.js";

export interface CredentialsModuleDeps {
  storage: Storage;
  log: Logger;
  tenants: TenantService;
  authority: Pick<Authority, "trustDomain" | "mintJwtSvid">;
  policy: PolicyEngine;
  /** The platform master key, read when the first cache key is derived. */
  masterKey: Buffer | (() => Buffer);
  /** Lifetime of the JWT-SVID handed to a cloud. */
  cloudTokenTtlSeconds?: number;
  /** PEM file of extra CAs trusted for cloud endpoints (private STS endpoints, test doubles). */
  extraCaFile?: string;
  /** Per-call timeout towards the clouds. */
  timeoutMs?: number;
  /** Replaces the cloud clients (embedding); defaults to AWS, GCP and Azure over the network. */
  providers?: Providers;
}

/** Splits a PEM bundle into its certificates. */
function readPemBundle(file: string): string[] {
  return readFileSync(file, "utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** The credential injector: tool configuration per tenant and the SVID → cloud credentials exchange. */
export function createCredentialsModule(
  deps: CredentialsModuleDeps,
): PlatformModule & { tools: ToolService; exchange: ExchangeService } {
  const tools = new ToolService({ store: new ToolStore(deps.storage) });
  const clientOpts: ProviderClientOptions = {
    ...(deps.extraCaFile ? { extraCa: readPemBundle(deps.extraCaFile) } : {}),
    ...(deps.timeoutMs ? { timeoutMs: deps.timeoutMs } : {}),
  };
  const closers: Array<() => void> = [];
  const providers: Providers =
    deps.providers ??
    (() => {
      const aws = createAwsProvider(clientOpts);
      const gcp = createGcpProvider(clientOpts);
      const azure = createAzureProvider(clientOpts);
      closers.push(aws.close, gcp.close, azure.close);
      return { aws, gcp, azure };
    })();
  const exchange = new ExchangeService({
    tools,
    resolveTenant: (name) => deps.tenants.scope(name),
    authority: deps.authority,
    policy: deps.policy,
    providers,
    masterKey: deps.masterKey,
    ...(deps.cloudTokenTtlSeconds ? { cloudTokenTtlSeconds: deps.cloudTokenTtlSeconds } : {}),
    log: deps.log.child({ module: "credentials" }),
  });
  deps.tenants.onDelete((tenant) => tools.deleteTenant(tenant));
  return {
    name: "credentials",
    migrations: toolMigrations,
    routes: [...toolRoutes(tools), ...exchangeRoutes(exchange)],
    tools,
    exchange,
    async stop() {
      for (const close of closers) close();
    },
  };
}
