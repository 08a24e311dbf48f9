import { AggregationTemporality, InMemoryMetricExporter } from "@opentelemetry/sdk-metrics";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { setupTelemetry, type Telemetry, type TelemetryOptions } from "./setup.js";

export { InMemorySpanExporter, InMemoryMetricExporter, AggregationTemporality, type ReadableSpan };

export interface MemoryTelemetry extends Telemetry {
  readonly spanExporter: InMemorySpanExporter;
  readonly metricExporter: InMemoryMetricExporter;
  /** Spans ended so far (exported synchronously on end). */
  spans(): ReadableSpan[];
  /** Spans with this name. */
  spansNamed(name: string): ReadableSpan[];
}

/**
 * Telemetry that keeps everything in memory, for tests of instrumented code: spans are exported
 * as they end, metrics on `forceFlush()`. Identity defaults to a test agent.
 */
export function setupMemoryTelemetry(opts: Partial<TelemetryOptions> = {}): MemoryTelemetry {
  const spanExporter = new InMemorySpanExporter();
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.DELTA);
  const t = setupTelemetry({
    spiffeId: "spiffe://hexr.local/agent/test/test-agent/main",
    tenant: "test",
    agent: "test-agent",
    role: "main",
    framework: "custom",
    metricIntervalMs: 60_000,
    ...opts,
    spanExporter,
    metricExporter,
  });
  return Object.assign(Object.create(null) as object, t, {
    spanExporter,
    metricExporter,
    spans: () => spanExporter.getFinishedSpans(),
    spansNamed: (name: string) => spanExporter.getFinishedSpans().filter((s) => s.name === name),
  }) as MemoryTelemetry;
}
