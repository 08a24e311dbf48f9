import { HexrError } from "@hexr/core";
import type { Command } from "commander";
import { ApiClient, resolveTarget } from "../client.js";
import { printJson } from "../output.js";

/** What GET /api/v1/traces/:id returns (platform/src/telemetry/service.ts SpanView). */
export interface TraceSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  name: string;
  kind: string;
  startTime: string;
  startTimeUnixUs: number;
  durationMs: number;
  status: { code: "unset" | "ok" | "error"; message?: string };
  service: string | null;
  spiffeId: string | null;
  tenant: string | null;
  agent: string | null;
  role: string | null;
  attributes: Record<string, unknown>;
}
export interface TraceDetail {
  traceId: string;
  spans: TraceSpan[];
}
interface TraceSummary {
  traceId: string;
  startTime: string;
  durationMs: number;
  spanCount: number;
  errorCount: number;
  status: "ok" | "error";
}

export function formatDuration(ms: number): string {
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

const a = (s: TraceSpan, k: string) => s.attributes[k];

/** The few attributes worth a glance, per kind of span. */
function details(s: TraceSpan): string {
  const parts: string[] = [];
  const model = a(s, "gen_ai.response.model") ?? a(s, "gen_ai.request.model");
  if (model !== undefined) parts.push(String(model));
  const inTok = a(s, "gen_ai.usage.input_tokens");
  const outTok = a(s, "gen_ai.usage.output_tokens");
  if (inTok !== undefined || outTok !== undefined) parts.push(`${inTok ?? "?"}→${outTok ?? "?"} tokens`);
  const cost = a(s, "hexr.llm.cost_usd");
  if (typeof cost === "number") parts.push(`$${cost < 0.01 ? cost.toPrecision(2) : cost.toFixed(4)}`);
  const service = a(s, "hexr.tool.service");
  if (service !== undefined) parts.push(`${service}${a(s, "cloud.region") ? ` ${a(s, "cloud.region")}` : ""}`);
  const tier = a(s, "hexr.cache.tier");
  if (tier !== undefined)
    parts.push(`${tier}${a(s, "hexr.cache.hit") === true ? " hit" : a(s, "hexr.cache.hit") === false ? " miss" : ""}`);
  const target = a(s, "hexr.a2a.target");
  if (target !== undefined) parts.push(`→ ${target}${a(s, "hexr.a2a.task_state") ? ` (${a(s, "hexr.a2a.task_state")})` : ""}`);
  const http = a(s, "http.response.status_code");
  if (http !== undefined) parts.push(`HTTP ${http}`);
  return parts.join("  ");
}

/**
 * A trace as an indented tree, children under their parent in start order; spans whose parent is
 * not in the trace (expired, or another tenant's) are shown as roots.
 */
export function renderTraceTree(trace: TraceDetail): string[] {
  const ids = new Set(trace.spans.map((s) => s.spanId));
  const children = new Map<string, TraceSpan[]>();
  const roots: TraceSpan[] = [];
  for (const s of [...trace.spans].sort((x, y) => x.startTimeUnixUs - y.startTimeUnixUs)) {
    if (s.parentSpanId && ids.has(s.parentSpanId)) {
      const list = children.get(s.parentSpanId) ?? [];
      list.push(s);
      children.set(s.parentSpanId, list);
    } else roots.push(s);
  }
  const lines: string[] = [];
  const walk = (s: TraceSpan, prefix: string, last: boolean, depth: number) => {
    const failed = s.status.code === "error";
    const who = s.spiffeId ?? s.service ?? "";
    const extra = details(s);
    lines.push(
      `${prefix}${last ? "└─ " : "├─ "}${s.name || "(unnamed)"}  ${formatDuration(s.durationMs)}${failed ? `  ✗ ${s.status.message ?? "error"}` : ""}  ${who}${extra ? `  ${extra}` : ""}`.trimEnd(),
    );
    const kids = children.get(s.spanId) ?? [];
    // Deep chains are cut rather than printed off the screen.
    if (depth >= 32 && kids.length) {
      lines.push(`${prefix}${last ? "   " : "│  "}└─ … ${kids.length} more`);
      return;
    }
    kids.forEach((k, i) => walk(k, prefix + (last ? "   " : "│  "), i === kids.length - 1, depth + 1));
  };
  roots.forEach((r, i) => walk(r, "", i === roots.length - 1, 0));
  return lines;
}

function header(t: TraceDetail, summary?: TraceSummary): string {
  const start = Math.min(...t.spans.map((s) => s.startTimeUnixUs));
  const end = Math.max(...t.spans.map((s) => s.startTimeUnixUs + s.durationMs * 1000));
  const errors = t.spans.filter((s) => s.status.code === "error").length;
  const when = new Date(Math.floor(start / 1000)).toISOString().replace("T", " ").replace("Z", "");
  return `trace ${t.traceId}  ${when}  ${formatDuration(summary?.durationMs ?? (end - start) / 1000)}  ${errors ? `${errors} error(s)` : "ok"}  ${t.spans.length} spans`;
}

interface Options {
  agent?: string;
  trace?: string;
  spiffeId?: string;
  tenant?: string;
  since?: string;
  until?: string;
  status?: string;
  limit: string;
  dataDir?: string;
  json?: boolean;
}

function usage(message: string): HexrError {
  return new HexrError("cli.usage", message, { kind: "invalid_argument" });
}

export function registerTraces(program: Command): void {
  program
    .command("traces")
    .description("show recent traces as trees of spans, with durations and the SPIFFE ID of each span")
    .option("--agent <name>", "traces in which this agent took part")
    .option("--trace <id>", "one trace, by its 32-hex-digit id")
    .option("--spiffe-id <id>", "traces in which this SPIFFE ID took part")
    .option("--tenant <name>", "one tenant's traces (admin key)")
    .option("--since <when>", "started after: 15m, 2h, 7d, an ISO time or epoch ms")
    .option("--until <when>", "started before (same forms as --since)")
    .option("--status <status>", "ok or error")
    .option("--limit <n>", "how many traces (1-100)", "10")
    .option("--data-dir <dir>", "data dir of the local platform")
    .option("--json", "machine-readable output")
    .addHelpText(
      "after",
      "\nExamples:\n  hexr traces --agent content-crew --since 1h\n  hexr traces --trace 4bf92f3577b34da6a3ce929d0e0e4736 --json\n",
    )
    .action(async (o: Options) => {
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw usage("--limit must be a whole number from 1 to 100");
      if (o.trace !== undefined && !/^[0-9a-fA-F]{32}$/.test(o.trace)) throw usage("--trace must be a trace id of 32 hex digits");
      if (o.status !== undefined && o.status !== "ok" && o.status !== "error") throw usage("--status must be ok or error");
      const api = new ApiClient(resolveTarget(o.dataDir));

      if (o.trace) {
        const t = await api.request<TraceDetail>("GET", `/api/v1/traces/${o.trace.toLowerCase()}`);
        if (o.json) return printJson(t);
        process.stdout.write([header(t), ...renderTraceTree(t)].join("\n") + "\n");
        return;
      }
      const q = new URLSearchParams({ limit: String(limit) });
      for (const [k, v] of [
        ["agent", o.agent],
        ["spiffeId", o.spiffeId],
        ["tenant", o.tenant],
        ["since", o.since],
        ["until", o.until],
        ["status", o.status],
      ] as const) {
        if (v !== undefined) q.set(k, v);
      }
      const { items } = await api.request<{ items: TraceSummary[] }>("GET", `/api/v1/traces?${q}`);
      // A trace may expire between the list and the fetch: skip it rather than fail.
      const fetched = await Promise.all(
        items.map((s) =>
          api
            .request<TraceDetail>("GET", `/api/v1/traces/${s.traceId}`)
            .then((t) => ({ summary: s, trace: t }))
            .catch((err: unknown) => {
              if (err instanceof HexrError && err.code === "telemetry.trace_not_found") return undefined;
              throw err;
            }),
        ),
      );
      const found = fetched.filter((f): f is { summary: TraceSummary; trace: TraceDetail } => f !== undefined);
      if (o.json) return printJson(found.map((f) => ({ ...f.summary, spans: f.trace.spans })));
      if (found.length === 0) {
        process.stdout.write("no traces (agents send them once they run with telemetry; see docs/telemetry.md)\n");
        return;
      }
      const out: string[] = [];
      found.forEach((f, i) => out.push(...(i ? [""] : []), header(f.trace, f.summary), ...renderTraceTree(f.trace)));
      process.stdout.write(out.join("\n") + "\n");
    });
}
