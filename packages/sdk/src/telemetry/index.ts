export * from "./semconv.js";
export { setupTelemetry, getTelemetry, type Telemetry, type TelemetryOptions, type HeadersOption } from "./setup.js";
export {
  withSpan,
  setSpanAttributes,
  recordError,
  hexrTracer,
  TRACER_NAME,
  SpanKind,
  SpanStatusCode,
  type WithSpanOptions,
  type Span,
} from "./span.js";
export { traceAgentInvocation, traceA2aSend, type AgentInvocation } from "./invocation.js";
export {
  injectTraceHeaders,
  extractTraceContext,
  withTraceContext,
  currentTraceId,
  TRACEPARENT,
  TRACESTATE,
  type HeaderCarrier,
} from "./propagation.js";
export { sanitizeAttributes, isSecretKey, looksLikeSecret, REDACTED } from "./attributes.js";
export { captureContentEnabled } from "./env.js";
export { SpanMetricsProcessor } from "./metrics.js";
export {
  GuardedSpanProcessor,
  RedactingSpanProcessor,
  ReportingSpanExporter,
  scrubText,
  type ExportStats,
} from "./processors.js";
export {
  setupMemoryTelemetry,
  InMemorySpanExporter,
  InMemoryMetricExporter,
  AggregationTemporality,
  type MemoryTelemetry,
  type ReadableSpan,
} from "./memory.js";
