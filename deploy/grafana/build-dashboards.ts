/**
 * Generates the provisioned Grafana dashboards in deploy/grafana/dashboards/ from the panel lists
 * below. Edit here, then run:
 *
 *   npx tsx deploy/grafana/build-dashboards.ts
 *
 * test/telemetry/grafana.test.ts fails when the committed JSON differs from this output, when a
 * query does not parse, or when it names a metric the platform does not export.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as prettier from "prettier";

export const PROMETHEUS_UID = "hexr-prometheus";
const DS = { type: "prometheus", uid: PROMETHEUS_UID };

type Unit = "short" | "s" | "percentunit" | "currencyUSD" | "bytes" | "reqps" | "ops" | "none" | "dtdurations";
interface Target {
  expr: string;
  legend?: string;
  instant?: boolean;
}
interface PanelSpec {
  type: "timeseries" | "stat" | "bargauge" | "table" | "piechart" | "gauge";
  title: string;
  description: string;
  targets: Target[];
  unit?: Unit;
  w?: number;
  h?: number;
  /** stat thresholds: [green below, red from] */
  redFrom?: number;
  stack?: boolean;
}
interface DashboardSpec {
  uid: string;
  title: string;
  description: string;
  /** Tenant and agent variables filter the agent-side metrics. */
  workloadVariables: boolean;
  panels: PanelSpec[];
}

const R = "$__rate_interval";
/** The label filter of dashboards with tenant/agent variables. */
const W = 'tenant=~"$tenant",agent=~"$agent"';
const sel = (metric: string, extra = "", scoped = true) => `${metric}{${[scoped ? W : "", extra].filter(Boolean).join(",")}}`;
const rate = (metric: string, extra = "", scoped = true) => `rate(${sel(metric, extra, scoped)}[${R}])`;
const ratio = (num: string, den: string) => `(${num}) / clamp_min(${den}, 1e-9)`;
const quantile = (q: number, bucket: string, by: string[] = [], extra = "", scoped = true) =>
  `histogram_quantile(${q}, sum by (${["le", ...by].join(", ")}) (${rate(bucket, extra, scoped)}))`;
const quantiles = (bucket: string, by: string[] = [], extra = "", scoped = true): Target[] =>
  [0.5, 0.95, 0.99].map((q) => ({
    expr: quantile(q, bucket, by, extra, scoped),
    legend: `p${Math.round(q * 100)}${by.map((b) => ` {{${b}}}`).join("")}`,
  }));

const stat = (title: string, description: string, expr: string, unit: Unit = "short", redFrom?: number): PanelSpec => ({
  type: "stat",
  title,
  description,
  targets: [{ expr }],
  unit,
  w: 6,
  h: 4,
  ...(redFrom !== undefined ? { redFrom } : {}),
});
const series = (
  title: string,
  description: string,
  targets: Target[],
  unit: Unit = "short",
  extra: Partial<PanelSpec> = {},
): PanelSpec => ({
  type: "timeseries",
  title,
  description,
  targets,
  unit,
  w: 12,
  h: 8,
  ...extra,
});

export const DASHBOARDS: DashboardSpec[] = [
  {
    uid: "hexr-agents",
    title: "Hexr / Agents",
    description: "Agent invocations, errors and latency, by agent, role and SPIFFE ID (hexr.agent.invoke spans).",
    workloadVariables: true,
    panels: [
      stat("Invocations / s", "All agent invocations per second.", `sum(${rate("hexr_agent_invocations_total")})`, "reqps"),
      stat(
        "Error ratio",
        "Share of invocations that ended in an error.",
        ratio(`sum(${rate("hexr_agent_invocations_total", 'status="error"')})`, `sum(${rate("hexr_agent_invocations_total")})`),
        "percentunit",
        0.05,
      ),
      stat(
        "p95 latency",
        "95th percentile of invocation duration.",
        quantile(0.95, "hexr_agent_invocation_duration_seconds_bucket"),
        "s",
      ),
      stat(
        "Active agent processes",
        "SPIFFE IDs that handled at least one invocation in the last 15 minutes.",
        `count(sum by (spiffe_id) (increase(${sel("hexr_agent_invocations_total")}[15m])) > 0)`,
      ),
      series(
        "Invocations by agent and role",
        "Invocations per second, per agent process role.",
        [{ expr: `sum by (agent, role) (${rate("hexr_agent_invocations_total")})`, legend: "{{agent}}/{{role}}" }],
        "reqps",
      ),
      series(
        "Errors by agent",
        "Failed invocations per second.",
        [
          {
            expr: `sum by (agent, role) (${rate("hexr_agent_invocations_total", 'status="error"')})`,
            legend: "{{agent}}/{{role}}",
          },
        ],
        "reqps",
      ),
      series(
        "Invocation latency",
        "p50, p95 and p99 over all selected agents.",
        quantiles("hexr_agent_invocation_duration_seconds_bucket"),
        "s",
      ),
      series(
        "p95 latency by agent",
        "95th percentile per agent and role.",
        [
          {
            expr: quantile(0.95, "hexr_agent_invocation_duration_seconds_bucket", ["agent", "role"]),
            legend: "{{agent}}/{{role}}",
          },
        ],
        "s",
      ),
      {
        type: "table",
        title: "Invocations by SPIFFE ID",
        description: "Invocations over the dashboard's time range, per SPIFFE identity and framework.",
        targets: [
          {
            expr: `sum by (spiffe_id, framework, status) (increase(${sel("hexr_agent_invocations_total")}[$__range]))`,
            instant: true,
          },
        ],
        w: 12,
        h: 8,
      },
      {
        type: "piechart",
        title: "Invocations by framework",
        description: "Which agent frameworks handle the traffic.",
        targets: [
          {
            expr: `sum by (framework) (increase(${sel("hexr_agent_invocations_total")}[$__range]))`,
            legend: "{{framework}}",
            instant: true,
          },
        ],
        w: 12,
        h: 8,
      },
    ],
  },
  {
    uid: "hexr-llm",
    title: "Hexr / LLM usage and cost",
    description: "LLM calls made through hexrLlm: requests, tokens, cost from the price table, latency and time to first token.",
    workloadVariables: true,
    panels: [
      stat("LLM requests / s", "LLM calls per second.", `sum(${rate("hexr_llm_requests_total")})`, "reqps"),
      stat(
        "Cost in range",
        "US dollars spent over the dashboard's time range (price table).",
        `sum(increase(${sel("hexr_llm_cost_usd_total")}[$__range]))`,
        "currencyUSD",
      ),
      stat(
        "Tokens in range",
        "Input and output tokens over the dashboard's time range.",
        `sum(increase(${sel("hexr_llm_tokens_total")}[$__range]))`,
      ),
      stat(
        "LLM error ratio",
        "Share of LLM calls that failed (rate limits, provider errors, cut streams).",
        ratio(`sum(${rate("hexr_llm_requests_total", 'status="error"')})`, `sum(${rate("hexr_llm_requests_total")})`),
        "percentunit",
        0.05,
      ),
      series(
        "Tokens / s by type",
        "Input and output tokens per second.",
        [{ expr: `sum by (type) (${rate("hexr_llm_tokens_total")})`, legend: "{{type}}" }],
        "short",
        { stack: true },
      ),
      series(
        "Tokens / s by model",
        "Tokens per second per model.",
        [{ expr: `sum by (model) (${rate("hexr_llm_tokens_total")})`, legend: "{{model}}" }],
        "short",
        { stack: true },
      ),
      series(
        "Cost per hour by model",
        "Spend rate in USD per hour.",
        [{ expr: `sum by (model) (${rate("hexr_llm_cost_usd_total")}) * 3600`, legend: "{{model}}" }],
        "currencyUSD",
        {
          stack: true,
        },
      ),
      series(
        "Cost per hour by agent",
        "Spend rate in USD per hour, per agent.",
        [{ expr: `sum by (agent) (${rate("hexr_llm_cost_usd_total")}) * 3600`, legend: "{{agent}}" }],
        "currencyUSD",
        {
          stack: true,
        },
      ),
      series(
        "LLM latency p95 by model",
        "Until the last token for streams.",
        [{ expr: quantile(0.95, "hexr_llm_request_duration_seconds_bucket", ["model"]), legend: "{{model}}" }],
        "s",
      ),
      series(
        "Time to first token",
        "Streams only: p50 and p95 per model.",
        [
          { expr: quantile(0.5, "hexr_llm_time_to_first_token_seconds_bucket", ["model"]), legend: "p50 {{model}}" },
          { expr: quantile(0.95, "hexr_llm_time_to_first_token_seconds_bucket", ["model"]), legend: "p95 {{model}}" },
        ],
        "s",
      ),
      {
        type: "table",
        title: "Top models by cost",
        description: "The ten most expensive models over the dashboard's time range.",
        targets: [
          { expr: `topk(10, sum by (provider, model) (increase(${sel("hexr_llm_cost_usd_total")}[$__range])))`, instant: true },
        ],
        unit: "currencyUSD",
        w: 12,
        h: 8,
      },
      {
        type: "bargauge",
        title: "Requests by provider and streaming",
        description: "LLM calls over the time range, streamed or not.",
        targets: [
          {
            expr: `sum by (provider, streaming) (increase(${sel("hexr_llm_requests_total")}[$__range]))`,
            legend: "{{provider}} stream={{streaming}}",
            instant: true,
          },
        ],
        w: 12,
        h: 8,
      },
    ],
  },
  {
    uid: "hexr-tools",
    title: "Hexr / Tools and credential cache",
    description: "hexrTool calls to cloud services and the L1/L2/L3 credential cache behind them.",
    workloadVariables: true,
    panels: [
      stat("Tool calls / s", "Cloud service calls per second.", `sum(${rate("hexr_tool_invocations_total")})`, "reqps"),
      stat(
        "Cache hit ratio",
        "Credential lookups answered from any cache tier.",
        ratio(`sum(${rate("hexr_cache_lookups_total", 'result="hit"')})`, `sum(${rate("hexr_cache_lookups_total")})`),
        "percentunit",
      ),
      stat(
        "Tool error ratio",
        "Share of tool calls that failed.",
        ratio(`sum(${rate("hexr_tool_invocations_total", 'status="error"')})`, `sum(${rate("hexr_tool_invocations_total")})`),
        "percentunit",
        0.05,
      ),
      stat(
        "Credential exchanges / s",
        "JWT-SVID → cloud credential exchanges at the platform (L3).",
        `sum(rate(hexr_credential_exchanges_total{tenant=~"$tenant"}[${R}]))`,
        "reqps",
      ),
      series(
        "Cache hit ratio by tier",
        "Hits / lookups per tier (L1 in process, L2 Valkey, L3 exchange).",
        [
          {
            expr: ratio(
              `sum by (tier) (${rate("hexr_cache_lookups_total", 'result="hit"')})`,
              `sum by (tier) (${rate("hexr_cache_lookups_total")})`,
            ),
            legend: "{{tier}}",
          },
        ],
        "percentunit",
      ),
      series(
        "Cache lookups by tier and result",
        "Lookups per second.",
        [{ expr: `sum by (tier, result) (${rate("hexr_cache_lookups_total")})`, legend: "{{tier}} {{result}}" }],
        "ops",
      ),
      series(
        "Cache lookup latency p95 by tier",
        "95th percentile per tier.",
        [{ expr: quantile(0.95, "hexr_cache_lookup_duration_seconds_bucket", ["tier"]), legend: "{{tier}}" }],
        "s",
      ),
      series(
        "Tool calls by service",
        "Calls per second per cloud service.",
        [{ expr: `sum by (service) (${rate("hexr_tool_invocations_total")})`, legend: "{{service}}" }],
        "reqps",
      ),
      series(
        "Tool latency p95 by service",
        "95th percentile per service.",
        [{ expr: quantile(0.95, "hexr_tool_invocation_duration_seconds_bucket", ["service"]), legend: "{{service}}" }],
        "s",
      ),
      series(
        "Credential exchanges by provider and result",
        "ok, denied by policy, or failed at the cloud.",
        [
          {
            expr: `sum by (provider, result) (rate(hexr_credential_exchanges_total{tenant=~"$tenant"}[${R}]))`,
            legend: "{{provider}} {{result}}",
          },
        ],
        "ops",
      ),
      {
        type: "bargauge",
        title: "Tool calls by answering tier",
        description: "Which cache tier had the credentials for each tool call over the time range.",
        targets: [
          {
            expr: `sum by (tier) (increase(${sel("hexr_tool_invocations_total")}[$__range]))`,
            legend: "{{tier}}",
            instant: true,
          },
        ],
        w: 12,
        h: 8,
      },
    ],
  },
  {
    uid: "hexr-a2a",
    title: "Hexr / Agent-to-agent (A2A)",
    description: "A2A messages sent by agents and tasks handled by the A2A sidecars.",
    workloadVariables: true,
    panels: [
      stat("A2A sends / s", "Messages sent to other agents per second.", `sum(${rate("hexr_a2a_sends_total")})`, "reqps"),
      stat(
        "Failed task ratio",
        "Sends whose task ended failed, rejected or canceled.",
        ratio(
          `sum(${rate("hexr_a2a_sends_total", 'state=~"failed|rejected|canceled"')})`,
          `sum(${rate("hexr_a2a_sends_total")})`,
        ),
        "percentunit",
        0.05,
      ),
      stat("A2A send p95", "95th percentile of send duration.", quantile(0.95, "hexr_a2a_send_duration_seconds_bucket"), "s"),
      stat("Tasks received / s", "Task state transitions on the receiving side.", `sum(${rate("hexr_a2a_tasks_total")})`, "ops"),
      series(
        "Sends by resulting task state",
        "What happened to the tasks agents asked for.",
        [{ expr: `sum by (state) (${rate("hexr_a2a_sends_total")})`, legend: "{{state}}" }],
        "ops",
        { stack: true },
      ),
      series(
        "Sends by caller and target",
        "Who talks to whom.",
        [{ expr: `sum by (agent, role, target) (${rate("hexr_a2a_sends_total")})`, legend: "{{agent}}/{{role}} → {{target}}" }],
        "ops",
      ),
      series(
        "A2A send latency p95 by target",
        "95th percentile per target agent.",
        [{ expr: quantile(0.95, "hexr_a2a_send_duration_seconds_bucket", ["target"]), legend: "{{target}}" }],
        "s",
      ),
      series(
        "Tasks received by state",
        "Task lifecycle on the receiving agents.",
        [{ expr: `sum by (agent, state) (${rate("hexr_a2a_tasks_total")})`, legend: "{{agent}} {{state}}" }],
        "ops",
      ),
      series(
        "Messages received by method",
        "JSON-RPC throughput of the A2A sidecars.",
        [{ expr: `sum by (method) (${rate("hexr_a2a_messages_total")})`, legend: "{{method}}" }],
        "ops",
      ),
    ],
  },
  {
    uid: "hexr-identity",
    title: "Hexr / Identity and mTLS",
    description: "SVID issuance and rotation by the authority, and the mTLS mesh between agents.",
    workloadVariables: true,
    panels: [
      stat(
        "SVIDs issued in range",
        "X.509 and JWT SVIDs minted over the time range.",
        `sum(increase(hexr_svid_issued_total{tenant=~"$tenant"}[$__range]))`,
      ),
      stat(
        "SVID failures in range",
        "SVID requests refused or failed.",
        `sum(increase(hexr_svid_issue_failures_total[$__range]))`,
        "short",
        1,
      ),
      stat("Open mTLS connections", "Connections the mesh proxies hold open now.", `sum(${sel("hexr_mtls_connections_active")})`),
      stat(
        "mTLS handshake p95",
        "95th percentile of handshake latency.",
        quantile(0.95, "hexr_mtls_handshake_duration_seconds_bucket"),
        "s",
      ),
      series(
        "SVID issuance by type",
        "SVIDs minted per second.",
        [{ expr: `sum by (type) (rate(hexr_svid_issued_total{tenant=~"$tenant"}[${R}]))`, legend: "{{type}}" }],
        "ops",
      ),
      series(
        "SVID failures by reason",
        "Refused or failed SVID requests.",
        [{ expr: `sum by (type, reason) (rate(hexr_svid_issue_failures_total[${R}]))`, legend: "{{type}} {{reason}}" }],
        "ops",
      ),
      series(
        "Rotations by kind",
        "Workload SVID renewals and authority key steps.",
        [{ expr: `sum by (kind) (increase(hexr_svid_rotations_total[${R}]))`, legend: "{{kind}}" }],
        "short",
      ),
      series("mTLS handshake latency", "p50, p95, p99.", quantiles("hexr_mtls_handshake_duration_seconds_bucket"), "s"),
      series(
        "mTLS handshakes by result",
        "Handshakes per second, ok or failed, by direction.",
        [{ expr: `sum by (direction, result) (${rate("hexr_mtls_handshakes_total")})`, legend: "{{direction}} {{result}}" }],
        "ops",
      ),
      series(
        "mTLS connections opened",
        "New connections per second by direction.",
        [{ expr: `sum by (direction) (${rate("hexr_mtls_connections_total")})`, legend: "{{direction}}" }],
        "ops",
      ),
      series(
        "Open mTLS connections by agent",
        "Per agent process.",
        [{ expr: `sum by (agent, role) (${sel("hexr_mtls_connections_active")})`, legend: "{{agent}}/{{role}}" }],
        "short",
      ),
      series(
        "Mesh rejections by reason",
        "Connections or requests refused: bad certificate, policy, mesh token.",
        [{ expr: `sum by (reason) (${rate("hexr_mtls_rejections_total")})`, legend: "{{reason}}" }],
        "ops",
      ),
    ],
  },
  {
    uid: "hexr-policy",
    title: "Hexr / Policy",
    description: "Every access decision of the policy engine, by result, action and enforcement mode.",
    workloadVariables: false,
    panels: [
      stat("Decisions / s", "Policy decisions per second.", `sum(rate(hexr_policy_decisions_total[${R}]))`, "ops"),
      stat(
        "Deny ratio",
        "Share of decisions that denied (audit-mode denies included).",
        ratio(`sum(rate(hexr_policy_decisions_total{result="deny"}[${R}]))`, `sum(rate(hexr_policy_decisions_total[${R}]))`),
        "percentunit",
      ),
      stat(
        "Denied but allowed (audit/warn)",
        "Decisions that would have denied under enforce, over the time range.",
        `sum(increase(hexr_policy_decisions_total{result="deny",mode=~"audit|warn"}[$__range]))`,
      ),
      stat(
        "Evaluation p95",
        "95th percentile of policy evaluation time.",
        quantile(0.95, "hexr_policy_evaluation_duration_seconds_bucket", [], "", false),
        "s",
      ),
      series(
        "Decisions by result and mode",
        "allow/deny per enforcement mode.",
        [{ expr: `sum by (result, mode) (rate(hexr_policy_decisions_total[${R}]))`, legend: "{{result}} ({{mode}})" }],
        "ops",
      ),
      series(
        "Denies by action",
        "What is being refused.",
        [{ expr: `sum by (action) (rate(hexr_policy_decisions_total{result="deny"}[${R}]))`, legend: "{{action}}" }],
        "ops",
      ),
      series(
        "Evaluation latency by engine",
        "p95 per engine (Cedar embedded, OPA remote).",
        [{ expr: quantile(0.95, "hexr_policy_evaluation_duration_seconds_bucket", ["engine"], "", false), legend: "{{engine}}" }],
        "s",
      ),
      {
        type: "table",
        title: "Denies by tenant and action",
        description: "Over the dashboard's time range.",
        targets: [
          {
            expr: `sum by (tenant, action, mode) (increase(hexr_policy_decisions_total{result="deny"}[$__range]))`,
            instant: true,
          },
        ],
        w: 12,
        h: 8,
      },
    ],
  },
  {
    uid: "hexr-platform",
    title: "Hexr / Platform",
    description: "The platform process: HTTP API, telemetry pipeline, resources.",
    workloadVariables: false,
    panels: [
      stat("Requests / s", "Platform HTTP requests per second.", `sum(rate(hexr_http_requests_total[${R}]))`, "reqps"),
      stat(
        "5xx ratio",
        "Share of requests answered with a server error.",
        ratio(`sum(rate(hexr_http_requests_total{status=~"5.."}[${R}]))`, `sum(rate(hexr_http_requests_total[${R}]))`),
        "percentunit",
        0.01,
      ),
      stat("Uptime", "Since the platform process started.", "time() - max(hexr_process_start_time_seconds)", "dtdurations"),
      stat("Spans stored", "Spans in the trace store now (retention bounds it).", "sum(hexr_telemetry_spans_stored)"),
      series(
        "Requests by route",
        "Per route template.",
        [{ expr: `sum by (method, route) (rate(hexr_http_requests_total[${R}]))`, legend: "{{method}} {{route}}" }],
        "reqps",
      ),
      series(
        "Latency p95 by route",
        "95th percentile per route.",
        [{ expr: quantile(0.95, "hexr_http_request_duration_seconds_bucket", ["route"], "", false), legend: "{{route}}" }],
        "s",
      ),
      series(
        "Responses by status",
        "Per HTTP status.",
        [{ expr: `sum by (status) (rate(hexr_http_requests_total[${R}]))`, legend: "{{status}}" }],
        "reqps",
        { stack: true },
      ),
      series("Requests in flight", "Being served now.", [{ expr: "sum(hexr_http_requests_in_flight)", legend: "in flight" }]),
      series(
        "CPU",
        "CPU seconds per second of the platform process.",
        [{ expr: `rate(hexr_process_cpu_seconds_total[${R}])`, legend: "{{instance}}" }],
        "percentunit",
      ),
      series(
        "Memory",
        "Resident memory and V8 heap.",
        [
          { expr: "hexr_process_resident_memory_bytes", legend: "rss {{instance}}" },
          { expr: "hexr_nodejs_heap_used_bytes", legend: "heap {{instance}}" },
        ],
        "bytes",
      ),
      series(
        "Event loop lag (p99)",
        "Delay of the event loop between scrapes.",
        [{ expr: "hexr_nodejs_eventloop_lag_seconds", legend: "{{instance}}" }],
        "s",
      ),
      series(
        "Spans received",
        "OTLP spans accepted and rejected per second.",
        [{ expr: `sum by (result) (rate(hexr_telemetry_spans_received_total[${R}]))`, legend: "{{result}}" }],
        "ops",
      ),
      series(
        "Metric points received",
        "OTLP data points accepted and rejected per second.",
        [{ expr: `sum by (result) (rate(hexr_telemetry_metric_points_received_total[${R}]))`, legend: "{{result}}" }],
        "ops",
      ),
      series(
        "Forwarding to the external OTLP endpoint",
        "Batches per second by result (ok, failed, dropped).",
        [{ expr: `sum by (signal, result) (rate(hexr_telemetry_forwarded_total[${R}]))`, legend: "{{signal}} {{result}}" }],
        "ops",
      ),
      series(
        "Spans removed by retention",
        "Per second.",
        [{ expr: `sum(rate(hexr_telemetry_spans_pruned_total[${R}]))`, legend: "pruned" }],
        "ops",
      ),
      series(
        "Metric series dropped",
        "Samples refused because a family hit its series limit (label cardinality).",
        [{ expr: `sum by (family) (rate(hexr_metrics_series_dropped_total[${R}]))`, legend: "{{family}}" }],
        "ops",
      ),
      {
        type: "table",
        title: "Platform version",
        description: "Versions of the platform processes scraped.",
        targets: [{ expr: "hexr_platform_info", instant: true }],
        w: 12,
        h: 6,
      },
    ],
  },
];

function variables(spec: DashboardSpec): unknown[] {
  if (!spec.workloadVariables) return [];
  const v = (name: string, label: string, query: string) => ({
    name,
    label,
    type: "query",
    datasource: DS,
    query: { query, refId: `${name}-var` },
    definition: query,
    refresh: 2,
    includeAll: true,
    multi: true,
    allValue: ".*",
    current: { selected: true, text: ["All"], value: ["$__all"] },
    sort: 1,
  });
  return [
    v("tenant", "Tenant", "label_values(hexr_agent_invocations_total, tenant)"),
    v("agent", "Agent", 'label_values(hexr_agent_invocations_total{tenant=~"$tenant"}, agent)'),
  ];
}

function panel(p: PanelSpec, id: number, x: number, y: number): Record<string, unknown> {
  const defaults: Record<string, unknown> = { unit: p.unit ?? "short" };
  if (p.type === "stat" || p.type === "gauge") {
    defaults["thresholds"] = {
      mode: "absolute",
      steps: [{ color: "green", value: null }, ...(p.redFrom !== undefined ? [{ color: "red", value: p.redFrom }] : [])],
    };
  }
  if (p.type === "timeseries") {
    defaults["custom"] = {
      drawStyle: "line",
      lineWidth: 1,
      fillOpacity: p.stack ? 30 : 10,
      showPoints: "never",
      stacking: { mode: p.stack ? "normal" : "none", group: "A" },
    };
  }
  const options: Record<string, unknown> =
    p.type === "timeseries"
      ? { legend: { displayMode: "list", placement: "bottom", showLegend: true }, tooltip: { mode: "multi", sort: "desc" } }
      : p.type === "stat"
        ? {
            reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false },
            colorMode: "value",
            graphMode: "area",
            textMode: "auto",
          }
        : p.type === "piechart"
          ? {
              reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false },
              legend: { displayMode: "list", placement: "right", showLegend: true },
            }
          : p.type === "bargauge"
            ? {
                reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false },
                orientation: "horizontal",
                displayMode: "gradient",
              }
            : { showHeader: true };
  return {
    id,
    type: p.type,
    title: p.title,
    description: p.description,
    datasource: DS,
    gridPos: { x, y, w: p.w ?? 12, h: p.h ?? 8 },
    fieldConfig: { defaults, overrides: [] },
    options,
    ...(p.type === "table" ? { transformations: [{ id: "reduce", options: { reducers: ["lastNotNull"] } }] } : {}),
    targets: p.targets.map((t, i) => ({
      refId: String.fromCharCode(65 + i),
      datasource: DS,
      expr: t.expr,
      legendFormat: t.legend ?? "__auto",
      range: !t.instant,
      instant: !!t.instant,
      ...(p.type === "table" ? { format: "table" } : {}),
    })),
  };
}

export function buildDashboard(spec: DashboardSpec): Record<string, unknown> {
  let x = 0;
  let y = 0;
  let rowH = 0;
  const panels = spec.panels.map((p, i) => {
    const w = p.w ?? 12;
    if (x + w > 24) {
      x = 0;
      y += rowH;
      rowH = 0;
    }
    const out = panel(p, i + 1, x, y);
    x += w;
    rowH = Math.max(rowH, p.h ?? 8);
    return out;
  });
  return {
    uid: spec.uid,
    title: spec.title,
    description: spec.description,
    tags: ["hexr"],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: "30s",
    time: { from: "now-1h", to: "now" },
    timezone: "browser",
    annotations: { list: [] },
    links: [
      { type: "dashboards", tags: ["hexr"], asDropdown: true, title: "Hexr dashboards", includeVars: true, keepTime: true },
    ],
    templating: { list: variables(spec) },
    panels,
  };
}

export const DASHBOARD_DIR = fileURLToPath(new URL("./dashboards/", import.meta.url));

/** File name → JSON text, formatted as the repository's prettier config wants it (lint checks it). */
export async function renderAll(): Promise<Map<string, string>> {
  const file = DASHBOARD_DIR + "x.json";
  const config = (await prettier.resolveConfig(file)) ?? {};
  const out = new Map<string, string>();
  for (const d of DASHBOARDS)
    out.set(`${d.uid}.json`, await prettier.format(JSON.stringify(buildDashboard(d)), { ...config, filepath: file }));
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  mkdirSync(DASHBOARD_DIR, { recursive: true });
  let panels = 0;
  for (const [file, text] of await renderAll()) {
    writeFileSync(DASHBOARD_DIR + file, text);
    panels += (JSON.parse(text) as { panels: unknown[] }).panels.length;
  }
  console.log(`wrote ${DASHBOARDS.length} dashboards, ${panels} panels, to ${DASHBOARD_DIR}`);
}
