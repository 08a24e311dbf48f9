/** The OTLP data Hexr works with once decoded from protobuf or JSON (ids in hex, times in ns as bigint). */

export type AttrValue = string | number | boolean | null | AttrValue[] | { [key: string]: AttrValue };
export type Attrs = Record<string, AttrValue>;

export const enum StatusCode {
  UNSET = 0,
  OK = 1,
  ERROR = 2,
}

export interface OtlpEvent {
  timeNs: bigint;
  name: string;
  attributes: Attrs;
}

export interface OtlpLink {
  traceId: string;
  spanId: string;
  attributes: Attrs;
}

export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  traceState: string | undefined;
  name: string;
  /** OTLP SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Attrs;
  events: OtlpEvent[];
  links: OtlpLink[];
  status: { code: StatusCode; message: string | undefined };
}

export interface OtlpScope {
  name: string;
  version: string | undefined;
}

export interface OtlpScopeSpans {
  scope: OtlpScope | undefined;
  spans: OtlpSpan[];
}

export interface OtlpResourceSpans {
  resource: Attrs;
  scopeSpans: OtlpScopeSpans[];
}

export interface TracesRequest {
  resourceSpans: OtlpResourceSpans[];
  /** Spans that could not be decoded (bad ids, times), already counted out. */
  rejected: number;
  rejectReason: string | undefined;
}

export const enum Temporality {
  UNSPECIFIED = 0,
  DELTA = 1,
  CUMULATIVE = 2,
}

export interface NumberPoint {
  attributes: Attrs;
  startNs: bigint;
  timeNs: bigint;
  value: number;
}

export interface HistogramPoint {
  attributes: Attrs;
  startNs: bigint;
  timeNs: bigint;
  count: number;
  sum: number | undefined;
  /** Per-bucket (not cumulative) counts; one more than `bounds`. */
  bucketCounts: number[];
  bounds: number[];
}

export type OtlpMetric =
  | { kind: "gauge"; name: string; unit: string; description: string; points: NumberPoint[] }
  | {
      kind: "sum";
      name: string;
      unit: string;
      description: string;
      temporality: Temporality;
      monotonic: boolean;
      points: NumberPoint[];
    }
  | { kind: "histogram"; name: string; unit: string; description: string; temporality: Temporality; points: HistogramPoint[] }
  | { kind: "unsupported"; name: string; type: string; pointCount: number };

export interface OtlpResourceMetrics {
  resource: Attrs;
  scopeMetrics: Array<{ scope: OtlpScope | undefined; metrics: OtlpMetric[] }>;
}

export interface MetricsRequest {
  resourceMetrics: OtlpResourceMetrics[];
  rejected: number;
  rejectReason: string | undefined;
}

export function attrString(attrs: Attrs, key: string): string | undefined {
  const v = attrs[key];
  return typeof v === "string" && v.length > 0 ? v : undefined;
}
