import {
  Temporality,
  type Attrs,
  type AttrValue,
  type HistogramPoint,
  type MetricsRequest,
  type NumberPoint,
  type OtlpMetric,
} from "../otlp/model.js";
import { IDENTITY_LABELS, otlpAliases as defaultAliases, registry as defaultRegistry, type WorkloadLabels } from "./catalog.js";
import { Counter, Gauge, Histogram, type AnyFamily, type Labels, type MetricRegistry } from "./registry.js";

export interface IngestResult {
  accepted: number;
  rejected: number;
  reason: string | undefined;
}

interface CounterState {
  start: bigint;
  value: number;
}
interface HistogramState {
  start: bigint;
  counts: number[];
  bounds: number[];
  sum: number;
  count: number;
}

const IDENTITY = new Set<string>(IDENTITY_LABELS);

function labelValue(v: AttrValue | undefined): string {
  if (v === undefined || v === null) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/**
 * Adds OTLP metric points to the Prometheus registry. Delta points are added as they come;
 * cumulative points (other SDKs, the sidecars' push) are turned into deltas against the last
 * point seen from the same sender and series, treating a lower value or a new start time as a reset.
 */
export class OtlpMetricsIngest {
  private readonly registry: MetricRegistry;
  private readonly aliases: Map<string, AnyFamily>;
  private readonly state = new Map<string, CounterState | HistogramState>();
  private readonly maxTracked: number;

  constructor(opts: { registry?: MetricRegistry; aliases?: Map<string, AnyFamily>; maxTracked?: number } = {}) {
    this.registry = opts.registry ?? defaultRegistry;
    this.aliases = opts.aliases ?? defaultAliases;
    this.maxTracked = opts.maxTracked ?? 100_000;
  }

  family(name: string): AnyFamily | undefined {
    return this.aliases.get(name) ?? this.registry.get(name);
  }

  /**
   * `identity(resource)` says which workload sent a resource's metrics (labels) or why its points
   * are refused; `source` distinguishes senders for cumulative bookkeeping.
   */
  ingest(
    req: MetricsRequest,
    identity: (resource: Attrs) => { labels: WorkloadLabels; source: string } | { reject: string },
  ): IngestResult {
    const result: IngestResult = { accepted: 0, rejected: req.rejected, reason: req.rejectReason };
    const reject = (n: number, why: string) => {
      result.rejected += n;
      result.reason ??= why;
    };
    for (const rm of req.resourceMetrics) {
      const who = identity(rm.resource);
      for (const sm of rm.scopeMetrics) {
        for (const m of sm.metrics) {
          const n = m.kind === "unsupported" ? m.pointCount : m.points.length;
          if ("reject" in who) {
            reject(n, who.reject);
            continue;
          }
          if (m.kind === "unsupported") {
            reject(n, `metric ${m.name}: ${m.type} is not supported; use explicit-bucket histograms`);
            continue;
          }
          const family = this.family(m.name);
          if (!family) {
            reject(n, `metric ${m.name} is not one Hexr exports`);
            continue;
          }
          const err = this.apply(family, m, who.labels, who.source);
          if (err) reject(n, err);
          else result.accepted += n;
        }
      }
    }
    return result;
  }

  private labels(family: AnyFamily, id: WorkloadLabels, attrs: Attrs): Labels {
    const out: Labels = {};
    for (const name of family.labelNames) {
      out[name] = IDENTITY.has(name) ? (id[name as keyof WorkloadLabels] ?? labelValue(attrs[name])) : labelValue(attrs[name]);
    }
    return out;
  }

  private key(source: string, family: AnyFamily, labels: Labels): string {
    return `${source}\u0001${family.name}\u0001${family.labelNames.map((n) => labels[n]).join("\u0000")}`;
  }

  private remember(key: string, s: CounterState | HistogramState): void {
    if (!this.state.has(key) && this.state.size >= this.maxTracked) {
      const oldest = this.state.keys().next().value;
      if (oldest !== undefined) this.state.delete(oldest);
    }
    this.state.delete(key);
    this.state.set(key, s);
  }

  private apply(
    family: AnyFamily,
    m: Exclude<OtlpMetric, { kind: "unsupported" }>,
    id: WorkloadLabels,
    source: string,
  ): string | undefined {
    if (family instanceof Histogram) {
      if (m.kind !== "histogram") return `metric ${m.name} must be a histogram (${family.name})`;
      // Durations may arrive in ms from SDKs configured that way; the families are in seconds.
      const scale = family.name.endsWith("_seconds") && m.unit === "ms" ? 0.001 : 1;
      for (const p of m.points) this.histogramPoint(family, p, m.temporality, scale, id, source);
      return undefined;
    }
    if (family instanceof Counter) {
      if (m.kind !== "sum" || !m.monotonic) return `metric ${m.name} must be a monotonic sum (${family.name})`;
      for (const p of m.points) this.counterPoint(family, p, m.temporality, id, source);
      return undefined;
    }
    if (family instanceof Gauge) {
      if (m.kind === "histogram") return `metric ${m.name} must be a gauge or sum (${family.name})`;
      for (const p of m.points) {
        const labels = this.labels(family, id, p.attributes);
        if (m.kind === "sum" && m.temporality === Temporality.DELTA) family.inc(labels, p.value);
        else family.set(labels, p.value);
      }
      return undefined;
    }
    return `metric ${m.name} cannot be recorded`;
  }

  private counterPoint(family: Counter, p: NumberPoint, temporality: Temporality, id: WorkloadLabels, source: string): void {
    const labels = this.labels(family, id, p.attributes);
    if (temporality !== Temporality.CUMULATIVE) {
      family.inc(labels, p.value);
      return;
    }
    const key = this.key(source, family, labels);
    const prev = this.state.get(key) as CounterState | undefined;
    const delta = prev && prev.start === p.startNs && p.value >= prev.value ? p.value - prev.value : p.value;
    this.remember(key, { start: p.startNs, value: p.value });
    family.inc(labels, delta);
  }

  private histogramPoint(
    family: Histogram,
    p: HistogramPoint,
    temporality: Temporality,
    scale: number,
    id: WorkloadLabels,
    source: string,
  ): void {
    const labels = this.labels(family, id, p.attributes);
    if (temporality !== Temporality.CUMULATIVE) {
      family.addDistribution(labels, { bounds: p.bounds, counts: p.bucketCounts, sum: p.sum, count: p.count }, scale);
      return;
    }
    const key = this.key(source, family, labels);
    const prev = this.state.get(key) as HistogramState | undefined;
    const sameSeries =
      prev &&
      prev.start === p.startNs &&
      p.count >= prev.count &&
      prev.bounds.length === p.bounds.length &&
      prev.bounds.every((b, i) => b === p.bounds[i]) &&
      prev.counts.length === p.bucketCounts.length &&
      p.bucketCounts.every((c, i) => c >= prev.counts[i]!);
    const counts = sameSeries ? p.bucketCounts.map((c, i) => c - prev.counts[i]!) : p.bucketCounts;
    const count = sameSeries ? p.count - prev.count : p.count;
    const sum = sameSeries ? (p.sum ?? 0) - prev.sum : p.sum;
    this.remember(key, { start: p.startNs, counts: [...p.bucketCounts], bounds: [...p.bounds], sum: p.sum ?? 0, count: p.count });
    if (count > 0) family.addDistribution(labels, { bounds: p.bounds, counts, sum, count }, scale);
  }
}
