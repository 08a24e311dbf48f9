import type { TenantScope } from "../auth/principal.js";
import type { Migration, SqlValue, Storage } from "../storage/types.js";

/** The spans table; the dialects differ only in how the insertion sequence is generated. */
const spansTable = (seq: string) => `CREATE TABLE telemetry_spans (
        ${seq},
        trace_id TEXT NOT NULL,
        span_id TEXT NOT NULL,
        parent_span_id TEXT,
        name TEXT NOT NULL,
        kind INTEGER NOT NULL,
        start_us BIGINT NOT NULL,
        duration_us BIGINT NOT NULL,
        status_code INTEGER NOT NULL,
        status_message TEXT,
        tenant TEXT,
        agent TEXT,
        role TEXT,
        spiffe_id TEXT,
        service TEXT,
        attributes TEXT NOT NULL,
        events TEXT,
        links TEXT,
        resource TEXT NOT NULL,
        scope TEXT,
        received_at BIGINT NOT NULL,
        UNIQUE (trace_id, span_id)
      );
      CREATE INDEX telemetry_spans_trace ON telemetry_spans (trace_id);
      CREATE INDEX telemetry_spans_tenant_start ON telemetry_spans (tenant, start_us);
      CREATE INDEX telemetry_spans_start ON telemetry_spans (start_us);
      CREATE INDEX telemetry_spans_received ON telemetry_spans (received_at)`;

export const telemetryMigrations: Migration[] = [
  {
    id: "telemetry/001-spans",
    up: {
      sqlite: spansTable("seq INTEGER PRIMARY KEY AUTOINCREMENT"),
      postgres: spansTable("seq BIGSERIAL PRIMARY KEY"),
    },
  },
];

export interface SpanRow {
  trace_id: string;
  span_id: string;
  parent_span_id: string | null;
  name: string;
  kind: number;
  start_us: number;
  duration_us: number;
  status_code: number;
  status_message: string | null;
  /** NULL for the platform's own spans (shown to a tenant only under that tenant's spans). */
  tenant: string | null;
  agent: string | null;
  role: string | null;
  spiffe_id: string | null;
  service: string | null;
  /** JSON */
  attributes: string;
  events: string | null;
  links: string | null;
  resource: string;
  scope: string | null;
  received_at: number;
}

/** Who may read: an admin sees every tenant (and the platform's own traces); anyone else, one tenant. */
export type TraceAccess = { kind: "all" } | { kind: "tenant"; scope: TenantScope };

export interface TraceFilter {
  agent?: string;
  spiffeId?: string;
  /** Epoch µs, inclusive: the trace's first span started at or after. */
  sinceUs?: number;
  /** Epoch µs, exclusive. */
  untilUs?: number;
  status?: "ok" | "error";
  limit: number;
}

export interface TraceSummaryRow {
  trace_id: string;
  start_us: number;
  end_us: number;
  span_count: number;
  error_count: number;
}

const COLUMNS = [
  "trace_id",
  "span_id",
  "parent_span_id",
  "name",
  "kind",
  "start_us",
  "duration_us",
  "status_code",
  "status_message",
  "tenant",
  "agent",
  "role",
  "spiffe_id",
  "service",
  "attributes",
  "events",
  "links",
  "resource",
  "scope",
  "received_at",
] as const;
const SELECT = COLUMNS.join(", ");
const CHUNK = 50;

function insertSql(rows: number): string {
  const one = `(${COLUMNS.map(() => "?").join(", ")})`;
  return `INSERT INTO telemetry_spans (${SELECT}) VALUES ${Array.from({ length: rows }, () => one).join(", ")} ON CONFLICT (trace_id, span_id) DO NOTHING`;
}

/** Spans, persisted through the Storage interface. Reads are scoped by `TraceAccess`. */
export class SpanStore {
  constructor(private readonly db: Storage) {}

  /** Inserts spans; a span already stored (an exporter's retry) is ignored. Returns how many were new. */
  async insert(rows: SpanRow[]): Promise<number> {
    if (rows.length === 0) return 0;
    return this.db.transaction(async (tx) => {
      let inserted = 0;
      for (let i = 0; i < rows.length; i += CHUNK) {
        const chunk = rows.slice(i, i + CHUNK);
        const params: SqlValue[] = [];
        for (const r of chunk) for (const c of COLUMNS) params.push(r[c]);
        inserted += (await tx.run(insertSql(chunk.length), params)).changes;
      }
      return inserted;
    });
  }

  private scopeClause(access: TraceAccess): { sql: string; params: SqlValue[] } {
    return access.kind === "all" ? { sql: "1 = 1", params: [] } : { sql: "tenant = ?", params: [access.scope.tenant] };
  }

  /** Traces with at least one visible span matching the filter, newest first. */
  async listTraces(access: TraceAccess, f: TraceFilter): Promise<TraceSummaryRow[]> {
    const scope = this.scopeClause(access);
    const match: string[] = [];
    const matchParams: SqlValue[] = [];
    if (f.agent !== undefined) {
      match.push("agent = ?");
      matchParams.push(f.agent);
    }
    if (f.spiffeId !== undefined) {
      match.push("spiffe_id = ?");
      matchParams.push(f.spiffeId);
    }
    const having: string[] = [];
    const havingParams: SqlValue[] = [];
    if (match.length) {
      having.push(`SUM(CASE WHEN ${match.join(" AND ")} THEN 1 ELSE 0 END) > 0`);
      havingParams.push(...matchParams);
    }
    if (f.sinceUs !== undefined) {
      having.push("MIN(start_us) >= ?");
      havingParams.push(f.sinceUs);
    }
    if (f.untilUs !== undefined) {
      having.push("MIN(start_us) < ?");
      havingParams.push(f.untilUs);
    }
    if (f.status === "error") having.push("SUM(CASE WHEN status_code = 2 THEN 1 ELSE 0 END) > 0");
    if (f.status === "ok") having.push("SUM(CASE WHEN status_code = 2 THEN 1 ELSE 0 END) = 0");
    // A time window on spans first keeps the GROUP BY small when retention holds many traces.
    const where = [scope.sql];
    const whereParams = [...scope.params];
    if (f.sinceUs !== undefined) {
      where.push("start_us >= ?");
      whereParams.push(f.sinceUs);
    }
    const sql = `SELECT trace_id, MIN(start_us) AS start_us, MAX(start_us + duration_us) AS end_us, COUNT(*) AS span_count,
        SUM(CASE WHEN status_code = 2 THEN 1 ELSE 0 END) AS error_count
      FROM telemetry_spans WHERE ${where.join(" AND ")}
      GROUP BY trace_id ${having.length ? `HAVING ${having.join(" AND ")}` : ""}
      ORDER BY start_us DESC, trace_id LIMIT ?`;
    const rows = await this.db.all<TraceSummaryRow>(sql, [...whereParams, ...havingParams, f.limit]);
    return rows.map((r) => ({
      ...r,
      start_us: Number(r.start_us),
      end_us: Number(r.end_us),
      span_count: Number(r.span_count),
      error_count: Number(r.error_count),
    }));
  }

  /**
   * The visible spans of one trace. For a tenant: its own spans, plus the platform's own spans
   * (tenant NULL) that are direct children of one of them, i.e. the platform serving that tenant.
   */
  async getSpans(access: TraceAccess, traceIds: string[]): Promise<SpanRow[]> {
    if (traceIds.length === 0) return [];
    const marks = traceIds.map(() => "?").join(", ");
    if (access.kind === "all") {
      return this.db.all<SpanRow>(
        `SELECT ${SELECT} FROM telemetry_spans WHERE trace_id IN (${marks}) ORDER BY start_us, seq`,
        traceIds,
      );
    }
    const t = access.scope.tenant;
    return this.db.all<SpanRow>(
      `SELECT ${SELECT} FROM telemetry_spans s WHERE s.trace_id IN (${marks}) AND (s.tenant = ? OR (s.tenant IS NULL AND EXISTS (
          SELECT 1 FROM telemetry_spans p WHERE p.trace_id = s.trace_id AND p.span_id = s.parent_span_id AND p.tenant = ?)))
        ORDER BY s.start_us, s.seq`,
      [...traceIds, t, t],
    );
  }

  async count(): Promise<number> {
    const row = await this.db.get<{ n: number }>("SELECT COUNT(*) AS n FROM telemetry_spans");
    return Number(row?.n ?? 0);
  }

  /** Deletes spans received before `olderThanMs`, then the oldest beyond `maxSpans`. Returns how many went. */
  async prune(olderThanMs: number, maxSpans: number): Promise<number> {
    let removed = (await this.db.run("DELETE FROM telemetry_spans WHERE received_at < ?", [olderThanMs])).changes;
    const total = await this.count();
    if (total > maxSpans) {
      removed += (
        await this.db.run(
          "DELETE FROM telemetry_spans WHERE seq <= (SELECT seq FROM telemetry_spans ORDER BY seq DESC LIMIT 1 OFFSET ?)",
          [maxSpans],
        )
      ).changes;
    }
    return removed;
  }
}
