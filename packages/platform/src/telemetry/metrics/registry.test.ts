import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { registry as catalog } from "./catalog.js";
import { MetricRegistry } from "./registry.js";

/** Prometheus' own checker (Debian package `prometheus`): parses the exposition and lints names. */
function promtool(text: string): { code: number; out: string } {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  if (r.error) throw new Error(`promtool is needed for this test (apt-get install prometheus): ${r.error.message}`);
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

describe("MetricRegistry", () => {
  it("renders counters, gauges and histograms in the text format, escaping label values", () => {
    const reg = new MetricRegistry();
    const c = reg.counter({
      name: "t_requests_total",
      help: "Requests\nwith a newline \\ and backslash",
      labelNames: ["route", "status"],
    });
    const g = reg.gauge({ name: "t_open", help: "Open things" });
    const h = reg.histogram({ name: "t_duration_seconds", help: "Durations", labelNames: ["op"], buckets: [0.1, 1] });
    c.inc({ route: 'a"b\\c\nd', status: 200 });
    c.inc({ route: "/x", status: 500 }, 2.5);
    c.inc({ route: "/x", status: 500 }, -1); // ignored: counters never go down
    g.set(undefined, 3);
    g.dec();
    h.observe({ op: "read" }, 0.05);
    h.observe({ op: "read" }, 0.5);
    h.observe({ op: "read" }, 5);
    const text = reg.render();
    expect(text).toContain("# HELP t_requests_total Requests\\nwith a newline \\\\ and backslash");
    expect(text).toContain('t_requests_total{route="a\\"b\\\\c\\nd",status="200"} 1');
    expect(text).toContain('t_requests_total{route="/x",status="500"} 2.5');
    expect(text).toContain("t_open 2");
    expect(text).toContain('t_duration_seconds_bucket{op="read",le="0.1"} 1');
    expect(text).toContain('t_duration_seconds_bucket{op="read",le="1"} 2');
    expect(text).toContain('t_duration_seconds_bucket{op="read",le="+Inf"} 3');
    expect(text).toContain('t_duration_seconds_sum{op="read"} 5.55');
    expect(text).toContain('t_duration_seconds_count{op="read"} 3');
    expect(promtool(text)).toEqual({ code: 0, out: "" });
  });

  it("adds whole distributions, re-bucketing without ever placing a value below its bucket", () => {
    const reg = new MetricRegistry();
    const h = reg.histogram({ name: "d_seconds", help: "d", buckets: [0.01, 0.1, 1] });
    h.addDistribution(undefined, { bounds: [0.01, 0.1, 1], counts: [1, 2, 3, 4], sum: 10, count: 10 });
    // foreign bounds: 0.05 → our 0.1 bucket, 0.5 → our 1, 2 → +Inf
    h.addDistribution(undefined, { bounds: [0.05, 0.5, 2], counts: [1, 1, 1, 1], sum: 4, count: 4 });
    // milliseconds scaled to seconds: bound 5 ms = 0.005 s → 0.01 bucket
    h.addDistribution(undefined, { bounds: [5], counts: [2, 0], sum: 8, count: 2 }, 0.001);
    expect(h.snapshot()).toEqual({ count: 16, sum: 14.008, cumulative: [3, 6, 10, 16] });
  });

  it("caps the number of series per family and counts what it dropped", () => {
    const reg = new MetricRegistry();
    const c = reg.counter({ name: "capped_total", help: "c", labelNames: ["id"], maxSeries: 3 });
    for (let i = 0; i < 10; i++) c.inc({ id: String(i) });
    expect(c.size).toBe(3);
    expect(reg.render()).toContain('hexr_metrics_series_dropped_total{family="capped_total"} 7');
  });

  it("refuses invalid names and duplicate registrations", () => {
    const reg = new MetricRegistry();
    expect(() => reg.counter({ name: "bad-name", help: "x" })).toThrow(/invalid metric name/);
    expect(() => reg.counter({ name: "ok_total", help: "x", labelNames: ["le"] })).toThrow(/invalid label/);
    reg.gauge({ name: "dup", help: "x" });
    expect(() => reg.gauge({ name: "dup", help: "x" })).toThrow(/twice/);
  });

  it("the whole Hexr catalog is valid exposition that passes promtool's lint", () => {
    catalog.get("hexr_agent_invocations_total");
    const text = catalog.render();
    const result = promtool(text);
    expect(result.out).toBe("");
    expect(result.code).toBe(0);
    expect(catalog.sampleNames()).toContain("hexr_llm_tokens_total");
    expect(catalog.sampleNames()).toContain("hexr_agent_invocation_duration_seconds_bucket");
  });
});
