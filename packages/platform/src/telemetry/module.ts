import { systemSpiffeId } from "@hexr/core";
import type { Server } from "node:http";
import type { Logger } from "pino";
import type { TenantScope } from "../auth/principal.js";
import type { PlatformConfig } from "../config/schema.js";
import type { RouteDef } from "../http/router.js";
import type { PlatformModule } from "../module.js";
import type { Storage } from "../storage/types.js";
import { Forwarder } from "./forward.js";
import { OtlpMetricsIngest } from "./metrics/otlp-ingest.js";
import { encodeTraces } from "./otlp/codec.js";
import { createPlatformTracing, type PlatformTracing } from "./platform-tracing.js";
import { telemetryRoutes } from "./routes.js";
import { TelemetryService } from "./service.js";
import { SpanStore, telemetryMigrations } from "./store.js";

export interface TelemetryModuleDeps {
  storage: Storage;
  log: Logger;
  config: PlatformConfig;
  /** Resolves a tenant name to a scope (tenants.service.scope) for tenant-key readers. */
  resolveTenant: (name: string) => Promise<TenantScope>;
  clock?: () => number;
}

export interface TelemetryModule extends PlatformModule {
  readonly service: TelemetryService;
  readonly tracing: PlatformTracing;
  readonly forwarder: Forwarder | undefined;
  /** HTTP metrics for every request and server spans for traced ones; `server.ts` calls it once the routes are known. */
  observeHttp(server: Server, defs: readonly RouteDef[]): void;
}

export function createTelemetryModule(deps: TelemetryModuleDeps): TelemetryModule {
  const cfg = deps.config.telemetry;
  const clock = deps.clock ?? Date.now;
  const log = deps.log.child({ module: "telemetry" });
  const service = new TelemetryService({
    store: new SpanStore(deps.storage),
    metricsIngest: new OtlpMetricsIngest(),
    log,
    retention: { maxSpans: cfg.retention.maxSpans, maxAgeMs: cfg.retention.maxAgeSeconds * 1000 },
    clock,
  });
  const forwarder = cfg.forwardUrl
    ? new Forwarder({ url: cfg.forwardUrl, headers: cfg.forwardHeaders, timeoutMs: cfg.forwardTimeoutMs, log })
    : undefined;
  const tracing = createPlatformTracing({
    spiffeId: systemSpiffeId(deps.config.trustDomain, "platform").toString(),
    traceRequests: cfg.traceRequests,
    sink: async (spans) => {
      await service.recordOwnSpans(spans);
      forwarder?.enqueue("traces", encodeTraces(spans));
    },
  });
  let timer: NodeJS.Timeout | undefined;

  return {
    name: "telemetry",
    migrations: telemetryMigrations,
    routes: telemetryRoutes({
      service,
      forwarder,
      resolveTenant: deps.resolveTenant,
      maxRequestBytes: cfg.maxRequestBytes,
      metricsAuth: cfg.metricsAuth,
      clock,
    }),
    service,
    tracing,
    forwarder,
    observeHttp: (server, defs) => tracing.observe(server, defs),
    async start() {
      await service.prune().catch(() => undefined);
      timer = setInterval(() => void service.prune().catch(() => undefined), cfg.retention.intervalSeconds * 1000);
      timer.unref();
      if (forwarder) log.info({ target: new URL(forwarder.base).origin }, "telemetry: forwarding to an external OTLP endpoint");
    },
    async stop() {
      if (timer) clearInterval(timer);
      await tracing.shutdown();
      await forwarder?.stop();
    },
  };
}
