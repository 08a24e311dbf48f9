import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import {
  JsonMetricsSerializer,
  JsonTraceSerializer,
  ProtobufMetricsSerializer,
  ProtobufTraceSerializer,
} from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { decodeMetrics, decodeTraces, encodeMetrics, encodeTraces, exportResponse } from "./codec.js";
import { otlp } from "./proto.js";

const resource = resourceFromAttributes({
  "service.name": "content-crew",
  "hexr.spiffe_id": "spiffe://hexr.local/agent/acme/content-crew/writer",
  "hexr.tenant": "acme",
  "process.pid": 4242,
});

/** Spans made by the real OpenTelemetry SDK. */
function sdkSpans(): ReadableSpan[] {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer("test-scope", "1.2.3");
  const parent = tracer.startSpan("hexr.agent.invoke", { kind: SpanKind.SERVER, attributes: { "hexr.framework": "ai-sdk" } });
  const child = tracer.startSpan(
    "hexr.llm.chat",
    {
      kind: SpanKind.CLIENT,
      attributes: { "gen_ai.usage.input_tokens": 12, "gen_ai.request.temperature": 0.5, ok: true, tags: ["a", "b"] },
    },
    trace.setSpan(context.active(), parent),
  );
  child.addEvent("first-token", { n: 1 });
  child.setStatus({ code: SpanStatusCode.ERROR, message: "rate limited" });
  child.end();
  parent.end();
  return exporter.getFinishedSpans();
}

describe("OTLP trace decoding", () => {
  for (const [format, serialize] of [
    ["protobuf", (s: ReadableSpan[]) => Buffer.from(ProtobufTraceSerializer.serializeRequest(s)!)],
    ["json", (s: ReadableSpan[]) => Buffer.from(JsonTraceSerializer.serializeRequest(s)!)],
  ] as const) {
    it(`reads what the OpenTelemetry JS exporter sends (${format})`, () => {
      const spans = sdkSpans();
      const decoded = decodeTraces(serialize(spans), format);
      expect(decoded.rejected).toBe(0);
      expect(decoded.resourceSpans).toHaveLength(1);
      const rs = decoded.resourceSpans[0]!;
      expect(rs.resource).toMatchObject({ "service.name": "content-crew", "hexr.tenant": "acme", "process.pid": 4242 });
      const ss = rs.scopeSpans[0]!;
      expect(ss.scope).toEqual({ name: "test-scope", version: "1.2.3" });
      const byName = Object.fromEntries(ss.spans.map((s) => [s.name, s]));
      const llm = byName["hexr.llm.chat"]!;
      const agent = byName["hexr.agent.invoke"]!;
      const sdkLlm = spans.find((s) => s.name === "hexr.llm.chat")!;
      expect(llm.traceId).toBe(sdkLlm.spanContext().traceId);
      expect(llm.spanId).toBe(sdkLlm.spanContext().spanId);
      expect(llm.parentSpanId).toBe(agent.spanId);
      expect(agent.parentSpanId).toBeUndefined();
      expect(llm.kind).toBe(3); // CLIENT
      expect(agent.kind).toBe(2); // SERVER
      expect(llm.status).toEqual({ code: 2, message: "rate limited" });
      expect(llm.attributes).toEqual({
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.request.temperature": 0.5,
        ok: true,
        tags: ["a", "b"],
      });
      expect(llm.events).toEqual([{ name: "first-token", timeNs: expect.any(BigInt), attributes: { n: 1 } }]);
      const startNs = BigInt(sdkLlm.startTime[0]) * 1_000_000_000n + BigInt(sdkLlm.startTime[1]);
      expect(llm.startNs).toBe(startNs);
      expect(llm.endNs >= llm.startNs).toBe(true);
    });
  }

  it("round-trips through its own encoder (used for forwarding)", () => {
    const first = decodeTraces(Buffer.from(ProtobufTraceSerializer.serializeRequest(sdkSpans())!), "protobuf");
    const again = decodeTraces(encodeTraces(first.resourceSpans), "protobuf");
    expect(again.resourceSpans).toEqual(first.resourceSpans);
  });

  it("rejects bodies that are not OTLP, with a typed error", () => {
    for (const [body, format] of [
      [Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), "protobuf"],
      [Buffer.from("{oops"), "json"],
      [Buffer.from("[1,2]"), "json"],
      [Buffer.from('{"resourceSpans": 3}'), "json"],
      [Buffer.from('{"resourceSpans": [7]}'), "json"],
    ] as const) {
      expect(() => decodeTraces(body, format)).toThrow(
        expect.objectContaining({ code: "telemetry.malformed_request", kind: "invalid_argument" }),
      );
    }
  });

  it("rejects bad spans one by one and keeps the good ones", () => {
    const good = {
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: "b7ad6b7169203331",
      name: "ok",
      startTimeUnixNano: "1700000000000000000",
      endTimeUnixNano: "1700000000500000000",
    };
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [{ key: "service.name", value: { stringValue: "x" } }] },
          scopeSpans: [
            {
              spans: [
                good,
                { ...good, traceId: "00000000000000000000000000000000" },
                { ...good, spanId: "xyz" },
                { ...good, startTimeUnixNano: "-5" },
                { ...good, startTimeUnixNano: undefined },
                "not a span",
                { ...good, spanId: "b7ad6b7169203332", endTimeUnixNano: "1" },
              ],
            },
          ],
        },
      ],
    };
    const decoded = decodeTraces(Buffer.from(JSON.stringify(body)), "json");
    expect(decoded.rejected).toBe(5);
    expect(decoded.rejectReason).toMatch(/traceId/);
    const spans = decoded.resourceSpans[0]!.scopeSpans[0]!.spans;
    expect(spans.map((s) => s.spanId)).toEqual(["b7ad6b7169203331", "b7ad6b7169203332"]);
    expect(spans[1]!.endNs).toBe(spans[1]!.startNs); // end before start is clamped, not trusted
  });

  it("bounds deep and huge attribute values", () => {
    let deep: unknown = { stringValue: "bottom" };
    for (let i = 0; i < 50; i++) deep = { kvlistValue: { values: [{ key: "k", value: deep }] } };
    const body = {
      resourceSpans: [
        {
          scopeSpans: [
            {
              spans: [
                {
                  traceId: "0af7651916cd43dd8448eb211c80319c",
                  spanId: "b7ad6b7169203331",
                  name: "deep",
                  startTimeUnixNano: 1700000000000000000,
                  attributes: [
                    { key: "deep", value: deep },
                    { key: "long", value: { stringValue: "x".repeat(100_000) } },
                    { key: "big", value: { intValue: "9223372036854775807" } },
                  ],
                },
              ],
            },
          ],
        },
      ],
    };
    const span = decodeTraces(Buffer.from(JSON.stringify(body)), "json").resourceSpans[0]!.scopeSpans[0]!.spans[0]!;
    expect(JSON.stringify(span.attributes["deep"])).not.toContain("bottom");
    expect((span.attributes["long"] as string).length).toBe(8192);
    expect(span.attributes["big"]).toBe("9223372036854775807");
  });

  it("answers with an ExportTraceServiceResponse, partial success when spans were rejected", () => {
    const pb = exportResponse("traces", "protobuf", 2, "span rejected: bad id");
    expect(otlp.ExportTraceServiceResponse.toObject(otlp.ExportTraceServiceResponse.decode(pb), { longs: String })).toEqual({
      partialSuccess: { rejectedSpans: "2", errorMessage: "span rejected: bad id" },
    });
    expect(JSON.parse(exportResponse("traces", "json", 0, undefined).toString())).toEqual({});
  });
});

describe("OTLP metrics decoding", () => {
  async function sdkMetrics(temporality: AggregationTemporality) {
    const exporter = new InMemoryMetricExporter(temporality);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
    const provider = new MeterProvider({ resource, readers: [reader] });
    const meter = provider.getMeter("m");
    meter.createCounter("hexr.agent.invocations").add(3, { status: "ok", framework: "custom" });
    const h = meter.createHistogram("hexr.agent.invocation.duration", {
      unit: "s",
      advice: { explicitBucketBoundaries: [0.1, 1, 10] },
    });
    h.record(0.05, { status: "ok" });
    h.record(2, { status: "ok" });
    meter.createUpDownCounter("queue").add(-2);
    meter.createGauge("temp").record(21.5);
    await provider.forceFlush();
    const data = exporter.getMetrics()[0]!;
    await provider.shutdown();
    return data;
  }

  for (const format of ["protobuf", "json"] as const) {
    it(`reads counters, histograms, up-down counters and gauges from the JS SDK (${format})`, async () => {
      const rm = await sdkMetrics(AggregationTemporality.DELTA);
      const body = Buffer.from((format === "protobuf" ? ProtobufMetricsSerializer : JsonMetricsSerializer).serializeRequest(rm)!);
      const decoded = decodeMetrics(body, format);
      expect(decoded.rejected).toBe(0);
      const metrics = decoded.resourceMetrics[0]!.scopeMetrics[0]!.metrics;
      const by = Object.fromEntries(metrics.map((m) => [m.name, m]));
      expect(by["hexr.agent.invocations"]).toMatchObject({
        kind: "sum",
        monotonic: true,
        temporality: 1,
        points: [{ value: 3, attributes: { status: "ok", framework: "custom" } }],
      });
      expect(by["hexr.agent.invocation.duration"]).toMatchObject({
        kind: "histogram",
        unit: "s",
        temporality: 1,
        points: [{ count: 2, sum: 2.05, bounds: [0.1, 1, 10], bucketCounts: [1, 0, 1, 0] }],
      });
      expect(by["queue"]).toMatchObject({ kind: "sum", monotonic: false, points: [{ value: -2 }] });
      expect(by["temp"]).toMatchObject({ kind: "gauge", points: [{ value: 21.5 }] });
      // and our own encoder (forwarding, sidecar push) produces the same thing
      expect(decodeMetrics(encodeMetrics(decoded.resourceMetrics), "protobuf").resourceMetrics).toEqual(decoded.resourceMetrics);
    });
  }

  it("rejects inconsistent histograms and unsupported types point by point", () => {
    const body = {
      resourceMetrics: [
        {
          scopeMetrics: [
            {
              metrics: [
                {
                  name: "h",
                  histogram: {
                    aggregationTemporality: 1,
                    dataPoints: [{ count: 1, bucketCounts: [1, 0], explicitBounds: [1, 2] }],
                  },
                },
                {
                  name: "h2",
                  histogram: {
                    aggregationTemporality: 1,
                    dataPoints: [{ count: 1, bucketCounts: [0, 1, 0], explicitBounds: [2, 1] }],
                  },
                },
                { name: "s", summary: { dataPoints: [{}, {}] } },
                { name: "n", sum: { dataPoints: [{ asDouble: "abc" }], isMonotonic: true } },
                { description: "nameless", gauge: { dataPoints: [] } },
              ],
            },
          ],
        },
      ],
    };
    const decoded = decodeMetrics(Buffer.from(JSON.stringify(body)), "json");
    expect(decoded.rejected).toBe(4);
    const metrics = decoded.resourceMetrics[0]!.scopeMetrics[0]!.metrics;
    expect(metrics.find((m) => m.name === "s")).toEqual({ kind: "unsupported", name: "s", type: "summary", pointCount: 2 });
  });
});
