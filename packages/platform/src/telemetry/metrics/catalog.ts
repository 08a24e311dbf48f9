import { VERSION } from "@hexr/core";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { MetricRegistry, type AnyFamily, type Labels } from "./registry.js";

/**
 * Every metric Hexr exports, in one registry per process. Platform modules record through the
 * `metrics` object below; agents' metrics arrive over OTLP and are mapped onto the families whose
 * `otlp` name they carry (see otlp-ingest.ts). Grafana dashboards may only use names from here
 * (checked by deploy/grafana's test).
 */
export const registry = new MetricRegistry();

/** Bucket bounds in seconds, the same as the SDK's (DURATION_BUCKETS_SECONDS in sdk/src/telemetry/semconv.ts). */
export const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
] as const;
const FAST_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] as const;

/** Labels that say which workload a series belongs to; filled from the authenticated sender. */
export const IDENTITY_LABELS = ["tenant", "agent", "role", "spiffe_id"] as const;
const ID = IDENTITY_LABELS;

/** OTLP metric name (as the SDK emits it) → Prometheus family, for metrics that agents push. */
export const otlpAliases = new Map<string, AnyFamily>();

function agentFamily<F extends AnyFamily>(otlpName: string, family: F): F {
  otlpAliases.set(otlpName, family);
  return family;
}

// ---- agents (SDK spans → OTLP metrics) ----
export const agentInvocations = agentFamily(
  "hexr.agent.invocations",
  registry.counter({
    name: "hexr_agent_invocations_total",
    help: "Agent invocations (hexr.agent.invoke spans)",
    labelNames: [...ID, "framework", "status"],
  }),
);
export const agentDuration = agentFamily(
  "hexr.agent.invocation.duration",
  registry.histogram({
    name: "hexr_agent_invocation_duration_seconds",
    help: "Agent invocation duration",
    labelNames: [...ID, "framework", "status"],
    buckets: DURATION_BUCKETS,
  }),
);
export const toolInvocations = agentFamily(
  "hexr.tool.invocations",
  registry.counter({
    name: "hexr_tool_invocations_total",
    help: "Tool (cloud service) calls made through hexrTool",
    labelNames: [...ID, "service", "region", "tier", "status"],
  }),
);
export const toolDuration = agentFamily(
  "hexr.tool.invocation.duration",
  registry.histogram({
    name: "hexr_tool_invocation_duration_seconds",
    help: "Tool call duration",
    labelNames: [...ID, "service", "status"],
    buckets: DURATION_BUCKETS,
  }),
);
export const llmRequests = agentFamily(
  "hexr.llm.requests",
  registry.counter({
    name: "hexr_llm_requests_total",
    help: "LLM requests made through hexrLlm",
    labelNames: [...ID, "provider", "model", "status", "streaming"],
  }),
);
export const llmDuration = agentFamily(
  "hexr.llm.request.duration",
  registry.histogram({
    name: "hexr_llm_request_duration_seconds",
    help: "LLM request duration (until the last token for streams)",
    labelNames: [...ID, "provider", "model"],
    buckets: DURATION_BUCKETS,
  }),
);
export const llmTtft = agentFamily(
  "hexr.llm.time_to_first_token",
  registry.histogram({
    name: "hexr_llm_time_to_first_token_seconds",
    help: "Time to the first streamed token",
    labelNames: [...ID, "provider", "model"],
    buckets: DURATION_BUCKETS,
  }),
);
export const llmTokens = agentFamily(
  "hexr.llm.tokens",
  registry.counter({
    name: "hexr_llm_tokens_total",
    help: "LLM tokens by type (input, output)",
    labelNames: [...ID, "provider", "model", "type"],
  }),
);
export const llmCost = agentFamily(
  "hexr.llm.cost",
  registry.counter({
    name: "hexr_llm_cost_usd_total",
    help: "LLM cost in US dollars from the price table",
    labelNames: [...ID, "provider", "model"],
  }),
);
export const cacheLookups = agentFamily(
  "hexr.cache.lookups",
  registry.counter({
    name: "hexr_cache_lookups_total",
    help: "Credential cache lookups by tier (L1/L2/L3) and result",
    labelNames: [...ID, "tier", "result"],
  }),
);
export const cacheDuration = agentFamily(
  "hexr.cache.lookup.duration",
  registry.histogram({
    name: "hexr_cache_lookup_duration_seconds",
    help: "Credential cache lookup duration",
    labelNames: [...ID, "tier"],
    buckets: DURATION_BUCKETS,
  }),
);
export const a2aSends = agentFamily(
  "hexr.a2a.sends",
  registry.counter({
    name: "hexr_a2a_sends_total",
    help: "A2A messages sent, by the task state they produced",
    labelNames: [...ID, "target", "state"],
  }),
);
export const a2aSendDuration = agentFamily(
  "hexr.a2a.send.duration",
  registry.histogram({
    name: "hexr_a2a_send_duration_seconds",
    help: "A2A send duration",
    labelNames: [...ID, "target"],
    buckets: DURATION_BUCKETS,
  }),
);

// ---- sidecars and services (recorded in process, pushed to the platform when not in it) ----
export const a2aTasks = registry.counter({
  name: "hexr_a2a_tasks_total",
  help: "A2A task state transitions on the receiving side",
  labelNames: [...ID, "state"],
});
export const a2aMessages = registry.counter({
  name: "hexr_a2a_messages_total",
  help: "A2A JSON-RPC requests received, by method",
  labelNames: [...ID, "method"],
});
export const mtlsHandshakes = registry.counter({
  name: "hexr_mtls_handshakes_total",
  help: "mTLS handshakes by direction and result",
  labelNames: [...ID, "direction", "result"],
});
export const mtlsHandshakeDuration = registry.histogram({
  name: "hexr_mtls_handshake_duration_seconds",
  help: "mTLS handshake latency",
  labelNames: [...ID, "direction"],
  buckets: FAST_BUCKETS,
});
export const mtlsConnectionsActive = registry.gauge({
  name: "hexr_mtls_connections_active",
  help: "Open mTLS connections",
  labelNames: [...ID, "direction"],
});
export const mtlsConnections = registry.counter({
  name: "hexr_mtls_connections_total",
  help: "mTLS connections opened",
  labelNames: [...ID, "direction"],
});
export const mtlsRejections = registry.counter({
  name: "hexr_mtls_rejections_total",
  help: "Connections or requests the mesh refused, by reason",
  labelNames: [...ID, "reason"],
});
export const svidIssued = registry.counter({
  name: "hexr_svid_issued_total",
  help: "SVIDs issued by the authority (x509, jwt)",
  labelNames: ["type", "tenant"],
});
export const svidIssueFailures = registry.counter({
  name: "hexr_svid_issue_failures_total",
  help: "SVID requests refused or failed",
  labelNames: ["type", "reason"],
});
export const svidRotations = registry.counter({
  name: "hexr_svid_rotations_total",
  help: "Rotations: workload SVIDs renewed, intermediate CA and JWT key steps",
  labelNames: ["kind"],
});
export const policyDecisions = registry.counter({
  name: "hexr_policy_decisions_total",
  help: "Policy decisions by result (allow/deny), action and enforcement mode",
  labelNames: ["result", "action", "mode", "tenant"],
});
export const policyDuration = registry.histogram({
  name: "hexr_policy_evaluation_duration_seconds",
  help: "Policy evaluation latency",
  labelNames: ["engine"],
  buckets: FAST_BUCKETS,
});
export const credentialExchanges = registry.counter({
  name: "hexr_credential_exchanges_total",
  help: "JWT-SVID → cloud credential exchanges by provider and result",
  labelNames: ["provider", "result", "tenant"],
});

// ---- platform ----
export const httpRequests = registry.counter({
  name: "hexr_http_requests_total",
  help: "Platform HTTP requests by route and status",
  labelNames: ["method", "route", "status"],
});
export const httpDuration = registry.histogram({
  name: "hexr_http_request_duration_seconds",
  help: "Platform HTTP request duration",
  labelNames: ["method", "route"],
  buckets: DURATION_BUCKETS,
});
export const httpInFlight = registry.gauge({ name: "hexr_http_requests_in_flight", help: "Platform HTTP requests being served" });
export const spansReceived = registry.counter({
  name: "hexr_telemetry_spans_received_total",
  help: "Spans received over OTLP by result",
  labelNames: ["result"],
});
export const metricPointsReceived = registry.counter({
  name: "hexr_telemetry_metric_points_received_total",
  help: "Metric data points received over OTLP by result",
  labelNames: ["result"],
});
export const spansStored = registry.gauge({ name: "hexr_telemetry_spans_stored", help: "Spans in the trace store" });
export const spansPruned = registry.counter({
  name: "hexr_telemetry_spans_pruned_total",
  help: "Spans removed by retention (age or count)",
});
export const forwarded = registry.counter({
  name: "hexr_telemetry_forwarded_total",
  help: "OTLP batches forwarded to the external endpoint",
  labelNames: ["signal", "result"],
});
export const platformInfo = registry.gauge({
  name: "hexr_platform_info",
  help: "Platform build information",
  labelNames: ["version"],
});
export const processStart = registry.gauge({
  name: "hexr_process_start_time_seconds",
  help: "Start time of the process, seconds since the epoch",
});
export const processCpu = registry.counter({ name: "hexr_process_cpu_seconds_total", help: "CPU time used by the process" });
export const processRss = registry.gauge({ name: "hexr_process_resident_memory_bytes", help: "Resident memory of the process" });
export const heapUsed = registry.gauge({ name: "hexr_nodejs_heap_used_bytes", help: "V8 heap in use" });
export const eventLoopLag = registry.gauge({
  name: "hexr_nodejs_eventloop_lag_seconds",
  help: "Event loop delay (p99 since the last scrape)",
});

platformInfo.set({ version: VERSION }, 1);
processStart.set(undefined, Math.round(performance.timeOrigin / 1000));
// Started at the first scrape, so that importing this module costs a process nothing.
let loopDelay: ReturnType<typeof monitorEventLoopDelay> | undefined;
registry.onCollect(() => {
  if (!loopDelay) {
    loopDelay = monitorEventLoopDelay({ resolution: 20 });
    loopDelay.enable();
  }
  const cpu = process.cpuUsage();
  processCpu.setTotal(undefined, (cpu.user + cpu.system) / 1e6);
  const mem = process.memoryUsage();
  processRss.set(undefined, mem.rss);
  heapUsed.set(undefined, mem.heapUsed);
  eventLoopLag.set(undefined, loopDelay.percentile(99) / 1e9);
  loopDelay.reset();
});

/** Identity labels of a workload; optional everywhere (series recorded in the platform itself leave them empty). */
export type WorkloadLabels = Partial<Record<(typeof IDENTITY_LABELS)[number], string>>;
export type HandshakeDirection = "inbound" | "outbound";

/**
 * What other modules call to record their metrics. Every function is cheap, synchronous and never
 * throws, so it can sit on any request path.
 */
export const metrics = {
  registry,
  recordHttpRequest(method: string, route: string, status: number, seconds: number): void {
    httpRequests.inc({ method, route, status });
    httpDuration.observe({ method, route }, seconds);
  },
  recordSvidIssued(type: "x509" | "jwt", tenant = ""): void {
    svidIssued.inc({ type, tenant });
  },
  recordSvidIssueFailure(type: "x509" | "jwt", reason: string): void {
    svidIssueFailures.inc({ type, reason });
  },
  /** kind: `x509_svid` / `jwt_svid` (a workload renewed), `intermediate_ca`, `jwt_key` (authority steps). */
  recordSvidRotation(kind: string): void {
    svidRotations.inc({ kind });
  },
  recordPolicyDecision(
    result: "allow" | "deny",
    opts: { action?: string; mode?: "audit" | "warn" | "enforce"; tenant?: string; seconds?: number; engine?: string } = {},
  ): void {
    policyDecisions.inc({ result, action: opts.action ?? "", mode: opts.mode ?? "enforce", tenant: opts.tenant ?? "" });
    if (opts.seconds !== undefined) policyDuration.observe({ engine: opts.engine ?? "cedar" }, opts.seconds);
  },
  recordHandshake(ms: number, opts: WorkloadLabels & { direction?: HandshakeDirection; ok?: boolean } = {}): void {
    const { direction = "inbound", ok = true, ...id } = opts;
    mtlsHandshakes.inc({ ...id, direction, result: ok ? "ok" : "failed" });
    if (ok) mtlsHandshakeDuration.observe({ ...id, direction }, ms / 1000);
  },
  connectionOpened(opts: WorkloadLabels & { direction?: HandshakeDirection } = {}): void {
    const { direction = "inbound", ...id } = opts;
    mtlsConnections.inc({ ...id, direction });
    mtlsConnectionsActive.inc({ ...id, direction });
  },
  connectionClosed(opts: WorkloadLabels & { direction?: HandshakeDirection } = {}): void {
    const { direction = "inbound", ...id } = opts;
    mtlsConnectionsActive.dec({ ...id, direction });
  },
  recordMeshRejected(reason: string, id: WorkloadLabels = {}): void {
    mtlsRejections.inc({ ...id, reason });
  },
  recordA2aTask(state: string, id: WorkloadLabels = {}): void {
    a2aTasks.inc({ ...id, state });
  },
  recordA2aMessage(method: string, id: WorkloadLabels = {}): void {
    a2aMessages.inc({ ...id, method });
  },
  recordCredentialExchange(provider: string, result: "ok" | "denied" | "error", tenant = ""): void {
    credentialExchanges.inc({ provider, result, tenant });
  },
};

export type { Labels };
