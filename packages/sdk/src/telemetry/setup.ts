import { HexrError } from "@hexr/core";
import {
  context,
  DiagConsoleLogger,
  DiagLogLevel,
  diag,
  metrics,
  propagation,
  trace,
  type Meter,
  type Tracer,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from "@opentelemetry/core";
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-proto";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes, type Resource } from "@opentelemetry/resources";
import {
  AggregationTemporality,
  MeterProvider,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
  type ResourceMetrics,
} from "@opentelemetry/sdk-metrics";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { captureContentEnabled, endpointFromEnv, envFlag, normalizeEndpoint } from "./env.js";
import { SpanMetricsProcessor } from "./metrics.js";
import {
  GuardedSpanProcessor,
  RedactingSpanProcessor,
  ReportingSpanExporter,
  scrubText,
  type ExportStats,
} from "./processors.js";
import { ENV, RESOURCE } from "./semconv.js";
import { TRACER_NAME } from "./span.js";

export type HeadersOption = Record<string, string> | (() => Promise<Record<string, string>> | Record<string, string>);

export interface TelemetryOptions {
  /** This process's SPIFFE ID (`spiffe://<td>/agent/<tenant>/<agent>/<role>`). */
  spiffeId: string;
  tenant: string;
  /** Agent name; also `service.name`. */
  agent: string;
  role: string;
  /** Framework the agent is written with (`ai-sdk`, `openai`, `langchain`, `custom`, ...). */
  framework?: string;
  version?: string;
  /**
   * Base URL of an OTLP/HTTP receiver (the platform, a collector); `/v1/traces` and `/v1/metrics` are
   * appended. Default: HEXR_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, then HEXR_PLATFORM_URL. With
   * none, spans still feed metrics and processors, but nothing leaves the process.
   */
  endpoint?: string;
  /** Headers for the receiver, e.g. `async () => ({ authorization: "Bearer " + jwtSvid })`; called per export. */
  headers?: HeadersOption;
  /** Replaces the OTLP span exporter (tests: `InMemorySpanExporter`); spans go through a SimpleSpanProcessor. */
  spanExporter?: SpanExporter;
  /** Replaces the OTLP metric exporter. */
  metricExporter?: PushMetricExporter;
  /** Extra processors (run guarded, after redaction). */
  spanProcessors?: SpanProcessor[];
  /** How often metrics are pushed; default 15 s. */
  metricIntervalMs?: number;
  /** Per-request timeout of an export; a slow collector costs at most this, off the agent's path. Default 10 s. */
  exportTimeoutMs?: number;
  /** Batching of spans; defaults: 1 s delay, 2048 queued (then dropped), 512 per request. */
  batch?: { scheduledDelayMs?: number; maxQueueSize?: number; maxExportBatchSize?: number };
  /** Register as the process-wide tracer/meter provider, context manager and propagator. Default true. */
  register?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Where rate-limited export warnings go; default stderr. */
  warn?: (message: string) => void;
}

export interface Telemetry {
  readonly enabled: boolean;
  readonly tracer: Tracer;
  readonly meter: Meter;
  readonly resource: Resource | undefined;
  /** Whether prompts/completions may be recorded (HEXR_TELEMETRY_CAPTURE_CONTENT=true). */
  readonly captureContent: boolean;
  /** The OTLP base URL in use, if any. */
  readonly endpoint: string | undefined;
  readonly spanExportStats: ExportStats;
  readonly metricExportStats: ExportStats;
  /** Exports what is buffered; resolves (never rejects) within `timeoutMs`. */
  forceFlush(timeoutMs?: number): Promise<void>;
  /** Flushes and stops; unregisters the global providers if this instance registered them. Idempotent. */
  shutdown(timeoutMs?: number): Promise<void>;
}

let active: Telemetry | undefined;

/** The telemetry set up in this process, if any. */
export function getTelemetry(): Telemetry | undefined {
  return active;
}

function validateOptions(o: TelemetryOptions): void {
  for (const k of ["spiffeId", "tenant", "agent", "role"] as const) {
    if (typeof o[k] !== "string" || o[k].length === 0) {
      throw new HexrError("telemetry.invalid_options", `setupTelemetry: ${k} must be a non-empty string`, {
        kind: "invalid_argument",
      });
    }
  }
  if (!o.spiffeId.startsWith("spiffe://")) {
    throw new HexrError("telemetry.invalid_options", `setupTelemetry: spiffeId must be a spiffe:// URI`, {
      kind: "invalid_argument",
    });
  }
  if (o.endpoint !== undefined && !normalizeEndpoint(o.endpoint)) {
    throw new HexrError("telemetry.invalid_options", `setupTelemetry: endpoint must be an http(s) URL`, {
      kind: "invalid_argument",
    });
  }
}

/** Origin only: an endpoint URL may carry credentials, which must not reach a log line. */
function displayTarget(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "collector";
  }
}

function timeout(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

const noopStats = (): ExportStats => ({ exported: 0, failed: 0, lastError: undefined });

function disabledTelemetry(): Telemetry {
  return {
    enabled: false,
    tracer: trace.getTracer(TRACER_NAME),
    meter: metrics.getMeter(TRACER_NAME),
    resource: undefined,
    captureContent: false,
    endpoint: undefined,
    spanExportStats: noopStats(),
    metricExportStats: noopStats(),
    forceFlush: async () => undefined,
    shutdown: async () => undefined,
  };
}

/**
 * Sets up OpenTelemetry for an agent process: resource attributes with its SPIFFE identity, spans
 * exported in batches over OTLP/HTTP (protobuf), agent metrics derived from spans and pushed as
 * deltas, W3C trace context, credential redaction. `hexrAgent` calls it at start; it is
 * synchronous and never blocks on the network. A second call replaces the first.
 */
export function setupTelemetry(opts: TelemetryOptions): Telemetry {
  validateOptions(opts);
  const env = opts.env ?? process.env;
  if (envFlag(ENV.DISABLED, env)) return disabledTelemetry();
  if (envFlag("HEXR_TELEMETRY_DEBUG", env)) diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.DEBUG);
  if (active) void active.shutdown();

  const warn = opts.warn ?? ((m: string) => process.stderr.write(m + "\n"));
  const endpoint = opts.endpoint ? normalizeEndpoint(opts.endpoint) : endpointFromEnv(env);
  const resource = resourceFromAttributes({
    [RESOURCE.SERVICE_NAME]: opts.agent,
    ...(opts.version ? { [RESOURCE.SERVICE_VERSION]: opts.version } : {}),
    [RESOURCE.SPIFFE_ID]: opts.spiffeId,
    [RESOURCE.TENANT]: opts.tenant,
    [RESOURCE.AGENT]: opts.agent,
    [RESOURCE.ROLE]: opts.role,
    ...(opts.framework ? { [RESOURCE.FRAMEWORK]: opts.framework } : {}),
    "process.pid": process.pid,
  });
  const exportTimeoutMs = opts.exportTimeoutMs ?? 10_000;
  const h = opts.headers;
  // The exporter wants a promise-returning factory; ours may be sync, and a throw must fail only that export.
  const headers = typeof h === "function" ? async () => h() : h;
  const onProcessorError = (err: unknown) => diag.error("hexr telemetry: span processor failed", err);

  // Metrics first: the span-derived instruments need the meter.
  let metricExporter: ReportingMetricExporter | undefined;
  const inner =
    opts.metricExporter ??
    (endpoint
      ? new OTLPMetricExporter({
          url: `${endpoint}/v1/metrics`,
          ...(headers ? { headers } : {}),
          timeoutMillis: exportTimeoutMs,
          temporalityPreference: AggregationTemporality.DELTA,
        })
      : undefined);
  if (inner)
    metricExporter = new ReportingMetricExporter(inner, { target: endpoint ? displayTarget(endpoint) : "exporter", warn });
  const meterProvider = new MeterProvider({
    resource,
    readers: metricExporter
      ? [
          new PeriodicExportingMetricReader({
            exporter: metricExporter,
            exportIntervalMillis: opts.metricIntervalMs ?? 15_000,
            exportTimeoutMillis: Math.min(exportTimeoutMs, opts.metricIntervalMs ?? 15_000),
          }),
        ]
      : [],
  });
  const meter = meterProvider.getMeter(TRACER_NAME);

  let spanExporter: ReportingSpanExporter | undefined;
  const processors: SpanProcessor[] = [new RedactingSpanProcessor(), new SpanMetricsProcessor(meter)];
  if (opts.spanExporter) {
    spanExporter = new ReportingSpanExporter(opts.spanExporter, { target: "exporter", warn });
    processors.push(new SimpleSpanProcessor(spanExporter));
  } else if (endpoint) {
    spanExporter = new ReportingSpanExporter(
      new OTLPTraceExporter({ url: `${endpoint}/v1/traces`, ...(headers ? { headers } : {}), timeoutMillis: exportTimeoutMs }),
      { target: displayTarget(endpoint), warn },
    );
    processors.push(
      new BatchSpanProcessor(spanExporter, {
        scheduledDelayMillis: opts.batch?.scheduledDelayMs ?? 1000,
        maxQueueSize: opts.batch?.maxQueueSize ?? 2048,
        maxExportBatchSize: opts.batch?.maxExportBatchSize ?? 512,
        exportTimeoutMillis: exportTimeoutMs,
      }),
    );
  }
  processors.push(...(opts.spanProcessors ?? []));
  const tracerProvider = new BasicTracerProvider({
    resource,
    spanProcessors: processors.map((p) => new GuardedSpanProcessor(p, onProcessorError)),
    spanLimits: { attributeValueLengthLimit: 8192, attributeCountLimit: 128, eventCountLimit: 128, linkCountLimit: 32 },
  });

  const register = opts.register ?? true;
  if (register) {
    // Replace whatever was registered before (a previous setup, a test), instead of failing silently.
    trace.disable();
    metrics.disable();
    propagation.disable();
    context.disable();
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(tracerProvider);
    metrics.setGlobalMeterProvider(meterProvider);
  }

  const bounded = (p: Promise<unknown>, ms: number) =>
    Promise.race([
      p.then(
        () => undefined,
        () => undefined,
      ),
      timeout(ms),
    ]);
  let stopped: Promise<void> | undefined;
  const handle: Telemetry = {
    enabled: true,
    tracer: tracerProvider.getTracer(TRACER_NAME),
    meter,
    resource,
    captureContent: captureContentEnabled(env),
    endpoint,
    spanExportStats: spanExporter?.stats ?? noopStats(),
    metricExportStats: metricExporter?.stats ?? noopStats(),
    forceFlush: (ms = 5000) => bounded(Promise.all([tracerProvider.forceFlush(), meterProvider.forceFlush()]), ms),
    shutdown: (ms = 5000) =>
      (stopped ??= (async () => {
        if (active === handle) active = undefined;
        if (register && trace.getTracerProvider() !== undefined) {
          trace.disable();
          metrics.disable();
          propagation.disable();
          context.disable();
        }
        await bounded(Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]), ms);
      })()),
  };
  active = handle;
  return handle;
}

/** Counts metric exports and warns, rate-limited, when they fail; a synchronous throw becomes a failed result. */
class ReportingMetricExporter implements PushMetricExporter {
  readonly stats: ExportStats = noopStats();
  private lastWarn = 0;
  readonly selectAggregationTemporality: PushMetricExporter["selectAggregationTemporality"];
  readonly selectAggregation: PushMetricExporter["selectAggregation"];

  constructor(
    private readonly inner: PushMetricExporter,
    private readonly opts: { target: string; warn: (m: string) => void },
  ) {
    this.selectAggregationTemporality = inner.selectAggregationTemporality?.bind(inner);
    this.selectAggregation = inner.selectAggregation?.bind(inner);
  }

  export(metricsData: ResourceMetrics, done: (result: ExportResult) => void): void {
    const points = metricsData.scopeMetrics.reduce((n, s) => n + s.metrics.reduce((m, x) => m + x.dataPoints.length, 0), 0);
    const finish = (result: ExportResult) => {
      if (result.code === ExportResultCode.SUCCESS) this.stats.exported += points;
      else {
        this.stats.failed += points;
        this.stats.lastError = result.error ? scrubText(result.error.message) : "export failed";
        const now = Date.now();
        if (now - this.lastWarn >= 60_000) {
          this.lastWarn = now;
          this.opts.warn(`hexr telemetry: could not export metrics to ${this.opts.target}: ${this.stats.lastError}`);
        }
      }
      done(result);
    };
    try {
      this.inner.export(metricsData, finish);
    } catch (err) {
      finish({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush().catch(() => undefined);
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown().catch(() => undefined);
  }
}
