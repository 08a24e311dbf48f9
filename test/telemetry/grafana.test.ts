import { parser } from "@prometheus-io/lezer-promql";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ATTR, SPAN, setupTelemetry, withSpan, type Telemetry } from "hexr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DASHBOARD_DIR, PROMETHEUS_UID, renderAll } from "../../deploy/grafana/build-dashboards.js";
import { metrics } from "../../packages/platform/src/telemetry/metrics/catalog.js";
import { startTestPlatform, type TestPlatform } from "../../packages/platform/src/test-support/platform.js";

interface Target {
  refId: string;
  expr: string;
  datasource: { uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  description: string;
  datasource: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets: Target[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
}

const files = readdirSync(DASHBOARD_DIR).filter((f) => f.endsWith(".json"));
const dashboards = files.map((f) => JSON.parse(readFileSync(join(DASHBOARD_DIR, f), "utf8")) as Dashboard);
const allTargets = dashboards.flatMap((d) =>
  d.panels.flatMap((p) => p.targets.map((t) => ({ dashboard: d.uid, panel: p.title, expr: t.expr }))),
);

/** Grafana variables → values Prometheus accepts. */
function concrete(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "1m")
    .replaceAll("$__range", "1h")
    .replaceAll("$tenant", ".*")
    .replaceAll("$agent", ".*");
}

/** Parses PromQL with Prometheus' own grammar; returns the metric names it selects, or the parse error. */
function metricNames(expr: string): { names: string[]; error?: string } {
  const q = concrete(expr);
  const tree = parser.parse(q);
  const names: string[] = [];
  let error: string | undefined;
  tree.iterate({
    enter(n) {
      if (n.type.isError) error ??= `syntax error at ${n.from}: …${q.slice(Math.max(0, n.from - 20), n.from + 20)}…`;
      if (n.name === "Identifier" && n.node.parent?.name === "VectorSelector") names.push(q.slice(n.from, n.to));
    },
  });
  return { names, ...(error ? { error } : {}) };
}

let platform: TestPlatform;
let exported: Set<string>;
let families: string[];

beforeAll(async () => {
  platform = await startTestPlatform({ config: { telemetry: { metricsAuth: "public" } } });
  // What a scrape of a running platform declares (# TYPE lines), histograms expanded to their series.
  const text = await (await fetch(platform.url + "/metrics")).text();
  exported = new Set<string>();
  families = [];
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    families.push(m[1]!);
    if (m[2] === "histogram") for (const s of ["_bucket", "_sum", "_count"]) exported.add(m[1]! + s);
    else exported.add(m[1]!);
  }
});
afterAll(async () => platform?.dispose());

describe("Grafana dashboards", () => {
  it("are what build-dashboards.ts generates", async () => {
    const generated = await renderAll();
    expect([...generated.keys()].sort()).toEqual([...files].sort());
    for (const [file, text] of generated) expect(readFileSync(join(DASHBOARD_DIR, file), "utf8"), file).toBe(text);
  });

  it("have 42 panels or more, each titled, described, on the Hexr Prometheus, laid out on the grid", () => {
    const panels = dashboards.flatMap((d) => d.panels);
    expect(panels.length).toBeGreaterThanOrEqual(42);
    for (const d of dashboards) {
      expect(new Set(d.panels.map((p) => p.id)).size).toBe(d.panels.length);
      for (const p of d.panels) {
        expect(p.title, `${d.uid}`).toBeTruthy();
        expect(p.description, `${d.uid}/${p.title}`).toBeTruthy();
        expect(p.datasource.uid).toBe(PROMETHEUS_UID);
        expect(p.targets.length).toBeGreaterThan(0);
        expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      }
    }
    // the areas the issue asks for
    expect(dashboards.map((d) => d.uid).sort()).toEqual([
      "hexr-a2a",
      "hexr-agents",
      "hexr-identity",
      "hexr-llm",
      "hexr-platform",
      "hexr-policy",
      "hexr-tools",
    ]);
  });

  it("query only metrics the platform exports, in PromQL that parses", () => {
    expect(exported.size).toBeGreaterThan(40);
    const problems: string[] = [];
    const used = new Set<string>();
    for (const t of allTargets) {
      const { names, error } = metricNames(t.expr);
      if (error) problems.push(`${t.dashboard} / ${t.panel}: ${error}`);
      if (names.length === 0) problems.push(`${t.dashboard} / ${t.panel}: selects no metric`);
      for (const n of names) {
        used.add(n.replace(/_(bucket|sum|count)$/, ""));
        if (!exported.has(n)) problems.push(`${t.dashboard} / ${t.panel}: ${n} is not exported`);
      }
    }
    expect(problems).toEqual([]);
    // and every family the platform exports is on some panel
    expect(families.filter((f) => !used.has(f))).toEqual([]);
  });

  it("fails on a query that names a metric nobody exports (the check itself works)", () => {
    const { names } = metricNames('sum(rate(hexr_agent_invocation_total{tenant=~"$tenant"}[$__rate_interval]))');
    expect(names.filter((n) => !exported.has(n))).toEqual(["hexr_agent_invocation_total"]);
    expect(metricNames("sum(rate(x[5m]) by").error).toBeDefined();
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe("Grafana dashboards against a real Prometheus scraping the platform", () => {
  let prom: ChildProcess;
  let promUrl: string;
  let dir: string;
  let telemetry: Telemetry;
  let promLog = "";

  beforeAll(async () => {
    // Agent telemetry through the SDK's exporter, and platform-side records, so that the series exist.
    telemetry = setupTelemetry({
      spiffeId: "spiffe://hexr.local/agent/grafana/crew/main",
      tenant: "grafana",
      agent: "crew",
      role: "main",
      framework: "custom",
      endpoint: platform.url,
      headers: { authorization: `Bearer ${platform.adminKey}` },
      metricIntervalMs: 200,
      batch: { scheduledDelayMs: 10 },
    });
    for (let i = 0; i < 3; i++) {
      await withSpan(SPAN.AGENT_INVOKE, async () => {
        withSpan(SPAN.CACHE_LOOKUP, { attributes: { [ATTR.CACHE_TIER]: "L1", [ATTR.CACHE_HIT]: i > 0 } }, () => undefined);
        withSpan(
          SPAN.TOOL_INVOKE,
          { attributes: { [ATTR.TOOL_SERVICE]: "aws_s3", [ATTR.CLOUD_REGION]: "us-east-1", [ATTR.CACHE_TIER]: "L1" } },
          () => undefined,
        );
        withSpan(
          SPAN.LLM_CHAT,
          {
            attributes: {
              [ATTR.GEN_AI_PROVIDER]: "openai",
              [ATTR.GEN_AI_REQUEST_MODEL]: "gpt-4o",
              [ATTR.GEN_AI_USAGE_INPUT_TOKENS]: 10,
              [ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]: 5,
              [ATTR.LLM_COST_USD]: 0.0001,
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
    }
    metrics.recordHandshake(3, { tenant: "grafana", agent: "crew", role: "main" });
    metrics.connectionOpened({ tenant: "grafana", agent: "crew", role: "main" });
    metrics.recordPolicyDecision("deny", { action: "a2a:send", mode: "audit", tenant: "grafana", seconds: 0.0004 });
    metrics.recordSvidIssued("x509", "grafana");
    await telemetry.forceFlush();

    dir = mkdtempSync(join(tmpdir(), "hexr-prom-"));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    const target = new URL(platform.url).host;
    writeFileSync(
      join(dir, "prometheus.yml"),
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hexr\n    static_configs:\n      - targets: ["${target}"]\n`,
    );
    prom = spawn(
      "prometheus",
      [
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    prom.on("error", (err) => (promLog += `spawn failed (apt-get install prometheus): ${err.message}\n`));
    prom.stdout!.on("data", (d: Buffer) => (promLog += d.toString()));
    prom.stderr!.on("data", (d: Buffer) => (promLog += d.toString()));
    // Wait until two scrapes have the agent series (rate() needs two samples).
    const deadline = Date.now() + 45_000;
    for (;;) {
      if (Date.now() > deadline || prom.exitCode !== null) throw new Error(`Prometheus did not scrape the platform:\n${promLog}`);
      const r = await query("count_over_time(hexr_agent_invocations_total[1m])").catch(() => undefined);
      if (r && r.data.result.some((s) => Number(s.value[1]) >= 2)) break;
      await new Promise((res) => setTimeout(res, 250));
    }
  }, 60_000);

  afterAll(async () => {
    await telemetry?.shutdown();
    if (prom && prom.exitCode === null) {
      prom.kill("SIGTERM");
      await new Promise((r) => prom.once("exit", r));
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function query(q: string): Promise<{
    status: string;
    error?: string;
    data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
  }> {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`);
    return (await res.json()) as never;
  }

  it("evaluates every panel query without error", { timeout: 120_000 }, async () => {
    const failures: string[] = [];
    for (const t of allTargets) {
      const r = await query(concrete(t.expr));
      if (r.status !== "success") failures.push(`${t.dashboard} / ${t.panel}: ${r.error}`);
    }
    expect(failures).toEqual([]);
  });

  it("shows the agent's data on the key panels", async () => {
    const nonEmpty = async (panel: string) => {
      const t = allTargets.find((x) => x.panel === panel)!;
      const r = await query(concrete(t.expr));
      return r.data.result.length;
    };
    for (const panel of [
      "Invocations by agent and role",
      "Tokens / s by type",
      "Cache hit ratio by tier",
      "Sends by resulting task state",
      "Tool calls by service",
      "Open mTLS connections by agent",
      "Decisions by result and mode",
      "Requests by route",
    ]) {
      expect(await nonEmpty(panel), panel).toBeGreaterThan(0);
    }
    const tokens = await query('sum by (type) (hexr_llm_tokens_total{tenant="grafana"})');
    expect(Object.fromEntries(tokens.data.result.map((s) => [s.metric["type"], Number(s.value[1])]))).toEqual({
      input: 30,
      output: 15,
    });
  });
});
