import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { SPAN } from "./semconv.js";
import { setupTelemetry, type Telemetry } from "./setup.js";
import { withSpan } from "./span.js";

interface Received {
  path: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

async function listen(
  handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void,
): Promise<{ server: Server; url: string; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      received.push({ path: req.url ?? "", headers: req.headers, body });
      handler(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

const identity = {
  spiffeId: "spiffe://hexr.local/agent/acme/research-analyst/main",
  tenant: "acme",
  agent: "research-analyst",
  role: "main",
};

let t: Telemetry | undefined;
let servers: Server[] = [];
afterEach(async () => {
  await t?.shutdown(2000);
  t = undefined;
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  servers = [];
});

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const handler1ms = () => withSpan(SPAN.AGENT_INVOKE, async () => new Promise<string>((r) => setTimeout(() => r("answer"), 1)));

describe("OTLP export", () => {
  it("sends spans and metrics as OTLP protobuf to <endpoint>/v1/traces and /v1/metrics with the caller's headers", async () => {
    const srv = await listen((_req, res) => {
      res.writeHead(200, { "content-type": "application/x-protobuf" });
      res.end();
    });
    servers.push(srv.server);
    let calls = 0;
    t = setupTelemetry({
      ...identity,
      endpoint: srv.url + "/",
      headers: async () => ({ authorization: `Bearer token-${++calls}` }),
      batch: { scheduledDelayMs: 10 },
      metricIntervalMs: 100,
    });
    const traceIds: string[] = [];
    for (let i = 0; i < 3; i++) {
      await withSpan(SPAN.AGENT_INVOKE, async (span) => {
        traceIds.push(span.spanContext().traceId);
      });
    }
    await t.forceFlush();
    await until(() => srv.received.some((r) => r.path === "/v1/metrics"), "a metrics export");
    const traces = srv.received.filter((r) => r.path === "/v1/traces");
    expect(traces.length).toBeGreaterThan(0);
    for (const r of srv.received) {
      expect(r.headers["content-type"]).toBe("application/x-protobuf");
      expect(r.headers.authorization).toMatch(/^Bearer token-\d+$/);
    }
    const all = Buffer.concat(traces.map((r) => r.body));
    // Trace ids travel as 16 raw bytes in OTLP protobuf; the SPIFFE ID as a resource string.
    for (const id of traceIds) expect(all.includes(Buffer.from(id, "hex"))).toBe(true);
    expect(all.includes(Buffer.from(identity.spiffeId))).toBe(true);
    expect(t.spanExportStats.exported).toBe(3);
    expect(t.spanExportStats.failed).toBe(0);
  });

  it("keeps the agent working when the exporter is down, and warns once", async () => {
    const srv = await listen(() => undefined);
    const url = srv.url;
    await new Promise((r) => srv.server.close(r)); // nothing listens there any more
    const warnings: string[] = [];
    t = setupTelemetry({
      ...identity,
      endpoint: url,
      batch: { scheduledDelayMs: 5 },
      exportTimeoutMs: 1000,
      warn: (m) => warnings.push(m),
    });
    const results = [];
    for (let i = 0; i < 50; i++) results.push(await handler1ms());
    expect(results.every((r) => r === "answer")).toBe(true);
    await t.forceFlush();
    await until(() => t!.spanExportStats.failed > 0, "a failed export");
    // one warning per signal, not one per failed batch
    const spanWarnings = warnings.filter((w) => w.includes("span(s)"));
    expect(spanWarnings.length).toBe(1);
    expect(spanWarnings[0]).toContain(`could not export`);
    expect(spanWarnings[0]).toContain(url);
    await t.shutdown();
  });

  it("keeps the agent working when the collector hangs, bounded by the export timeout and the queue", async () => {
    const srv = await listen(() => undefined); // accepts requests, never answers
    servers.push(srv.server);
    t = setupTelemetry({
      ...identity,
      endpoint: srv.url,
      batch: { scheduledDelayMs: 5, maxQueueSize: 64, maxExportBatchSize: 16 },
      exportTimeoutMs: 300,
      warn: () => undefined,
    });
    const results = await Promise.all(Array.from({ length: 200 }, handler1ms));
    expect(results.every((r) => r === "answer")).toBe(true);
    await until(() => srv.received.length > 0, "the collector to receive a request");
    await until(() => t!.spanExportStats.failed > 0, "an export to time out");
    // flush and shutdown resolve even though the collector never answers
    await t.forceFlush(500);
    await t.shutdown(500);
  });

  it("treats an error status, a throwing header factory and garbage replies as failed exports, not agent errors", async () => {
    const srv = await listen((req, res) => {
      if (req.url === "/v1/traces") {
        res.writeHead(400, { "content-type": "application/json" });
        res.end("{not json");
      } else res.end();
    });
    servers.push(srv.server);
    let throwNow = true;
    t = setupTelemetry({
      ...identity,
      endpoint: srv.url,
      batch: { scheduledDelayMs: 5 },
      warn: () => undefined,
      headers: () => {
        throwNow = !throwNow;
        if (!throwNow) throw new Error("no SVID yet");
        return { authorization: "Bearer x" };
      },
    });
    for (let i = 0; i < 5; i++) {
      expect(await handler1ms()).toBe("answer");
      await t.forceFlush();
    }
    await until(() => t!.spanExportStats.failed >= 5, "failed exports");
    expect(t.spanExportStats.exported).toBe(0);
  });

  it("exports spans whose data is odd: lone surrogates, empty names, many attributes and events", async () => {
    const srv = await listen((_req, res) => res.end());
    servers.push(srv.server);
    t = setupTelemetry({ ...identity, endpoint: srv.url, batch: { scheduledDelayMs: 5 }, warn: () => undefined });
    withSpan("", { attributes: { s: "\ud800broken\udfff", empty: "" } }, (span) => {
      for (let i = 0; i < 500; i++) span.setAttribute(`k${i}`, i);
      for (let i = 0; i < 500; i++) span.addEvent(`e${i}`);
    });
    await t.forceFlush();
    await until(() => t!.spanExportStats.exported === 1, "the odd span to be exported");
  });
});
