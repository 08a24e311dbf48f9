import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unsafeTenantScope, type Principal } from "../auth/principal.js";
import type { Storage } from "../storage/types.js";
import { storageFixtures, type StorageFixture } from "../test-support/storage.js";
import { MetricRegistry } from "./metrics/registry.js";
import { OtlpMetricsIngest } from "./metrics/otlp-ingest.js";
import { Temporality, type MetricsRequest, type OtlpSpan, type TracesRequest } from "./otlp/model.js";
import { TelemetryService } from "./service.js";
import { SpanStore, telemetryMigrations } from "./store.js";

const admin: Principal = { kind: "admin", keyId: "k" };
let n = 0;
const hex = (len: number) => (++n).toString(16).padStart(len, "0");

function span(traceId: string, extra: Partial<OtlpSpan> = {}): OtlpSpan {
  return {
    traceId,
    spanId: hex(16),
    parentSpanId: undefined,
    traceState: undefined,
    name: "hexr.agent.invoke",
    kind: 1,
    startNs: 1_700_000_000_000_000_000n + BigInt(n) * 1000n,
    endNs: 1_700_000_000_500_000_000n + BigInt(n) * 1000n,
    attributes: {},
    events: [],
    links: [],
    status: { code: 0, message: undefined },
    ...extra,
  };
}

const request = (tenant: string, spans: OtlpSpan[]): TracesRequest => ({
  resourceSpans: [
    { resource: { "service.name": "a", "hexr.tenant": tenant, "hexr.agent": "a" }, scopeSpans: [{ scope: undefined, spans }] },
  ],
  rejected: 0,
  rejectReason: undefined,
});

for (const make of storageFixtures) {
  describe(`trace store and retention (${make().name})`, () => {
    let fx: StorageFixture;
    let db: Storage;
    let now = 1_000_000;
    let service: TelemetryService;
    beforeAll(async () => {
      fx = make();
      db = await fx.open();
      await db.migrate(telemetryMigrations);
      service = new TelemetryService({
        store: new SpanStore(db),
        metricsIngest: new OtlpMetricsIngest({ registry: new MetricRegistry(), aliases: new Map() }),
        log: pino({ level: "silent" }),
        retention: { maxSpans: 5, maxAgeMs: 10_000 },
        clock: () => now,
      });
    });
    afterAll(async () => {
      await db?.close();
      await fx?.cleanup();
    });

    it("ignores a span sent twice (an exporter's retry)", async () => {
      const t = hex(32);
      const s = span(t);
      expect((await service.ingestTraces(admin, request("acme", [s]))).accepted).toBe(1);
      await service.ingestTraces(admin, request("acme", [s]));
      expect((await service.getTrace({ kind: "all" }, t)).spans).toHaveLength(1);
    });

    it("keeps at most maxSpans, dropping the oldest, and drops spans older than maxAgeMs", async () => {
      const traces = Array.from({ length: 8 }, () => hex(32));
      for (const t of traces) {
        now += 1;
        await service.ingestTraces(admin, request("acme", [span(t)]));
      }
      await service.prune();
      const store = new SpanStore(db);
      expect(await store.count()).toBe(5);
      const kept = (await service.listTraces({ kind: "all" }, { limit: 100 })).map((x) => x.traceId).sort();
      expect(kept).toEqual(traces.slice(3).sort());
      now += 10_001;
      await service.ingestTraces(admin, request("acme", [span(hex(32))]));
      expect(await service.prune()).toBe(5);
      expect(await store.count()).toBe(1);
    });

    it("scopes reads by tenant", async () => {
      const t = hex(32);
      const root = span(t);
      await service.ingestTraces(admin, request("beta", [root]));
      // a platform span under beta's span is visible to beta, not to acme
      await service.recordOwnSpans([
        {
          resource: { "service.name": "hexr-platform", "hexr.spiffe_id": "spiffe://hexr.local/system/platform" },
          scopeSpans: [{ scope: undefined, spans: [span(t, { parentSpanId: root.spanId, name: "GET /x" })] }],
        },
      ]);
      const beta = { kind: "tenant" as const, scope: unsafeTenantScope("id-b", "beta") };
      const acme = { kind: "tenant" as const, scope: unsafeTenantScope("id-a", "acme") };
      expect((await service.getTrace(beta, t)).spans.map((s) => s.name)).toEqual(["hexr.agent.invoke", "GET /x"]);
      await expect(service.getTrace(acme, t)).rejects.toMatchObject({ code: "telemetry.trace_not_found" });
      expect((await service.listTraces(acme, { limit: 100 })).map((x) => x.traceId)).not.toContain(t);
    });
  });
}

describe("OTLP metrics into Prometheus", () => {
  function setup() {
    const registry = new MetricRegistry();
    const counter = registry.counter({ name: "x_total", help: "x", labelNames: ["tenant", "op"] });
    const hist = registry.histogram({ name: "x_seconds", help: "x", labelNames: ["tenant"], buckets: [0.1, 1] });
    const gauge = registry.gauge({ name: "x_open", help: "x", labelNames: ["tenant"] });
    const ingest = new OtlpMetricsIngest({ registry, aliases: new Map([["x.ops", counter]]) });
    return { registry, counter, hist, gauge, ingest };
  }
  const req = (metrics: MetricsRequest["resourceMetrics"][number]["scopeMetrics"][number]["metrics"]): MetricsRequest => ({
    resourceMetrics: [{ resource: {}, scopeMetrics: [{ scope: undefined, metrics }] }],
    rejected: 0,
    rejectReason: undefined,
  });
  const who = () => ({ labels: { tenant: "acme" }, source: "s1" });
  const point = (value: number, startNs = 1n) => ({ attributes: { op: "read", tenant: "forged" }, startNs, timeNs: 2n, value });

  it("turns cumulative sums into increments, detecting resets", () => {
    const { counter, ingest } = setup();
    const send = (value: number, start = 1n) =>
      ingest.ingest(
        req([
          {
            kind: "sum",
            name: "x.ops",
            unit: "",
            description: "",
            temporality: Temporality.CUMULATIVE,
            monotonic: true,
            points: [point(value, start)],
          },
        ]),
        who,
      );
    send(5);
    send(5); // resent: no change
    send(8);
    send(2, 9n); // process restarted: new start time
    send(1, 9n); // lower than before: a reset
    expect(counter.value({ tenant: "acme", op: "read" })).toBe(8 + 2 + 1);
    // the identity label comes from the sender, not from the point
    expect(counter.value({ tenant: "forged", op: "read" })).toBe(0);
  });

  it("turns cumulative histograms into increments and adds delta ones", () => {
    const { hist, ingest } = setup();
    const send = (counts: number[], sum: number, temporality: Temporality) =>
      ingest.ingest(
        req([
          {
            kind: "histogram",
            name: "x_seconds",
            unit: "s",
            description: "",
            temporality,
            points: [
              {
                attributes: {},
                startNs: 1n,
                timeNs: 2n,
                count: counts.reduce((a, b) => a + b, 0),
                sum,
                bucketCounts: counts,
                bounds: [0.1, 1],
              },
            ],
          },
        ]),
        who,
      );
    send([1, 0, 0], 0.05, Temporality.CUMULATIVE);
    send([1, 2, 0], 1.05, Temporality.CUMULATIVE);
    send([0, 0, 1], 3, Temporality.DELTA);
    expect(hist.snapshot({ tenant: "acme" })).toEqual({ count: 4, sum: 4.05, cumulative: [1, 3, 4] });
  });

  it("rejects unknown names and mismatched types, and applies gauges", () => {
    const { gauge, ingest } = setup();
    const r = ingest.ingest(
      req([
        { kind: "gauge", name: "x_open", unit: "", description: "", points: [point(7)] },
        { kind: "gauge", name: "nope", unit: "", description: "", points: [point(1)] },
        { kind: "gauge", name: "x_total", unit: "", description: "", points: [point(1), point(2)] },
        { kind: "unsupported", name: "x_seconds", type: "summary", pointCount: 3 },
      ]),
      who,
    );
    expect(r).toMatchObject({ accepted: 1, rejected: 6 });
    expect(gauge.value({ tenant: "acme" })).toBe(7);
  });
});
