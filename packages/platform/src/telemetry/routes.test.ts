import { ProtobufMetricsSerializer } from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineRoute } from "../http/router.js";
import { startTestPlatform, type TestPlatform } from "../test-support/platform.js";
import { otlp } from "./otlp/proto.js";
import { agentResource, makeSpans, otlpBody } from "./test-support/otlp.js";

const PLATFORM_AUD = "spiffe://hexr.local/system/platform";

async function tenantKey(p: TestPlatform, tenant: string): Promise<string> {
  expect((await p.api("/api/v1/tenants", { method: "POST", json: { name: tenant } })).status).toBe(201);
  const res = await p.api("/api/v1/keys", { method: "POST", json: { name: "t", scope: "tenant", tenant } });
  return ((await res.json()) as { key: string }).key;
}

function post(p: TestPlatform, path: string, body: Buffer, headers: Record<string, string>, auth?: string | null) {
  return p.api(path, { method: "POST", body, headers, ...(auth !== undefined ? { auth } : {}) });
}

async function until<T>(fn: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

interface Listed {
  items: Array<{
    traceId: string;
    spanCount: number;
    status: string;
    agents: string[];
    spiffeIds: string[];
    root: { name: string } | null;
  }>;
}
interface Detail {
  spans: Array<{
    name: string;
    spanId: string;
    parentSpanId: string | null;
    spiffeId: string | null;
    tenant: string | null;
    service: string | null;
    status: { code: string };
  }>;
}

for (const storage of ["sqlite", "postgres"] as const) {
  describe(`telemetry API (${storage})`, () => {
    let p: TestPlatform;
    let acmeKey: string;
    let betaKey: string;
    beforeAll(async () => {
      // A module whose route shows the traceparent a relaying handler would pass on.
      const echo = defineRoute({
        method: "GET",
        path: "/test/echo-traceparent",
        summary: "test",
        auth: "public",
        handler: async (_i, ctx) => ({ traceparent: ctx.req.headers.traceparent ?? null }),
      });
      p = await startTestPlatform({ storage, modules: [{ name: "echo", routes: [echo] }] });
      acmeKey = await tenantKey(p, "acme");
      betaKey = await tenantKey(p, "beta");
    });
    afterAll(async () => p?.dispose());

    it("stores spans sent as protobuf, JSON and gzip, and lists them per tenant", async () => {
      const traceIds: string[] = [];
      for (const [format, gzip] of [
        ["protobuf", false],
        ["json", false],
        ["protobuf", true],
      ] as const) {
        const spans = makeSpans(agentResource("acme", "research-analyst", "main"), ({ span }) => {
          const root = span("hexr.agent.invoke", { attrs: { "hexr.framework": "custom", format } });
          span("hexr.llm.chat", { parent: root, attrs: { "gen_ai.request.model": "gpt-4o" } });
        });
        traceIds.push(spans[0]!.spanContext().traceId);
        const { body, headers } = otlpBody(spans, format, gzip);
        const res = await post(p, "/v1/traces", body, headers, acmeKey);
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toBe(format === "json" ? "application/json" : "application/x-protobuf");
        const answer = Buffer.from(await res.arrayBuffer());
        if (format === "json") expect(JSON.parse(answer.toString())).toEqual({});
        else expect(otlp.ExportTraceServiceResponse.toObject(otlp.ExportTraceServiceResponse.decode(answer))).toEqual({});
      }
      const beta = makeSpans(
        agentResource("beta", "other", "main"),
        ({ span }) => void span("hexr.agent.invoke", { error: true }),
      );
      expect((await post(p, "/v1/traces", otlpBody(beta).body, otlpBody(beta).headers, betaKey)).status).toBe(200);

      const asAcme = (await (await p.api("/api/v1/traces", { auth: acmeKey })).json()) as Listed;
      expect(asAcme.items.map((t) => t.traceId).sort()).toEqual(traceIds.sort());
      for (const t of asAcme.items) {
        expect(t).toMatchObject({
          spanCount: 2,
          status: "ok",
          agents: ["research-analyst"],
          spiffeIds: ["spiffe://hexr.local/agent/acme/research-analyst/main"],
          root: { name: "hexr.agent.invoke" },
        });
      }
      const asAdmin = (await (await p.api("/api/v1/traces?limit=100")).json()) as Listed;
      expect(asAdmin.items.map((t) => t.traceId)).toEqual(expect.arrayContaining([...traceIds, beta[0]!.spanContext().traceId]));
      const errors = (await (await p.api("/api/v1/traces?status=error")).json()) as Listed;
      expect(errors.items.map((t) => t.traceId)).toEqual([beta[0]!.spanContext().traceId]);
      const byAgent = (await (await p.api("/api/v1/traces?agent=other")).json()) as Listed;
      expect(byAgent.items).toHaveLength(1);
      const bySpiffe = (await (
        await p.api(
          `/api/v1/traces?spiffeId=${encodeURIComponent("spiffe://hexr.local/agent/acme/research-analyst/main")}&since=1h&limit=2`,
        )
      ).json()) as Listed;
      expect(bySpiffe.items).toHaveLength(2);
      const future = (await (
        await p.api(`/api/v1/traces?since=${new Date(Date.now() + 3_600_000).toISOString()}`)
      ).json()) as Listed;
      expect(future.items).toHaveLength(0);

      // one trace by id; another tenant's trace is not found for acme
      const one = (await (await p.api(`/api/v1/traces/${traceIds[0]!.toUpperCase()}`, { auth: acmeKey })).json()) as Detail;
      expect(one.spans.map((s) => s.name).sort()).toEqual(["hexr.agent.invoke", "hexr.llm.chat"]);
      const other = await p.api(`/api/v1/traces/${beta[0]!.spanContext().traceId}`, { auth: acmeKey });
      expect(other.status).toBe(404);
      expect(((await other.json()) as { code: string }).code).toBe("telemetry.trace_not_found");
      expect((await p.api(`/api/v1/traces?tenant=beta`, { auth: acmeKey })).status).toBe(403);
      const betaOnly = (await (await p.api(`/api/v1/traces?tenant=beta`)).json()) as Listed;
      expect(betaOnly.items).toHaveLength(1);
    });

    it("attributes a workload's spans to its SVID and refuses a resource that claims another identity", async () => {
      const writer = "spiffe://hexr.local/agent/acme/content-crew/writer";
      const { token } = await p.identity.authority.mintJwtSvid(writer, [PLATFORM_AUD]);
      // no identity claimed at all: the SVID fills it in
      const anonymous = makeSpans({ "service.name": "content-crew" }, ({ span }) => void span("hexr.agent.invoke"));
      expect((await post(p, "/v1/traces", otlpBody(anonymous).body, otlpBody(anonymous).headers, token)).status).toBe(200);
      const detail = (await (
        await p.api(`/api/v1/traces/${anonymous[0]!.spanContext().traceId}`, { auth: acmeKey })
      ).json()) as Detail;
      expect(detail.spans[0]).toMatchObject({ spiffeId: writer, tenant: "acme", service: "content-crew" });

      // claiming to be someone else: the resource's spans are rejected (partial success)
      const forged = makeSpans(agentResource("beta", "other", "main"), ({ span }) => void span("hexr.agent.invoke"));
      const res = await post(p, "/v1/traces", otlpBody(forged).body, otlpBody(forged).headers, token);
      expect(res.status).toBe(200);
      const answer = otlp.ExportTraceServiceResponse.toObject(
        otlp.ExportTraceServiceResponse.decode(Buffer.from(await res.arrayBuffer())),
        { longs: Number },
      );
      expect(answer["partialSuccess"]).toMatchObject({
        rejectedSpans: 1,
        errorMessage: expect.stringContaining("is not the caller's SPIFFE ID"),
      });
      expect((await p.api(`/api/v1/traces/${forged[0]!.spanContext().traceId}`)).status).toBe(404);

      // a tenant key may not send for another tenant either
      const res2 = await post(p, "/v1/traces", otlpBody(forged).body, otlpBody(forged).headers, acmeKey);
      const answer2 = otlp.ExportTraceServiceResponse.toObject(
        otlp.ExportTraceServiceResponse.decode(Buffer.from(await res2.arrayBuffer())),
        { longs: Number },
      );
      expect(answer2["partialSuccess"]).toMatchObject({ rejectedSpans: 1 });

      // workloads send telemetry but do not read traces
      expect((await p.api("/api/v1/traces", { auth: token })).status).toBe(403);
    });

    it("records a platform span, under the caller's span, for requests that carry a traceparent", async () => {
      const spans = makeSpans(agentResource("acme", "content-crew", "researcher"), ({ span }) => void span("hexr.a2a.send"));
      const client = spans[0]!.spanContext();
      expect((await post(p, "/v1/traces", otlpBody(spans).body, otlpBody(spans).headers, acmeKey)).status).toBe(200);
      const res = await p.api("/api/v1/tenants/acme", {
        auth: acmeKey,
        headers: { traceparent: `00-${client.traceId}-${client.spanId}-01` },
      });
      expect(res.status).toBe(200);
      const detail = await until(async () => {
        const d = (await (await p.api(`/api/v1/traces/${client.traceId}`, { auth: acmeKey })).json()) as Detail;
        return d.spans.length === 2 ? d : undefined;
      }, "the platform span");
      const server = detail.spans.find((s) => s.service === "hexr-platform")!;
      expect(server).toMatchObject({
        name: "GET /api/v1/tenants/:tenant",
        parentSpanId: client.spanId,
        spiffeId: "spiffe://hexr.local/system/platform",
        tenant: null,
      });
      // beta cannot see it
      expect((await p.api(`/api/v1/traces/${client.traceId}`, { auth: betaKey })).status).toBe(404);
    });

    it("hands its own span to relaying handlers as the traceparent, and starts traces at the A2A ingress", async () => {
      const callerSpan = "b7ad6b7169203331";
      const traceId = "1af7651916cd43dd8448eb211c80319c";
      const echoed = (await (
        await p.api("/test/echo-traceparent", { auth: null, headers: { traceparent: `00-${traceId}-${callerSpan}-01` } })
      ).json()) as { traceparent: string };
      const [, tid, sid] = echoed.traceparent.split("-");
      expect(tid).toBe(traceId);
      expect(sid).not.toBe(callerSpan);
      const detail = await until(async () => {
        const res = await p.api(`/api/v1/traces/${traceId}`);
        return res.status === 200 ? ((await res.json()) as Detail) : undefined;
      }, "the platform span");
      expect(detail.spans[0]).toMatchObject({ spanId: sid, parentSpanId: callerSpan, name: "GET /test/echo-traceparent" });
      // no traceparent and not an entry point: no span
      expect(
        ((await (await p.api("/test/echo-traceparent", { auth: null })).json()) as { traceparent: null }).traceparent,
      ).toBeNull();

      // an A2A ingress call without traceparent starts a trace at the platform (the agent may not exist: still traced)
      await p.api("/a2a/acme/no-such-agent", {
        method: "POST",
        json: { jsonrpc: "2.0", id: 1, method: "message/send", params: {} },
      });
      const listed = await until(async () => {
        const l = (await (await p.api("/api/v1/traces?limit=100")).json()) as Listed;
        return l.items.find((t) => t.root?.name === "POST /a2a/:tenant/:agent");
      }, "the ingress trace");
      expect(listed.spiffeIds).toEqual(["spiffe://hexr.local/system/platform"]);
    });

    it("turns bad requests into problems and never stores half of them", async () => {
      const spans = makeSpans(agentResource("acme", "a", "main"), ({ span }) => void span("x"));
      const { body } = otlpBody(spans);
      const count = async () => ((await (await p.api("/api/v1/traces?limit=100")).json()) as Listed).items.length;
      const before = await count();
      const cases: Array<[Promise<Response>, number, string]> = [
        [post(p, "/v1/traces", body, { "content-type": "text/plain" }), 415, "request.unsupported_media_type"],
        [
          post(p, "/v1/traces", body, { "content-type": "application/x-protobuf", "content-encoding": "br" }),
          415,
          "request.unsupported_encoding",
        ],
        [
          post(p, "/v1/traces", Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), { "content-type": "application/x-protobuf" }),
          400,
          "telemetry.malformed_request",
        ],
        [
          post(p, "/v1/traces", Buffer.from("not gzip"), { "content-type": "application/json", "content-encoding": "gzip" }),
          400,
          "telemetry.malformed_request",
        ],
        [post(p, "/v1/traces", Buffer.from("{}"), { "content-type": "application/json" }, null), 401, "auth.unauthenticated"],
        [
          post(p, "/v1/traces", Buffer.alloc(17 * 1024 * 1024), { "content-type": "application/x-protobuf" }),
          413,
          "request.too_large",
        ],
        [
          post(p, "/v1/metrics", Buffer.from('{"resourceMetrics": {}}'), { "content-type": "application/json" }),
          400,
          "telemetry.malformed_request",
        ],
        [p.api("/api/v1/traces/xyz"), 400, "request.validation_failed"],
        [p.api("/api/v1/traces?since=yesterday"), 400, "request.validation_failed"],
        [p.api("/api/v1/traces?limit=1000"), 400, "request.validation_failed"],
        [p.api("/api/v1/traces?bogus=1"), 400, "request.validation_failed"],
        [p.api("/api/v1/traces?tenant=nope"), 404, "tenant.not_found"],
        [p.api("/metrics", { auth: acmeKey }), 403, "auth.forbidden"],
      ];
      for (const [pending, status, code] of cases) {
        const res = await pending;
        const problem = (await res.json()) as { code: string };
        expect([res.status, problem.code]).toEqual([status, code]);
      }
      expect(await count()).toBe(before);
    });

    it("exposes agents' OTLP metrics on /metrics, labelled with the sender's verified identity", async () => {
      const spiffe = `spiffe://hexr.local/agent/acme/metrics-${storage}/main`;
      const { token } = await p.identity.authority.mintJwtSvid(spiffe, [PLATFORM_AUD]);
      const send = async (temporality: AggregationTemporality) => {
        const exporter = new InMemoryMetricExporter(temporality);
        const provider = new MeterProvider({
          resource: resourceFromAttributes({ "service.name": "metrics-agent" }),
          readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 })],
        });
        const m = provider.getMeter("hexr");
        m.createCounter("hexr.agent.invocations").add(2, { status: "ok", framework: "custom" });
        m.createCounter("hexr.llm.tokens").add(150, { provider: "openai", model: "gpt-4o", type: "input" });
        m.createHistogram("hexr.agent.invocation.duration", {
          unit: "s",
          advice: { explicitBucketBoundaries: [0.01, 0.1] },
        }).record(0.05, { status: "ok", framework: "custom" });
        m.createCounter("my.unknown.metric").add(1);
        await provider.forceFlush();
        const body = Buffer.from(ProtobufMetricsSerializer.serializeRequest(exporter.getMetrics()[0]!)!);
        await provider.shutdown();
        const res = await post(p, "/v1/metrics", body, { "content-type": "application/x-protobuf" }, token);
        expect(res.status).toBe(200);
        return otlp.ExportMetricsServiceResponse.toObject(
          otlp.ExportMetricsServiceResponse.decode(Buffer.from(await res.arrayBuffer())),
          { longs: Number },
        );
      };
      const answer = await send(AggregationTemporality.DELTA);
      expect(answer["partialSuccess"]).toMatchObject({
        rejectedDataPoints: 1,
        errorMessage: expect.stringContaining("my.unknown.metric"),
      });
      const scrape = async () => (await (await p.api("/metrics")).text()).split("\n");
      const id = `tenant="acme",agent="metrics-${storage}",role="main",spiffe_id="${spiffe}"`;
      let lines = await scrape();
      expect(lines).toContain(`hexr_agent_invocations_total{${id},framework="custom",status="ok"} 2`);
      expect(lines).toContain(`hexr_llm_tokens_total{${id},provider="openai",model="gpt-4o",type="input"} 150`);
      // 0.05 s in the source bucket (0.01, 0.1] lands in our le="0.1" bucket, never lower
      expect(lines).toContain(`hexr_agent_invocation_duration_seconds_bucket{${id},framework="custom",status="ok",le="0.05"} 0`);
      expect(lines).toContain(`hexr_agent_invocation_duration_seconds_bucket{${id},framework="custom",status="ok",le="0.1"} 1`);
      expect(lines).toContain(`hexr_agent_invocation_duration_seconds_count{${id},framework="custom",status="ok"} 1`);
      await send(AggregationTemporality.DELTA);
      lines = await scrape();
      expect(lines).toContain(`hexr_agent_invocations_total{${id},framework="custom",status="ok"} 4`);
      // HTTP metrics of the platform itself
      expect(lines.some((l) => l.startsWith('hexr_http_requests_total{method="POST",route="/v1/metrics",status="200"}'))).toBe(
        true,
      );
    });
  });
}
