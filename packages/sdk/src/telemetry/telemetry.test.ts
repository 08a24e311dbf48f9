import { context, SpanStatusCode, trace } from "@opentelemetry/api";
import type { ResourceMetrics } from "@opentelemetry/sdk-metrics";
import { afterEach, describe, expect, it } from "vitest";
import { REDACTED } from "./attributes.js";
import { setupMemoryTelemetry, type MemoryTelemetry } from "./memory.js";
import { traceA2aSend, traceAgentInvocation } from "./invocation.js";
import { extractTraceContext, injectTraceHeaders, withTraceContext } from "./propagation.js";
import { ATTR, METRIC, RESOURCE, SPAN } from "./semconv.js";
import { setupTelemetry, type Telemetry } from "./setup.js";
import { setSpanAttributes, withSpan } from "./span.js";

let t: Telemetry | undefined;
afterEach(async () => {
  await t?.shutdown();
  t = undefined;
});

function metricPoints(t: MemoryTelemetry, name: string) {
  const all: ResourceMetrics[] = t.metricExporter.getMetrics();
  return all.flatMap((rm) =>
    rm.scopeMetrics.flatMap((s) => s.metrics.filter((m) => m.descriptor.name === name).flatMap((m) => m.dataPoints)),
  );
}

describe("setupTelemetry", () => {
  it("puts the SPIFFE identity on every span's resource", async () => {
    const m = setupMemoryTelemetry({
      spiffeId: "spiffe://hexr.local/agent/acme/content-crew/writer",
      tenant: "acme",
      agent: "content-crew",
      role: "writer",
      framework: "ai-sdk",
    });
    t = m;
    await withSpan(SPAN.AGENT_INVOKE, async () => "done");
    const [span] = m.spans();
    expect(span!.resource.attributes).toMatchObject({
      [RESOURCE.SERVICE_NAME]: "content-crew",
      [RESOURCE.SPIFFE_ID]: "spiffe://hexr.local/agent/acme/content-crew/writer",
      [RESOURCE.TENANT]: "acme",
      [RESOURCE.AGENT]: "content-crew",
      [RESOURCE.ROLE]: "writer",
      [RESOURCE.FRAMEWORK]: "ai-sdk",
    });
  });

  it("rejects options without an identity", () => {
    expect(() => setupTelemetry({ spiffeId: "", tenant: "a", agent: "b", role: "c" })).toThrow(/spiffeId/);
    expect(() => setupTelemetry({ spiffeId: "http://x", tenant: "a", agent: "b", role: "c" })).toThrow(/spiffe:\/\//);
    expect(() => setupTelemetry({ spiffeId: "spiffe://td/x", tenant: "a", agent: "b", role: "c", endpoint: "ftp://x" })).toThrow(
      /endpoint/,
    );
  });

  it("is a no-op when HEXR_TELEMETRY_DISABLED=true", async () => {
    t = setupTelemetry({
      spiffeId: "spiffe://td/a",
      tenant: "a",
      agent: "b",
      role: "c",
      env: { HEXR_TELEMETRY_DISABLED: "true" },
    });
    expect(t.enabled).toBe(false);
    expect(await withSpan("x", async (span) => span.isRecording())).toBe(false);
  });

  it("unregisters the global provider on shutdown, and a second setup replaces the first", async () => {
    const first = setupMemoryTelemetry();
    const second = setupMemoryTelemetry();
    t = second;
    withSpan("after-replace", () => undefined);
    expect(first.spans()).toHaveLength(0);
    expect(second.spans().map((s) => s.name)).toEqual(["after-replace"]);
    await second.shutdown();
    await second.shutdown();
    expect(withSpan("after-shutdown", (span) => span.isRecording())).toBe(false);
  });
});

describe("withSpan", () => {
  it("ends the span OK with the value of a sync or async function", async () => {
    const m = (t = setupMemoryTelemetry());
    expect(withSpan("sync", () => 42)).toBe(42);
    expect(await withSpan("async", { attributes: { a: 1 } }, async () => "x")).toBe("x");
    const spans = m.spans();
    expect(spans.map((s) => [s.name, s.status.code])).toEqual([
      ["sync", SpanStatusCode.OK],
      ["async", SpanStatusCode.OK],
    ]);
    expect(spans[1]!.attributes["a"]).toBe(1);
  });

  it("records a thrown error or rejection, re-throws the same error, and keeps a status the callee set", async () => {
    const m = (t = setupMemoryTelemetry());
    const boom = Object.assign(new Error("upstream said no"), { code: "tool.denied" });
    expect(() =>
      withSpan("sync-fail", () => {
        throw boom;
      }),
    ).toThrow(boom);
    await expect(
      withSpan("async-fail", async () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    withSpan("handled", (span) => span.setStatus({ code: SpanStatusCode.ERROR, message: "handled" }));
    const [a, b, c] = m.spans();
    for (const s of [a!, b!]) {
      expect(s.status.code).toBe(SpanStatusCode.ERROR);
      expect(s.attributes[ATTR.ERROR_TYPE]).toBe("tool.denied");
      expect(s.events.map((e) => e.name)).toEqual(["exception"]);
    }
    expect(c!.status).toEqual({ code: SpanStatusCode.ERROR, message: "handled" });
  });

  it("nests: a span started inside another is its child, across awaits", async () => {
    const m = (t = setupMemoryTelemetry());
    await withSpan(SPAN.AGENT_INVOKE, async () => {
      await new Promise((r) => setTimeout(r, 1));
      await withSpan(SPAN.TOOL_INVOKE, async () => undefined);
    });
    const tool = m.spansNamed(SPAN.TOOL_INVOKE)[0]!;
    const agent = m.spansNamed(SPAN.AGENT_INVOKE)[0]!;
    expect(tool.spanContext().traceId).toBe(agent.spanContext().traceId);
    expect(tool.parentSpanContext?.spanId).toBe(agent.spanContext().spanId);
  });

  it("cleans bad attribute data instead of failing: objects, functions, NaN, huge strings, hostile getters", () => {
    const m = (t = setupMemoryTelemetry());
    const circular: Record<string, unknown> = {};
    circular["self"] = circular;
    const hostile = new Proxy(
      {},
      {
        ownKeys() {
          throw new Error("no keys for you");
        },
      },
    );
    withSpan(
      "bad",
      {
        attributes: {
          circular,
          fn: () => 1,
          sym: Symbol("s"),
          nan: NaN,
          big: 10n,
          long: "x".repeat(100_000),
          mixed: [1, "a"],
          ok: "fine",
        },
      },
      () => undefined,
    );
    withSpan("hostile", { attributes: hostile }, () => undefined);
    setSpanAttributes({ late: "yes" }); // outside a span: no-op
    const [bad, hostileSpan] = m.spans();
    expect(bad!.attributes).toMatchObject({ nan: "NaN", big: "10", ok: "fine" });
    expect(bad!.attributes["circular"]).toBeUndefined();
    expect(bad!.attributes["fn"]).toBeUndefined();
    expect(bad!.attributes["mixed"]).toBeUndefined();
    expect((bad!.attributes["long"] as string).length).toBeLessThanOrEqual(4096);
    expect(hostileSpan!.attributes).toEqual({});
  });

  it("never records credentials, whoever sets them", async () => {
    const m = (t = setupMemoryTelemetry());
    const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9oZXhyLmxvY2FsIn0.c2lnbmF0dXJlc2lnbmF0dXJl";
    withSpan(
      "helper",
      { attributes: { authorization: "Bearer abcdefghijklmnop", note: jwt, "db.password": "hunter2" } },
      () => undefined,
    );
    // Raw API, bypassing the helper: the redacting processor still catches it.
    const raw = trace.getTracer("other-lib").startSpan("raw");
    raw.setAttribute("http.request.header.authorization", "Bearer zzzzzzzzzzzzzzzzzzzz");
    raw.setAttribute("key", "sk-proj-abcdefghijklmnopqrstuvwx");
    raw.setAttribute("gen_ai.usage.input_tokens", 12);
    raw.recordException(new Error(`call failed with header Bearer ${jwt}`));
    raw.end();
    const [helper, rawSpan] = m.spans();
    expect(helper!.attributes).toEqual({ authorization: REDACTED, note: REDACTED, "db.password": REDACTED });
    expect(rawSpan!.attributes).toMatchObject({
      "http.request.header.authorization": REDACTED,
      key: REDACTED,
      "gen_ai.usage.input_tokens": 12,
    });
    expect(JSON.stringify(rawSpan!.events)).not.toContain(jwt);
  });

  it("keeps running the caller's code when a span processor throws", async () => {
    const m = (t = setupMemoryTelemetry({
      spanProcessors: [
        {
          onStart: () => {
            throw new Error("processor bug");
          },
          onEnd: () => {
            throw new Error("processor bug");
          },
          forceFlush: () => Promise.reject(new Error("flush bug")),
          shutdown: () => Promise.reject(new Error("shutdown bug")),
        },
      ],
    }));
    expect(await withSpan("survives", async () => "ok")).toBe("ok");
    await m.forceFlush();
    expect(m.spans()).toHaveLength(1);
  });
});

describe("metrics derived from spans", () => {
  it("counts invocations, tokens, cost, cache hits and A2A states with their labels", async () => {
    const m = (t = setupMemoryTelemetry({ framework: "openai" }));
    await withSpan(SPAN.AGENT_INVOKE, async () => {
      withSpan(SPAN.CACHE_LOOKUP, { attributes: { [ATTR.CACHE_TIER]: "L1", [ATTR.CACHE_HIT]: false } }, () => undefined);
      withSpan(SPAN.CACHE_LOOKUP, { attributes: { [ATTR.CACHE_TIER]: "L2", [ATTR.CACHE_HIT]: true } }, () => undefined);
      withSpan(
        SPAN.LLM_CHAT,
        {
          attributes: {
            [ATTR.GEN_AI_PROVIDER]: "openai",
            [ATTR.GEN_AI_REQUEST_MODEL]: "gpt-4o",
            [ATTR.GEN_AI_USAGE_INPUT_TOKENS]: 100,
            [ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]: 20,
            [ATTR.LLM_COST_USD]: 0.00045,
          },
        },
        () => undefined,
      );
      withSpan(
        SPAN.A2A_SEND,
        { attributes: { [ATTR.A2A_TARGET]: "writer", [ATTR.A2A_TASK_STATE]: "completed" } },
        () => undefined,
      );
    });
    await expect(withSpan(SPAN.AGENT_INVOKE, async () => Promise.reject(new Error("x")))).rejects.toThrow();
    await m.forceFlush();

    const inv = metricPoints(m, METRIC.AGENT_INVOCATIONS).map((p) => [p.attributes, p.value]);
    expect(inv).toEqual(
      expect.arrayContaining([
        [{ status: "ok", framework: "openai" }, 1],
        [{ status: "error", framework: "openai" }, 1],
      ]),
    );
    const tokens = metricPoints(m, METRIC.LLM_TOKENS).map((p) => [p.attributes["type"], p.value]);
    expect(tokens).toEqual(
      expect.arrayContaining([
        ["input", 100],
        ["output", 20],
      ]),
    );
    expect(metricPoints(m, METRIC.LLM_COST)[0]!.value).toBeCloseTo(0.00045);
    const cache = metricPoints(m, METRIC.CACHE_LOOKUPS).map((p) => [p.attributes["tier"], p.attributes["result"], p.value]);
    expect(cache).toEqual(
      expect.arrayContaining([
        ["L1", "miss", 1],
        ["L2", "hit", 1],
      ]),
    );
    expect(metricPoints(m, METRIC.A2A_SENDS)[0]!.attributes).toEqual({ target: "writer", state: "completed" });
    const hist = metricPoints(m, METRIC.AGENT_DURATION);
    expect(hist.length).toBe(2);
  });
});

describe("W3C trace context", () => {
  it("injects the active span and extracts it from any header carrier", async () => {
    t = setupMemoryTelemetry();
    const headers = withSpan("client", () => injectTraceHeaders());
    expect(headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const [, traceId, spanId] = headers.traceparent!.split("-");
    for (const carrier of [headers, new Headers(headers), { Traceparent: headers.traceparent }]) {
      const sc = trace.getSpanContext(extractTraceContext(carrier));
      expect(sc).toMatchObject({ traceId, spanId, isRemote: true });
    }
  });

  it("ignores malformed trace context and starts a new trace", () => {
    const m = (t = setupMemoryTelemetry());
    for (const bad of [
      "garbage",
      "00-00000000000000000000000000000000-0000000000000000-01",
      "ff-" + "a".repeat(32) + "-" + "b".repeat(16) + "-01",
      "",
    ]) {
      expect(trace.getSpanContext(extractTraceContext({ traceparent: bad }))).toBeUndefined();
      withTraceContext({ traceparent: bad }, () => withSpan("server", () => undefined));
    }
    for (const s of m.spans()) expect(s.parentSpanContext).toBeUndefined();
  });

  it("adds nothing outside a span", () => {
    t = setupMemoryTelemetry();
    expect(context.with(context.active(), () => injectTraceHeaders())).toEqual({});
  });
});

describe("traceAgentInvocation", () => {
  const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

  it("continues the caller's trace and records the invocation's attributes", async () => {
    const m = (t = setupMemoryTelemetry());
    const out = await traceAgentInvocation(
      {
        headers: { traceparent: caller },
        framework: "ai-sdk",
        caller: "spiffe://hexr.local/agent/acme/crew/researcher",
        taskId: "t1",
      },
      async () => {
        await withSpan(SPAN.LLM_CHAT, async () => undefined);
        return "done";
      },
    );
    expect(out).toBe("done");
    const agent = m.spansNamed(SPAN.AGENT_INVOKE)[0]!;
    expect(agent.spanContext().traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(agent.parentSpanContext?.spanId).toBe("b7ad6b7169203331");
    expect(agent.attributes).toEqual({
      [ATTR.FRAMEWORK]: "ai-sdk",
      [ATTR.CALLER]: "spiffe://hexr.local/agent/acme/crew/researcher",
      [ATTR.TASK_ID]: "t1",
    });
    expect(m.spansNamed(SPAN.LLM_CHAT)[0]!.parentSpanContext?.spanId).toBe(agent.spanContext().spanId);
  });

  it("keeps the span open over a generator handler, nesting the spans made while it runs", async () => {
    const m = (t = setupMemoryTelemetry());
    async function* handler() {
      yield "working";
      await withSpan(SPAN.TOOL_INVOKE, async () => undefined);
      yield "done";
    }
    const updates: string[] = [];
    for await (const u of traceAgentInvocation({}, handler) as AsyncIterable<string>) {
      updates.push(u);
      if (updates.length === 1) expect(m.spansNamed(SPAN.AGENT_INVOKE)).toHaveLength(0);
    }
    expect(updates).toEqual(["working", "done"]);
    const agent = m.spansNamed(SPAN.AGENT_INVOKE)[0]!;
    expect(agent.status.code).toBe(SpanStatusCode.OK);
    expect(m.spansNamed(SPAN.TOOL_INVOKE)[0]!.parentSpanContext?.spanId).toBe(agent.spanContext().spanId);
  });

  it("records failures of sync, async and generator handlers, and re-throws them", async () => {
    const m = (t = setupMemoryTelemetry());
    const boom = new Error("no");
    expect(() =>
      traceAgentInvocation({}, () => {
        throw boom;
      }),
    ).toThrow(boom);
    await expect(
      traceAgentInvocation({}, async () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    async function* bad() {
      yield 1;
      throw boom;
    }
    await expect(
      (async () => {
        for await (const x of traceAgentInvocation({}, bad) as AsyncIterable<number>) void x;
      })(),
    ).rejects.toBe(boom);
    expect(m.spansNamed(SPAN.AGENT_INVOKE).map((s) => s.status.code)).toEqual([
      SpanStatusCode.ERROR,
      SpanStatusCode.ERROR,
      SpanStatusCode.ERROR,
    ]);
  });
});

describe("traceA2aSend", () => {
  it("sends the trace along, records target and task state, and nests the callee under it", async () => {
    const m = (t = setupMemoryTelemetry());
    const task = await withSpan(SPAN.AGENT_INVOKE, () =>
      traceA2aSend("content-crew/writer", async (headers) => {
        // what the callee does with the headers it received
        await traceAgentInvocation({ headers }, async () => undefined);
        return { id: "t1", status: { state: "TASK_STATE_INPUT_REQUIRED" } };
      }),
    );
    expect(task.id).toBe("t1");
    const send = m.spansNamed(SPAN.A2A_SEND)[0]!;
    expect(send.attributes).toEqual({ [ATTR.A2A_TARGET]: "content-crew/writer", [ATTR.A2A_TASK_STATE]: "input-required" });
    const [caller, callee] = m
      .spansNamed(SPAN.AGENT_INVOKE)
      .sort((a, b) => (a.parentSpanContext ? 1 : 0) - (b.parentSpanContext ? 1 : 0));
    expect(send.parentSpanContext?.spanId).toBe(caller!.spanContext().spanId);
    expect(callee!.parentSpanContext?.spanId).toBe(send.spanContext().spanId);
  });

  it("records a failed send and re-throws", async () => {
    const m = (t = setupMemoryTelemetry());
    const boom = new Error("unreachable");
    await expect(traceA2aSend("writer", async () => Promise.reject(boom))).rejects.toBe(boom);
    expect(m.spansNamed(SPAN.A2A_SEND)[0]!.attributes[ATTR.A2A_TASK_STATE]).toBe("failed");
    expect(m.spansNamed(SPAN.A2A_SEND)[0]!.status.code).toBe(SpanStatusCode.ERROR);
  });
});
