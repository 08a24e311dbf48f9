import { encodeMetrics } from "../otlp/codec.js";
import { Temporality, type Attrs, type OtlpMetric } from "../otlp/model.js";
import { registry as defaultRegistry } from "./catalog.js";
import { Counter, Gauge, Histogram, type MetricRegistry } from "./registry.js";

export interface MetricsPushOptions {
  /** OTLP base URL (the platform); `/v1/metrics` is appended. */
  endpoint: string;
  /** Resource attributes of this process (`hexr.spiffe_id`, `hexr.tenant`, ...). */
  resource: Attrs;
  /** e.g. `async () => ({ authorization: "Bearer " + jwtSvid })`. */
  headers?: () => Promise<Record<string, string>> | Record<string, string>;
  intervalMs?: number;
  timeoutMs?: number;
  registry?: MetricRegistry;
  /** Only families whose name matches are pushed; default: the sidecar families (mTLS, A2A tasks/messages). */
  include?: (familyName: string) => boolean;
  /** Called (rate-limited by the caller) when a push fails. */
  onError?: (err: Error) => void;
}

export interface MetricsPush {
  /** Pushes now; resolves true on success. Never rejects. */
  push(): Promise<boolean>;
  readonly stats: { pushed: number; failed: number };
  stop(): Promise<void>;
}

const SIDECAR_FAMILIES = /^hexr_(mtls|a2a_tasks|a2a_messages)_/;

/** The registry as OTLP metrics, cumulative since `startNs`. */
export function registryToOtlp(
  reg: MetricRegistry,
  include: (name: string) => boolean,
  startNs: bigint,
  nowNs: bigint,
): OtlpMetric[] {
  const out: OtlpMetric[] = [];
  for (const f of reg.families()) {
    if (!include(f.name) || f.size === 0) continue;
    const base = { name: f.name, unit: "", description: f.help };
    if (f instanceof Histogram) {
      out.push({
        kind: "histogram",
        ...base,
        temporality: Temporality.CUMULATIVE,
        points: f.entries().map((e) => ({
          attributes: e.labels,
          startNs,
          timeNs: nowNs,
          count: e.value.count,
          sum: e.value.sum,
          bucketCounts: [...e.value.counts],
          bounds: [...f.buckets],
        })),
      });
    } else if (f instanceof Counter || f instanceof Gauge) {
      const points = f.entries().map((e) => ({ attributes: e.labels, startNs, timeNs: nowNs, value: e.value }));
      out.push(
        f instanceof Counter
          ? { kind: "sum", ...base, temporality: Temporality.CUMULATIVE, monotonic: true, points }
          : { kind: "gauge", ...base, points },
      );
    }
  }
  return out;
}

/**
 * Pushes this process's metrics (the mesh proxy's and A2A sidecar's, recorded through `metrics`) to
 * the platform over OTLP, for processes the platform does not scrape (`hexr run`). Cumulative, so a
 * lost push loses nothing; the timer is unref'd and a failure is reported, never thrown.
 */
export function startMetricsPush(opts: MetricsPushOptions): MetricsPush {
  const reg = opts.registry ?? defaultRegistry;
  const include = opts.include ?? ((n: string) => SIDECAR_FAMILIES.test(n));
  const url = opts.endpoint.replace(/\/+$/, "") + "/v1/metrics";
  const startNs = BigInt(Date.now()) * 1_000_000n;
  const stats = { pushed: 0, failed: 0 };
  let inFlight: Promise<boolean> | undefined;

  const once = async (): Promise<boolean> => {
    try {
      const metrics = registryToOtlp(reg, include, startNs, BigInt(Date.now()) * 1_000_000n);
      if (metrics.length === 0) return true;
      const body = encodeMetrics([
        { resource: opts.resource, scopeMetrics: [{ scope: { name: "hexr-sidecar", version: undefined }, metrics }] },
      ]);
      const headers = { ...(opts.headers ? await opts.headers() : {}), "content-type": "application/x-protobuf" };
      const res = await fetch(url, { method: "POST", headers, body, signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000) });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`HTTP ${res.status} from ${new URL(url).origin}`);
      stats.pushed++;
      return true;
    } catch (err) {
      stats.failed++;
      opts.onError?.(err instanceof Error ? err : new Error(String(err)));
      return false;
    }
  };
  const push = () => (inFlight ??= once().finally(() => (inFlight = undefined)));
  const timer = setInterval(() => void push(), opts.intervalMs ?? 15_000);
  timer.unref();
  return {
    push,
    stats,
    async stop() {
      clearInterval(timer);
      await push();
    },
  };
}
