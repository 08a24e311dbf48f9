import { describeWorkload, HexrError } from "@hexr/core";
import type { Logger } from "pino";
import { z } from "zod";
import type { Principal } from "../auth/principal.js";
import { spansPruned, spansReceived, spansStored, metricPointsReceived, type WorkloadLabels } from "./metrics/catalog.js";
import type { IngestResult, OtlpMetricsIngest } from "./metrics/otlp-ingest.js";
import {
  attrString,
  type Attrs,
  type MetricsRequest,
  type OtlpResourceMetrics,
  type OtlpResourceSpans,
  type OtlpSpan,
  type TracesRequest,
} from "./otlp/model.js";
import type { SpanRow, SpanStore, TraceAccess, TraceFilter } from "./store.js";

/** Resource attribute keys (the SDK's semconv.ts RESOURCE; repeated here because the platform does not import the SDK). */
export const R = {
  SERVICE_NAME: "service.name",
  SPIFFE_ID: "hexr.spiffe_id",
  TENANT: "hexr.tenant",
  AGENT: "hexr.agent",
  ROLE: "hexr.role",
} as const;

const KINDS = ["unspecified", "internal", "server", "client", "producer", "consumer"] as const;
const STATUSES = ["unset", "ok", "error"] as const;

export const SpanView = z.object({
  traceId: z.string(),
  spanId: z.string(),
  parentSpanId: z.string().nullable(),
  name: z.string(),
  kind: z.enum(KINDS),
  startTime: z.string().describe("ISO 8601, microsecond precision kept in startTimeUnixUs"),
  startTimeUnixUs: z.number(),
  durationMs: z.number(),
  status: z.object({ code: z.enum(STATUSES), message: z.string().optional() }),
  service: z.string().nullable(),
  spiffeId: z.string().nullable(),
  tenant: z.string().nullable(),
  agent: z.string().nullable(),
  role: z.string().nullable(),
  attributes: z.record(z.string(), z.unknown()),
  events: z.array(z.object({ name: z.string(), timeUnixUs: z.number(), attributes: z.record(z.string(), z.unknown()) })),
  links: z.array(z.object({ traceId: z.string(), spanId: z.string() })),
  scope: z.object({ name: z.string(), version: z.string().optional() }).nullable(),
});
export type SpanView = z.infer<typeof SpanView>;

export const TraceSummary = z.object({
  traceId: z.string(),
  startTime: z.string(),
  durationMs: z.number(),
  spanCount: z.number(),
  errorCount: z.number(),
  status: z.enum(["ok", "error"]),
  root: z.object({ name: z.string(), service: z.string().nullable(), spiffeId: z.string().nullable() }).nullable(),
  agents: z.array(z.string()),
  spiffeIds: z.array(z.string()),
});
export type TraceSummary = z.infer<typeof TraceSummary>;

export const TraceDetail = z.object({ traceId: z.string(), spans: z.array(SpanView) });
export type TraceDetail = z.infer<typeof TraceDetail>;

/** The identity a batch of telemetry is attributed to: verified from the caller, never just claimed. */
interface Attribution {
  tenant: string | null;
  agent: string | null;
  role: string | null;
  spiffeId: string | null;
  resource: Attrs;
}

export interface TraceIngestResult {
  accepted: number;
  rejected: number;
  reason: string | undefined;
  /** The accepted spans with their verified resources (for forwarding). */
  resourceSpans: OtlpResourceSpans[];
}

export interface TelemetryServiceDeps {
  store: SpanStore;
  metricsIngest: OtlpMetricsIngest;
  log: Logger;
  retention: { maxSpans: number; maxAgeMs: number };
  clock?: () => number;
}

function rejection(message: string): { reject: string } {
  return { reject: message };
}

/**
 * Decides whose telemetry a resource is. A workload's SVID is authoritative: its SPIFFE ID, tenant,
 * agent and role replace whatever the resource claims, and a resource claiming another identity is
 * refused. A tenant key may only send for its tenant; an admin (a collector forwarding) is trusted.
 */
export function attribute(principal: Principal, resource: Attrs): Attribution | { reject: string } {
  const claimed = {
    spiffeId: attrString(resource, R.SPIFFE_ID),
    tenant: attrString(resource, R.TENANT),
    agent: attrString(resource, R.AGENT),
    role: attrString(resource, R.ROLE),
  };
  switch (principal.kind) {
    case "workload": {
      if (principal.tenant === undefined) {
        // A platform component (spiffe://<td>/system/...) reports on behalf of the workloads it serves.
        return { ...nullable(claimed), resource };
      }
      if (claimed.spiffeId !== undefined && claimed.spiffeId !== principal.spiffeId) {
        return rejection(`resource ${R.SPIFFE_ID} ${claimed.spiffeId} is not the caller's SPIFFE ID ${principal.spiffeId}`);
      }
      if (claimed.tenant !== undefined && claimed.tenant !== principal.tenant) {
        return rejection(`resource ${R.TENANT} ${claimed.tenant} is not the caller's tenant ${principal.tenant}`);
      }
      const id = {
        spiffeId: principal.spiffeId,
        tenant: principal.tenant,
        agent: principal.agent ?? null,
        role: principal.role ?? null,
      };
      return {
        ...id,
        resource: {
          ...resource,
          [R.SPIFFE_ID]: id.spiffeId,
          [R.TENANT]: id.tenant,
          ...(id.agent ? { [R.AGENT]: id.agent } : {}),
          ...(id.role ? { [R.ROLE]: id.role } : {}),
        },
      };
    }
    case "tenant-key": {
      if (claimed.tenant !== undefined && claimed.tenant !== principal.tenant) {
        return rejection(`resource ${R.TENANT} ${claimed.tenant} is not the API key's tenant ${principal.tenant}`);
      }
      if (claimed.spiffeId !== undefined) {
        let owner: string | undefined;
        try {
          const w = describeWorkload(claimed.spiffeId);
          owner = w.kind === "agent" ? w.tenant : undefined;
        } catch {
          return rejection(`resource ${R.SPIFFE_ID} is not a valid SPIFFE ID`);
        }
        if (owner !== principal.tenant)
          return rejection(`resource ${R.SPIFFE_ID} ${claimed.spiffeId} is not an agent of tenant ${principal.tenant}`);
      }
      return { ...nullable(claimed), tenant: principal.tenant, resource: { ...resource, [R.TENANT]: principal.tenant } };
    }
    case "admin":
      return { ...nullable(claimed), resource };
    default:
      return rejection("anonymous callers may not send telemetry");
  }
}

const nullable = (c: Record<"spiffeId" | "tenant" | "agent" | "role", string | undefined>) => ({
  spiffeId: c.spiffeId ?? null,
  tenant: c.tenant ?? null,
  agent: c.agent ?? null,
  role: c.role ?? null,
});

const US_MAX = BigInt(Number.MAX_SAFE_INTEGER);
const toUs = (ns: bigint): number => Number((ns / 1000n > US_MAX ? US_MAX : ns / 1000n) as bigint);
const bigintSafe = (_k: string, v: unknown) => (typeof v === "bigint" ? v.toString() : v);

export function spanRow(
  s: OtlpSpan,
  a: Attribution,
  scope: { name: string; version?: string | undefined } | undefined,
  receivedAt: number,
): SpanRow {
  return {
    trace_id: s.traceId,
    span_id: s.spanId,
    parent_span_id: s.parentSpanId ?? null,
    name: s.name,
    kind: s.kind,
    start_us: toUs(s.startNs),
    duration_us: toUs(s.endNs - s.startNs),
    status_code: s.status.code,
    status_message: s.status.message ?? null,
    tenant: a.tenant,
    agent: a.agent,
    role: a.role,
    spiffe_id: a.spiffeId,
    service: attrString(a.resource, R.SERVICE_NAME) ?? null,
    attributes: JSON.stringify(s.attributes, bigintSafe),
    events: s.events.length
      ? JSON.stringify(s.events.map((e) => ({ name: e.name, timeUnixUs: toUs(e.timeNs), attributes: e.attributes })))
      : null,
    links: s.links.length ? JSON.stringify(s.links.map((l) => ({ traceId: l.traceId, spanId: l.spanId }))) : null,
    resource: JSON.stringify(a.resource, bigintSafe),
    scope: scope ? JSON.stringify(scope) : null,
    received_at: receivedAt,
  };
}

function parseJson<T>(text: string | null, fallback: T): T {
  if (text === null) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

export function spanView(r: SpanRow): SpanView {
  const startUs = Number(r.start_us);
  return {
    traceId: r.trace_id,
    spanId: r.span_id,
    parentSpanId: r.parent_span_id,
    name: r.name,
    kind: KINDS[r.kind] ?? "unspecified",
    startTime: new Date(Math.floor(startUs / 1000)).toISOString(),
    startTimeUnixUs: startUs,
    durationMs: Number(r.duration_us) / 1000,
    status: { code: STATUSES[r.status_code] ?? "unset", ...(r.status_message ? { message: r.status_message } : {}) },
    service: r.service,
    spiffeId: r.spiffe_id,
    tenant: r.tenant,
    agent: r.agent,
    role: r.role,
    attributes: parseJson(r.attributes, {}),
    events: parseJson(r.events, []),
    links: parseJson(r.links, []),
    scope: parseJson(r.scope, null),
  };
}

export class TelemetryService {
  private readonly clock: () => number;
  private sincePrune = 0;
  private lastPrune: number;
  private pruning: Promise<number> | undefined;

  constructor(private readonly deps: TelemetryServiceDeps) {
    this.clock = deps.clock ?? Date.now;
    this.lastPrune = this.clock();
  }

  /** Stores the spans of an OTLP request under the identity of `principal`. */
  async ingestTraces(principal: Principal, req: TracesRequest): Promise<TraceIngestResult> {
    const now = this.clock();
    const rows: SpanRow[] = [];
    const accepted: OtlpResourceSpans[] = [];
    let rejected = req.rejected;
    let reason = req.rejectReason;
    for (const rs of req.resourceSpans) {
      const a = attribute(principal, rs.resource);
      const n = rs.scopeSpans.reduce((sum, ss) => sum + ss.spans.length, 0);
      if ("reject" in a) {
        rejected += n;
        reason ??= a.reject;
        continue;
      }
      for (const ss of rs.scopeSpans) for (const s of ss.spans) rows.push(spanRow(s, a, ss.scope, now));
      accepted.push({ resource: a.resource, scopeSpans: rs.scopeSpans });
    }
    await this.store(rows);
    spansReceived.inc({ result: "accepted" }, rows.length);
    spansReceived.inc({ result: "rejected" }, rejected);
    return { accepted: rows.length, rejected, reason, resourceSpans: accepted };
  }

  /** The platform's own spans: attributed by their resource, tenant from a span's hexr.tenant if set. */
  async recordOwnSpans(resourceSpans: OtlpResourceSpans[]): Promise<void> {
    const now = this.clock();
    const rows: SpanRow[] = [];
    for (const rs of resourceSpans) {
      const base: Attribution = {
        ...nullable({ spiffeId: attrString(rs.resource, R.SPIFFE_ID), tenant: undefined, agent: undefined, role: undefined }),
        resource: rs.resource,
      };
      for (const ss of rs.scopeSpans) {
        for (const s of ss.spans)
          rows.push(spanRow(s, { ...base, tenant: attrString(s.attributes, R.TENANT) ?? null }, ss.scope, now));
      }
    }
    await this.store(rows);
  }

  private async store(rows: SpanRow[]): Promise<void> {
    if (rows.length === 0) return;
    let inserted: number;
    try {
      inserted = await this.deps.store.insert(rows);
    } catch (err) {
      this.deps.log.error({ err }, "telemetry: could not store spans");
      throw new HexrError("telemetry.store_unavailable", "the trace store is unavailable; retry later", { kind: "unavailable" });
    }
    spansStored.inc(undefined, inserted);
    this.sincePrune += inserted;
    if (this.sincePrune >= 1000 || this.clock() - this.lastPrune >= 60_000) void this.prune().catch(() => undefined);
  }

  /** Applies retention now (single-flight). Returns how many spans were removed. */
  prune(): Promise<number> {
    return (this.pruning ??= (async () => {
      try {
        this.sincePrune = 0;
        this.lastPrune = this.clock();
        const removed = await this.deps.store.prune(this.clock() - this.deps.retention.maxAgeMs, this.deps.retention.maxSpans);
        spansPruned.inc(undefined, removed);
        spansStored.set(undefined, await this.deps.store.count());
        return removed;
      } catch (err) {
        this.deps.log.error({ err }, "telemetry: retention failed");
        throw err;
      } finally {
        this.pruning = undefined;
      }
    })());
  }

  /** Adds the points of an OTLP metrics request to the Prometheus registry, attributed like spans. */
  ingestMetrics(principal: Principal, req: MetricsRequest): IngestResult & { resourceMetrics: OtlpResourceMetrics[] } {
    const verdicts = new Map<Attrs, ReturnType<typeof attribute>>();
    for (const rm of req.resourceMetrics) verdicts.set(rm.resource, attribute(principal, rm.resource));
    const result = this.deps.metricsIngest.ingest(req, (resource) => {
      const a = verdicts.get(resource)!;
      if ("reject" in a) return a;
      // Identity labels come from the attribution (verified for workloads); absent ones fall back to the point's own.
      const labels: WorkloadLabels = {};
      if (a.tenant) labels.tenant = a.tenant;
      if (a.agent) labels.agent = a.agent;
      if (a.role) labels.role = a.role;
      if (a.spiffeId) labels.spiffe_id = a.spiffeId;
      const source = `${a.spiffeId ?? ""}|${String(resource["service.instance.id"] ?? resource["process.pid"] ?? "")}|${principal.kind}`;
      return { labels, source };
    });
    metricPointsReceived.inc({ result: "accepted" }, result.accepted);
    metricPointsReceived.inc({ result: "rejected" }, result.rejected);
    const resourceMetrics = req.resourceMetrics.flatMap((rm) => {
      const a = verdicts.get(rm.resource)!;
      return "reject" in a ? [] : [{ ...rm, resource: a.resource }];
    });
    return { ...result, resourceMetrics };
  }

  async listTraces(access: TraceAccess, filter: TraceFilter): Promise<TraceSummary[]> {
    const rows = await this.deps.store.listTraces(access, filter);
    if (rows.length === 0) return [];
    const spans = await this.deps.store.getSpans(
      access,
      rows.map((r) => r.trace_id),
    );
    const byTrace = new Map<string, SpanRow[]>();
    for (const s of spans) {
      const list = byTrace.get(s.trace_id) ?? [];
      list.push(s);
      byTrace.set(s.trace_id, list);
    }
    return rows.map((r) => {
      const list = byTrace.get(r.trace_id) ?? [];
      const ids = new Set(list.map((s) => s.span_id));
      const root = list.find((s) => s.parent_span_id === null || !ids.has(s.parent_span_id)) ?? null;
      return {
        traceId: r.trace_id,
        startTime: new Date(Math.floor(r.start_us / 1000)).toISOString(),
        durationMs: (r.end_us - r.start_us) / 1000,
        spanCount: r.span_count,
        errorCount: r.error_count,
        status: r.error_count > 0 ? "error" : "ok",
        root: root ? { name: root.name, service: root.service, spiffeId: root.spiffe_id } : null,
        agents: [...new Set(list.map((s) => s.agent).filter((a): a is string => !!a))].sort(),
        spiffeIds: [...new Set(list.map((s) => s.spiffe_id).filter((a): a is string => !!a))].sort(),
      };
    });
  }

  async getTrace(access: TraceAccess, traceId: string): Promise<TraceDetail> {
    const rows = await this.deps.store.getSpans(access, [traceId]);
    if (rows.length === 0) {
      throw new HexrError("telemetry.trace_not_found", `no trace ${traceId} (it may have expired, or belong to another tenant)`, {
        kind: "not_found",
      });
    }
    return { traceId, spans: rows.map(spanView) };
  }
}
