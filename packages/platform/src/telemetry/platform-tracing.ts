import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
  type TextMapGetter,
  type Tracer,
} from "@opentelemetry/api";
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from "node:http";
import type { RouteDef } from "../http/router.js";
import { httpInFlight, metrics } from "./metrics/catalog.js";
import type { AttrValue, Attrs, OtlpResourceSpans, OtlpSpan } from "./otlp/model.js";

const hrToNs = (t: [number, number]): bigint => BigInt(t[0]) * 1_000_000_000n + BigInt(t[1]);

function toAttrs(a: Attributes): Attrs {
  const out: Attrs = {};
  for (const [k, v] of Object.entries(a)) if (v !== undefined) out[k] = v as AttrValue;
  return out;
}

/** SDK spans → the OTLP model the store and forwarder take. */
export function toOtlp(spans: ReadableSpan[]): OtlpResourceSpans[] {
  const byResource = new Map<object, OtlpResourceSpans>();
  for (const s of spans) {
    let rs = byResource.get(s.resource);
    if (!rs) {
      rs = {
        resource: toAttrs(s.resource.attributes),
        scopeSpans: [{ scope: { name: s.instrumentationScope.name, version: s.instrumentationScope.version }, spans: [] }],
      };
      byResource.set(s.resource, rs);
    }
    const sc = s.spanContext();
    const span: OtlpSpan = {
      traceId: sc.traceId,
      spanId: sc.spanId,
      parentSpanId: s.parentSpanContext?.spanId,
      traceState: undefined,
      name: s.name,
      kind: s.kind + 1, // API kinds start at INTERNAL = 0, OTLP's at UNSPECIFIED = 0
      startNs: hrToNs(s.startTime),
      endNs: hrToNs(s.endTime),
      attributes: toAttrs(s.attributes),
      events: s.events.map((e) => ({ name: e.name, timeNs: hrToNs(e.time), attributes: toAttrs(e.attributes ?? {}) })),
      links: s.links.map((l) => ({
        traceId: l.context.traceId,
        spanId: l.context.spanId,
        attributes: toAttrs(l.attributes ?? {}),
      })),
      status: { code: s.status.code as number, message: s.status.message },
    };
    rs.scopeSpans[0]!.spans.push(span);
  }
  return [...byResource.values()];
}

/** Hands finished platform spans to the trace store (and forwarder) in process: no network hop to ourselves. */
class SinkExporter implements SpanExporter {
  constructor(private readonly sink: (spans: OtlpResourceSpans[]) => Promise<void>) {}
  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.sink(toOtlp(spans)).then(
      () => done({ code: ExportResultCode.SUCCESS }),
      (err: unknown) => done({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) }),
    );
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const headerGetter: TextMapGetter<IncomingHttpHeaders> = {
  keys: (c) => Object.keys(c),
  get: (c, k) => c[k],
};

/** Paths that are telemetry plumbing or probes: never traced (an exporter's POST must not make spans of its own). */
const UNTRACED = new Set(["/v1/traces", "/v1/metrics", "/metrics", "/healthz", "/readyz"]);
/** Where agent work enters from outside: traced even without a caller's traceparent (the platform starts the trace). */
const ENTRY_POINTS = [/^\/a2a\/[^/]+\/[^/]+\/?$/];

interface CompiledRoute {
  method: string;
  path: string;
  segments: (string | null)[];
}

/** Maps a request to its route template (`/api/v1/tenants/:tenant`), so labels stay few. */
export function routeMatcher(defs: readonly RouteDef[]): (method: string, pathname: string) => string {
  const compiled: CompiledRoute[] = defs.map((d) => ({
    method: d.method,
    path: d.path,
    segments: d.path
      .split("/")
      .filter(Boolean)
      .map((s) => (s.startsWith(":") ? null : s)),
  }));
  return (method, pathname) => {
    const parts = pathname.split("/").filter(Boolean);
    let best: CompiledRoute | undefined;
    for (const r of compiled) {
      if (r.method !== method || r.segments.length !== parts.length) continue;
      if (!r.segments.every((s, i) => s === null || s === parts[i])) continue;
      // a static route beats one with parameters
      if (!best || r.segments.filter((s) => s !== null).length > best.segments.filter((s) => s !== null).length) best = r;
    }
    return best?.path ?? "unmatched";
  };
}

export interface PlatformTracing {
  readonly tracer: Tracer;
  /** Records metrics for every request of `server`, and a server span for those that carry a traceparent. */
  observe(server: Server, defs: readonly RouteDef[]): void;
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

export interface PlatformTracingOptions {
  /** SPIFFE ID of the platform (`spiffe://<td>/system/platform`). */
  spiffeId: string;
  sink: (spans: OtlpResourceSpans[]) => Promise<void>;
  traceRequests: boolean;
  scheduledDelayMs?: number;
}

/**
 * The platform's own tracing: a private OpenTelemetry provider (never the global one, so several
 * platforms and agents can share a process in tests) whose spans go straight to the store.
 */
export function createPlatformTracing(opts: PlatformTracingOptions): PlatformTracing {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      "service.name": "hexr-platform",
      "hexr.spiffe_id": opts.spiffeId,
      "hexr.system.service": "platform",
      "process.pid": process.pid,
    }),
    spanProcessors: [
      new BatchSpanProcessor(new SinkExporter(opts.sink), {
        scheduledDelayMillis: opts.scheduledDelayMs ?? 200,
        maxQueueSize: 4096,
      }),
    ],
  });
  const tracer = provider.getTracer("hexr-platform");
  const propagator = new W3CTraceContextPropagator();

  return {
    tracer,
    observe(server, defs) {
      const routeOf = routeMatcher(defs);
      server.prependListener("request", (req: IncomingMessage, res: ServerResponse) => {
        const started = process.hrtime.bigint();
        const method = req.method === "HEAD" ? "GET" : (req.method ?? "GET");
        const url = req.url ?? "/";
        const q = url.indexOf("?");
        const pathname = q === -1 ? url : url.slice(0, q);
        let route = "unmatched";
        let span: Span | undefined;
        try {
          route = routeOf(method, pathname);
          httpInFlight.inc();
          if (opts.traceRequests && !UNTRACED.has(pathname)) {
            const parent = req.headers.traceparent ? propagator.extract(ROOT_CONTEXT, req.headers, headerGetter) : ROOT_CONTEXT;
            if (trace.getSpanContext(parent) || (method === "POST" && ENTRY_POINTS.some((re) => re.test(pathname)))) {
              span = tracer.startSpan(
                `${method} ${route}`,
                {
                  kind: SpanKind.SERVER,
                  attributes: { "http.request.method": method, "http.route": route, "url.path": pathname },
                },
                parent,
              );
              // Handlers that relay the request (the A2A ingress) pass traceparent on: make it name
              // this span, so what happens downstream nests under the platform's part of the trace.
              const carrier: Record<string, string> = {};
              propagator.inject(trace.setSpan(parent, span), carrier, { set: (c, k, v) => (c[k] = v) });
              if (carrier["traceparent"]) req.headers.traceparent = carrier["traceparent"];
              if (carrier["tracestate"]) req.headers.tracestate = carrier["tracestate"];
            }
          }
        } catch {
          // observing must never break serving
        }
        res.once("close", () => {
          try {
            httpInFlight.dec();
            const status = res.statusCode;
            metrics.recordHttpRequest(method, route, status, Number(process.hrtime.bigint() - started) / 1e9);
            if (span) {
              span.setAttribute("http.response.status_code", status);
              if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: `HTTP ${status}` });
              span.end();
            }
          } catch {
            // ignore
          }
        });
      });
    },
    forceFlush: () => provider.forceFlush().catch(() => undefined),
    shutdown: () => provider.shutdown().catch(() => undefined),
  };
}
