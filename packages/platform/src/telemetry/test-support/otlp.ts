import { context, SpanKind, SpanStatusCode, trace, type Context } from "@opentelemetry/api";
import { JsonTraceSerializer, ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { gzipSync } from "node:zlib";

export interface FakeAgent {
  /** Resource attributes the spans claim. */
  resource: Record<string, string | number>;
}

/** Builds spans with the real OpenTelemetry SDK, as an agent process would. */
export function makeSpans(
  resource: Record<string, string | number>,
  build: (t: {
    span: (
      name: string,
      opts?: { parent?: Context; error?: boolean; attrs?: Record<string, string | number | boolean> },
    ) => Context;
  }) => void,
): ReadableSpan[] {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes(resource),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer("hexr");
  build({
    span(name, opts = {}) {
      const s = tracer.startSpan(
        name,
        { kind: SpanKind.INTERNAL, ...(opts.attrs ? { attributes: opts.attrs } : {}) },
        opts.parent ?? context.active(),
      );
      if (opts.error) s.setStatus({ code: SpanStatusCode.ERROR, message: "failed" });
      s.end();
      return trace.setSpan(opts.parent ?? context.active(), s);
    },
  });
  return exporter.getFinishedSpans();
}

export function otlpBody(
  spans: ReadableSpan[],
  format: "protobuf" | "json" = "protobuf",
  gzip = false,
): { body: Buffer; headers: Record<string, string> } {
  let body = Buffer.from((format === "protobuf" ? ProtobufTraceSerializer : JsonTraceSerializer).serializeRequest(spans)!);
  if (gzip) body = gzipSync(body);
  return {
    body,
    headers: {
      "content-type": format === "protobuf" ? "application/x-protobuf" : "application/json",
      ...(gzip ? { "content-encoding": "gzip" } : {}),
    },
  };
}

export const agentResource = (tenant: string, agent: string, role: string, td = "hexr.local") => ({
  "service.name": agent,
  "hexr.spiffe_id": `spiffe://${td}/agent/${tenant}/${agent}/${role}`,
  "hexr.tenant": tenant,
  "hexr.agent": agent,
  "hexr.role": role,
});
