import { HexrError } from "@hexr/core";
import type { IncomingMessage } from "node:http";
import { gunzipSync, inflateSync } from "node:zlib";
import { z } from "zod";
import type { Principal, TenantScope } from "../auth/principal.js";
import { defineRoute, queryInt, RESPONSE_SENT, type RouteDef } from "../http/router.js";
import type { Forwarder } from "./forward.js";
import { registry } from "./metrics/catalog.js";
import { decodeMetrics, decodeTraces, encodeMetrics, encodeTraces, exportResponse, type OtlpFormat } from "./otlp/codec.js";
import { TraceDetail, TraceSummary, type TelemetryService } from "./service.js";
import type { TraceAccess } from "./store.js";

export interface TelemetryRouteDeps {
  service: TelemetryService;
  forwarder: Forwarder | undefined;
  resolveTenant: (name: string) => Promise<TenantScope>;
  maxRequestBytes: number;
  metricsAuth: "admin" | "public";
  clock: () => number;
}

const FORMATS: Record<string, OtlpFormat> = {
  "application/x-protobuf": "protobuf",
  "application/protobuf": "protobuf",
  "application/json": "json",
};

function tooLarge(limit: number): HexrError {
  return new HexrError("request.too_large", `the OTLP request exceeds the limit of ${limit} bytes`, {
    kind: "payload_too_large",
    details: { limit },
  });
}

/** Reads an OTLP body: content type, size limit, gzip/deflate (bounded after decompression too). */
async function readOtlpBody(req: IncomingMessage, limit: number): Promise<{ body: Buffer; format: OtlpFormat }> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  const format = FORMATS[type];
  if (!format) {
    req.resume();
    throw new HexrError(
      "request.unsupported_media_type",
      `content-type must be application/x-protobuf or application/json (got '${type || "none"}')`,
      {
        kind: "unsupported_media_type",
      },
    );
  }
  const encoding = (req.headers["content-encoding"] ?? "identity").toLowerCase();
  if (!["identity", "gzip", "deflate"].includes(encoding)) {
    req.resume();
    throw new HexrError("request.unsupported_encoding", `content-encoding must be gzip, deflate or none (got '${encoding}')`, {
      kind: "unsupported_media_type",
    });
  }
  if (Number(req.headers["content-length"] ?? 0) > limit) {
    req.resume();
    throw tooLarge(limit);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) {
      req.resume();
      throw tooLarge(limit);
    }
    chunks.push(c as Buffer);
  }
  let body = Buffer.concat(chunks);
  if (encoding !== "identity") {
    try {
      body = encoding === "gzip" ? gunzipSync(body, { maxOutputLength: limit }) : inflateSync(body, { maxOutputLength: limit });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") throw tooLarge(limit);
      throw new HexrError("telemetry.malformed_request", `the body is not valid ${encoding} data`, { kind: "invalid_argument" });
    }
  }
  return { body, format };
}

function sendOtlp(res: import("node:http").ServerResponse, format: OtlpFormat, body: Buffer): typeof RESPONSE_SENT {
  res.writeHead(200, {
    "content-type": format === "json" ? "application/json" : "application/x-protobuf",
    "content-length": body.length,
  });
  res.end(body);
  return RESPONSE_SENT;
}

/** `15m`, `2h`, `7d` before now; ISO 8601; or epoch milliseconds. */
export function parseTime(v: string, now: number): number | undefined {
  const rel = /^(\d{1,9})(s|m|h|d)$/.exec(v);
  if (rel) return now - Number(rel[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as "s" | "m" | "h" | "d"];
  if (/^\d{1,16}$/.test(v)) return Number(v);
  const t = Date.parse(v);
  return Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(v) ? undefined : t;
}

const TimeParam = z.string().max(64).describe("ISO 8601, epoch milliseconds, or a duration before now: 30s, 15m, 2h, 7d");

const TraceQuery = z.strictObject({
  agent: z.string().min(1).max(253).optional(),
  spiffeId: z.string().startsWith("spiffe://").max(2048).optional(),
  tenant: z.string().min(1).max(253).optional().describe("admin only: one tenant's traces"),
  since: TimeParam.optional(),
  until: TimeParam.optional(),
  status: z.enum(["ok", "error"]).optional(),
  limit: queryInt(1, 100).default(20),
});

const TraceParams = z.object({
  traceId: z
    .string()
    .regex(/^[0-9a-fA-F]{32}$/, "must be 32 hex digits")
    .transform((s) => s.toLowerCase()),
});

export function telemetryRoutes(deps: TelemetryRouteDeps): RouteDef[] {
  const { service, forwarder } = deps;

  async function access(p: Principal, tenant?: string): Promise<TraceAccess> {
    if (p.kind === "admin") return tenant ? { kind: "tenant", scope: await deps.resolveTenant(tenant) } : { kind: "all" };
    if (p.kind === "tenant-key") {
      if (tenant !== undefined && tenant !== p.tenant) {
        throw new HexrError("auth.forbidden", `the caller may not read traces of tenant '${tenant}'`, {
          kind: "permission_denied",
        });
      }
      return { kind: "tenant", scope: await deps.resolveTenant(p.tenant) };
    }
    throw new HexrError("auth.forbidden", "reading traces needs an admin or tenant API key", { kind: "permission_denied" });
  }

  const time = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const t = parseTime(v, deps.clock());
    if (t === undefined) {
      const message = `expected ISO 8601, epoch milliseconds or a duration like 15m (got '${v}')`;
      throw new HexrError("request.validation_failed", `invalid query: ${name}: ${message}`, {
        kind: "invalid_argument",
        details: { errors: [{ path: name, message }] },
      });
    }
    return t * 1000;
  };

  return [
    defineRoute({
      method: "POST",
      path: "/v1/traces",
      summary: "OTLP/HTTP trace receiver (protobuf or JSON, optionally gzip)",
      description:
        "Accepts an ExportTraceServiceRequest. Spans are attributed to the caller: a workload's SVID sets the SPIFFE ID, tenant, agent and role; a resource claiming another identity is rejected (partial success).",
      tags: ["telemetry"],
      auth: "authenticated",
      handler: async (_input, ctx) => {
        const { body, format } = await readOtlpBody(ctx.req, deps.maxRequestBytes);
        const decoded = decodeTraces(body, format);
        const r = await service.ingestTraces(ctx.principal, decoded);
        if (forwarder && r.accepted > 0) forwarder.enqueue("traces", encodeTraces(r.resourceSpans));
        return sendOtlp(ctx.res, format, exportResponse("traces", format, r.rejected, r.reason));
      },
    }),
    defineRoute({
      method: "POST",
      path: "/v1/metrics",
      summary: "OTLP/HTTP metrics receiver (protobuf or JSON, optionally gzip)",
      description: "Accepts an ExportMetricsServiceRequest; points of metrics Hexr exports become Prometheus series on /metrics.",
      tags: ["telemetry"],
      auth: "authenticated",
      handler: async (_input, ctx) => {
        const { body, format } = await readOtlpBody(ctx.req, deps.maxRequestBytes);
        const decoded = decodeMetrics(body, format);
        const r = service.ingestMetrics(ctx.principal, decoded);
        if (forwarder && r.accepted > 0) forwarder.enqueue("metrics", encodeMetrics(r.resourceMetrics));
        return sendOtlp(ctx.res, format, exportResponse("metrics", format, r.rejected, r.reason));
      },
    }),
    defineRoute({
      method: "GET",
      path: "/metrics",
      summary: "Prometheus metrics of the platform and of the agents that report to it",
      tags: ["telemetry"],
      auth: deps.metricsAuth === "public" ? "public" : "admin",
      handler: async (_input, ctx) => {
        const text = registry.render();
        ctx.res.writeHead(200, {
          "content-type": "text/plain; version=0.0.4; charset=utf-8",
          "content-length": Buffer.byteLength(text),
        });
        ctx.res.end(ctx.req.method === "HEAD" ? undefined : text);
        return RESPONSE_SENT;
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/traces",
      summary: "Recent traces (admin: all tenants; a tenant key: its tenant)",
      description: "A trace is listed when one of its spans matches agent/spiffeId; since/until apply to the trace's first span.",
      tags: ["telemetry"],
      auth: "authenticated",
      query: TraceQuery,
      response: z.object({ items: z.array(TraceSummary) }),
      handler: async ({ query }, ctx) => {
        const a = await access(ctx.principal, query.tenant);
        const sinceUs = time("since", query.since);
        const untilUs = time("until", query.until);
        const items = await service.listTraces(a, {
          limit: query.limit,
          ...(query.agent ? { agent: query.agent } : {}),
          ...(query.spiffeId ? { spiffeId: query.spiffeId } : {}),
          ...(query.status ? { status: query.status } : {}),
          ...(sinceUs !== undefined ? { sinceUs } : {}),
          ...(untilUs !== undefined ? { untilUs } : {}),
        });
        return { items };
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/traces/:traceId",
      summary: "One trace: its spans, each attributed to a SPIFFE ID",
      tags: ["telemetry"],
      auth: "authenticated",
      params: TraceParams,
      response: TraceDetail,
      handler: async ({ params }, ctx) => service.getTrace(await access(ctx.principal), params.traceId),
    }),
  ];
}
