import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../test-support/platform.js";
import { IDENTITY_LABELS } from "./metrics/catalog.js";
import { startMetricsPush } from "./metrics/push.js";
import { MetricRegistry } from "./metrics/registry.js";
import { agentResource, makeSpans, otlpBody } from "./test-support/otlp.js";

async function until<T>(fn: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("forwarding to an external OTLP endpoint", () => {
  // The external endpoint is a second Hexr platform: a real OTLP/HTTP receiver with a query API.
  let collector: TestPlatform;
  let platform: TestPlatform;
  let dead: Server;
  let deadPlatform: TestPlatform;
  beforeAll(async () => {
    collector = await startTestPlatform();
    platform = await startTestPlatform({
      config: {
        telemetry: { forwardUrl: collector.url + "/", forwardHeaders: { authorization: `Bearer ${collector.adminKey}` } },
      },
    });
    dead = createServer((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    deadPlatform = await startTestPlatform({
      config: { telemetry: { forwardUrl: `http://127.0.0.1:${(dead.address() as AddressInfo).port}`, forwardTimeoutMs: 500 } },
    });
  });
  afterAll(async () => {
    await platform?.dispose();
    await deadPlatform?.dispose();
    await collector?.dispose();
    dead?.close();
  });

  it("sends a copy of accepted spans, with their verified resource, and of the platform's own spans", async () => {
    const spans = makeSpans(agentResource("acme", "content-crew", "writer"), ({ span }) => void span("hexr.agent.invoke"));
    const { traceId, spanId } = spans[0]!.spanContext();
    const { body, headers } = otlpBody(spans);
    expect((await platform.api("/v1/traces", { method: "POST", body, headers })).status).toBe(200);
    await platform.api("/api/v1/traces", { headers: { traceparent: `00-${traceId}-${spanId}-01` } });
    const forwarded = await until(async () => {
      const res = await collector.api(`/api/v1/traces/${traceId}`);
      if (res.status !== 200) return undefined;
      const d = (await res.json()) as { spans: Array<{ name: string; spiffeId: string; service: string }> };
      return d.spans.length === 2 ? d : undefined;
    }, "the forwarded spans");
    expect(forwarded.spans.map((s) => [s.name, s.spiffeId]).sort()).toEqual([
      ["GET /api/v1/traces", "spiffe://hexr.local/system/platform"],
      ["hexr.agent.invoke", "spiffe://hexr.local/agent/acme/content-crew/writer"],
    ]);
  });

  it("keeps accepting when the external endpoint fails, and counts the failures", async () => {
    const spans = makeSpans(agentResource("acme", "a", "main"), ({ span }) => void span("x"));
    const { body, headers } = otlpBody(spans);
    for (let i = 0; i < 3; i++)
      expect((await deadPlatform.api("/v1/traces", { method: "POST", body, headers })).status).toBe(200);
    expect((await deadPlatform.api(`/api/v1/traces/${spans[0]!.spanContext().traceId}`)).status).toBe(200);
    await until(async () => {
      const text = await (await deadPlatform.api("/metrics")).text();
      return /hexr_telemetry_forwarded_total\{signal="traces",result="failed"\} [1-9]/.test(text) ? true : undefined;
    }, "a counted forwarding failure");
  });
});

describe("sidecar metrics push", () => {
  let platform: TestPlatform;
  beforeAll(async () => {
    platform = await startTestPlatform({ config: { telemetry: { metricsAuth: "public" } } });
  });
  afterAll(async () => platform?.dispose());

  it("pushes cumulative mesh metrics that the platform exposes once, however often they are pushed", async () => {
    // A registry of another process (the mesh proxy in `hexr run`), with the platform's family names.
    const reg = new MetricRegistry();
    const handshakes = reg.histogram({
      name: "hexr_mtls_handshake_duration_seconds",
      help: "x",
      labelNames: [...IDENTITY_LABELS, "direction"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    });
    const active = reg.gauge({ name: "hexr_mtls_connections_active", help: "x", labelNames: [...IDENTITY_LABELS, "direction"] });
    const id = {
      tenant: "push-test",
      agent: "crew",
      role: "writer",
      spiffe_id: "spiffe://hexr.local/agent/push-test/crew/writer",
    };
    handshakes.observe({ ...id, direction: "inbound" }, 0.002);
    handshakes.observe({ ...id, direction: "inbound" }, 0.02);
    active.set({ ...id, direction: "inbound" }, 3);
    const push = startMetricsPush({
      endpoint: platform.url,
      resource: { "service.name": "hexr-mesh" },
      headers: () => ({ authorization: `Bearer ${platform.adminKey}` }),
      registry: reg,
      intervalMs: 60_000,
    });
    expect(await push.push()).toBe(true);
    expect(await push.push()).toBe(true);
    handshakes.observe({ ...id, direction: "inbound" }, 0.2);
    expect(await push.push()).toBe(true);
    await push.stop();
    const text = await (await platform.api("/metrics", { auth: null })).text();
    const labels = `tenant="push-test",agent="crew",role="writer",spiffe_id="${id.spiffe_id}",direction="inbound"`;
    expect(text).toContain(`hexr_mtls_handshake_duration_seconds_count{${labels}} 3`);
    expect(text).toContain(`hexr_mtls_handshake_duration_seconds_bucket{${labels},le="0.0025"} 1`);
    expect(text).toContain(`hexr_mtls_connections_active{${labels}} 3`);
    expect(push.stats).toEqual({ pushed: 4, failed: 0 });
  });

  it("reports a failed push instead of throwing", async () => {
    const reg = new MetricRegistry();
    reg.counter({ name: "hexr_mtls_rejections_total", help: "x", labelNames: ["reason"] }).inc({ reason: "tls" });
    const errors: Error[] = [];
    const push = startMetricsPush({ endpoint: platform.url, resource: {}, registry: reg, onError: (e) => errors.push(e) }); // no credentials
    expect(await push.push()).toBe(false);
    await push.stop();
    expect(errors[0]!.message).toContain("HTTP 401");
  });
});
