/**
 * A small Prometheus registry (text exposition format 0.0.4). Written here rather than taken from
 * prom-client because the OTLP receiver must add whole histogram distributions and cumulative
 * deltas from other processes, which prom-client's observe-one-value API cannot express.
 */

export type MetricType = "counter" | "gauge" | "histogram";
export type Labels = Record<string, string | number | boolean | undefined>;

export interface FamilyDef {
  name: string;
  help: string;
  labelNames?: readonly string[];
  /** Histograms only: upper bounds, ascending (+Inf is implicit). */
  buckets?: readonly number[];
  /** Series beyond this are dropped (and counted), so bad labels cannot exhaust memory. */
  maxSeries?: number;
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function formatValue(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  if (Number.isNaN(v)) return "NaN";
  return String(v);
}

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const escapeHelp = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");

interface Series<V> {
  labels: string[];
  value: V;
}

export abstract class Family<V> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  abstract readonly type: MetricType;
  protected readonly series = new Map<string, Series<V>>();
  private readonly maxSeries: number;
  dropped = 0;

  constructor(def: FamilyDef) {
    if (!NAME_RE.test(def.name)) throw new Error(`invalid metric name ${def.name}`);
    for (const l of def.labelNames ?? []) {
      if (!LABEL_RE.test(l) || l.startsWith("__") || l === "le") throw new Error(`invalid label name ${l} on ${def.name}`);
    }
    this.name = def.name;
    this.help = def.help;
    this.labelNames = def.labelNames ?? [];
    this.maxSeries = def.maxSeries ?? 10_000;
  }

  protected abstract initial(): V;

  /** The series for these labels (created on first use); undefined when the cardinality limit is hit. */
  protected get(labels: Labels | undefined): Series<V> | undefined {
    const values = this.labelNames.map((n) => {
      const v = labels?.[n];
      return v === undefined ? "" : String(v);
    });
    const key = values.join("\u0000");
    let s = this.series.get(key);
    if (!s) {
      if (this.series.size >= this.maxSeries) {
        this.dropped++;
        return undefined;
      }
      s = { labels: values, value: this.initial() };
      this.series.set(key, s);
    }
    return s;
  }

  protected labelText(values: string[], extra?: [string, string]): string {
    const parts = values.map((v, i) => `${this.labelNames[i]}="${escapeLabel(v)}"`);
    if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
    return parts.length ? `{${parts.join(",")}}` : "";
  }

  /** Sample names this family exposes (histograms: `_bucket`, `_sum`, `_count`). */
  sampleNames(): string[] {
    return [this.name];
  }

  get size(): number {
    return this.series.size;
  }

  /** The series as label records and values (for pushing them elsewhere). */
  entries(): Array<{ labels: Record<string, string>; value: V }> {
    return [...this.series.values()].map((s) => ({
      labels: Object.fromEntries(this.labelNames.map((n, i) => [n, s.labels[i]!])),
      value: s.value,
    }));
  }

  reset(): void {
    this.series.clear();
  }

  abstract samples(): string[];

  render(): string {
    return [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`, ...this.samples()].join("\n");
  }
}

export class Counter extends Family<number> {
  readonly type = "counter";
  protected initial(): number {
    return 0;
  }
  /** Adds `v` (≥ 0; negative or non-finite values are ignored: a counter never goes down). */
  inc(labels?: Labels, v = 1): void {
    if (!(v >= 0) || !Number.isFinite(v)) return;
    const s = this.get(labels);
    if (s) s.value += v;
  }
  /** For collectors that read a total from elsewhere (CPU seconds). */
  setTotal(labels: Labels | undefined, v: number): void {
    const s = this.get(labels);
    if (s && Number.isFinite(v) && v >= s.value) s.value = v;
  }
  value(labels?: Labels): number {
    return this.get(labels)?.value ?? 0;
  }
  samples(): string[] {
    return [...this.series.values()].map((s) => `${this.name}${this.labelText(s.labels)} ${formatValue(s.value)}`);
  }
}

export class Gauge extends Family<number> {
  readonly type = "gauge";
  protected initial(): number {
    return 0;
  }
  set(labels: Labels | undefined, v: number): void {
    const s = this.get(labels);
    if (s && !Number.isNaN(v)) s.value = v;
  }
  inc(labels?: Labels, v = 1): void {
    const s = this.get(labels);
    if (s && Number.isFinite(v)) s.value += v;
  }
  dec(labels?: Labels, v = 1): void {
    this.inc(labels, -v);
  }
  value(labels?: Labels): number {
    return this.get(labels)?.value ?? 0;
  }
  samples(): string[] {
    return [...this.series.values()].map((s) => `${this.name}${this.labelText(s.labels)} ${formatValue(s.value)}`);
  }
}

interface HistogramValue {
  /** Per bucket, not cumulative; the last is +Inf. */
  counts: number[];
  sum: number;
  count: number;
}

export interface Distribution {
  /** Upper bounds of the source buckets, ascending. */
  bounds: readonly number[];
  /** Per-bucket counts (bounds.length + 1 entries, the last for +Inf), not cumulative. */
  counts: readonly number[];
  sum: number | undefined;
  count: number;
}

export class Histogram extends Family<HistogramValue> {
  readonly type = "histogram";
  readonly buckets: readonly number[];

  constructor(def: FamilyDef) {
    super(def);
    const b = [...(def.buckets ?? [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])];
    for (let i = 1; i < b.length; i++) if (!(b[i]! > b[i - 1]!)) throw new Error(`buckets of ${def.name} must increase`);
    this.buckets = b;
  }

  protected initial(): HistogramValue {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  private bucketIndex(upper: number): number {
    // first of our bounds that is ≥ upper; +Inf otherwise
    let lo = 0;
    let hi = this.buckets.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.buckets[mid]! >= upper) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  observe(labels: Labels | undefined, v: number): void {
    if (Number.isNaN(v)) return;
    const s = this.get(labels);
    if (!s) return;
    s.value.counts[this.bucketIndex(v)]!++;
    s.value.sum += v;
    s.value.count++;
  }

  /**
   * Adds a whole distribution (an OTLP histogram point). When the source bounds differ from ours,
   * each source bucket lands in the first of our buckets whose bound covers its upper bound, which
   * never places an observation below its true value.
   */
  addDistribution(labels: Labels | undefined, d: Distribution, scale = 1): void {
    const s = this.get(labels);
    if (!s) return;
    if (d.counts.length === 0) {
      s.value.counts[this.buckets.length]! += d.count;
    } else {
      for (let i = 0; i < d.counts.length; i++) {
        const c = d.counts[i]!;
        if (!c) continue;
        const upper = i < d.bounds.length ? d.bounds[i]! * scale : Infinity;
        s.value.counts[this.bucketIndex(upper)]! += c;
      }
    }
    s.value.sum += (d.sum ?? 0) * scale;
    s.value.count += d.count;
  }

  snapshot(labels?: Labels): { count: number; sum: number; cumulative: number[] } {
    const v = this.get(labels)?.value ?? this.initial();
    let acc = 0;
    return { count: v.count, sum: v.sum, cumulative: v.counts.map((c) => (acc += c)) };
  }

  override sampleNames(): string[] {
    return [`${this.name}_bucket`, `${this.name}_sum`, `${this.name}_count`];
  }

  samples(): string[] {
    const out: string[] = [];
    for (const s of this.series.values()) {
      let acc = 0;
      for (let i = 0; i <= this.buckets.length; i++) {
        acc += s.value.counts[i]!;
        const le = i < this.buckets.length ? formatValue(this.buckets[i]!) : "+Inf";
        out.push(`${this.name}_bucket${this.labelText(s.labels, ["le", le])} ${formatValue(acc)}`);
      }
      out.push(`${this.name}_sum${this.labelText(s.labels)} ${formatValue(s.value.sum)}`);
      out.push(`${this.name}_count${this.labelText(s.labels)} ${formatValue(s.value.count)}`);
    }
    return out;
  }
}

export type AnyFamily = Counter | Gauge | Histogram;

export class MetricRegistry {
  private readonly byName = new Map<string, AnyFamily>();
  private readonly collectors: Array<() => void> = [];
  readonly droppedSeries: Counter;

  constructor() {
    this.droppedSeries = this.counter({
      name: "hexr_metrics_series_dropped_total",
      help: "Samples dropped because a metric family reached its series limit",
      labelNames: ["family"],
    });
  }

  private add<F extends AnyFamily>(f: F): F {
    if (this.byName.has(f.name)) throw new Error(`metric ${f.name} is registered twice`);
    this.byName.set(f.name, f);
    return f;
  }

  counter(def: FamilyDef): Counter {
    return this.add(new Counter(def));
  }
  gauge(def: FamilyDef): Gauge {
    return this.add(new Gauge(def));
  }
  histogram(def: FamilyDef): Histogram {
    return this.add(new Histogram(def));
  }

  get(name: string): AnyFamily | undefined {
    return this.byName.get(name);
  }

  families(): AnyFamily[] {
    return [...this.byName.values()];
  }

  /** Every sample name a scrape can contain, e.g. for checking dashboard queries. */
  sampleNames(): string[] {
    return this.families().flatMap((f) => f.sampleNames());
  }

  /** Runs before each render: process gauges and the like. A failing collector is skipped. */
  onCollect(fn: () => void): void {
    this.collectors.push(fn);
  }

  render(): string {
    for (const c of this.collectors) {
      try {
        c();
      } catch {
        // a broken collector must not break the scrape
      }
    }
    for (const f of this.byName.values()) if (f.dropped) this.droppedSeries.setTotal({ family: f.name }, f.dropped);
    return (
      this.families()
        .map((f) => f.render())
        .join("\n") + "\n"
    );
  }
}
