import { HexrError } from "@hexr/core";
import type protobuf from "protobufjs";
import {
  StatusCode,
  Temporality,
  type AttrValue,
  type Attrs,
  type HistogramPoint,
  type MetricsRequest,
  type NumberPoint,
  type OtlpMetric,
  type OtlpResourceMetrics,
  type OtlpResourceSpans,
  type OtlpScope,
  type OtlpSpan,
  type TracesRequest,
} from "./model.js";
import { otlp, TO_OBJECT } from "./proto.js";

export type OtlpFormat = "protobuf" | "json";

/** Limits that keep one request from holding the platform: deep values, huge strings, attribute floods. */
const MAX_DEPTH = 8;
const MAX_STRING = 8192;
const MAX_ATTRIBUTES = 256;
const MAX_EVENTS = 256;
const MAX_LINKS = 64;
const MAX_BUCKETS = 512;

type Raw = Record<string, unknown>;

function malformed(message: string): HexrError {
  return new HexrError("telemetry.malformed_request", message, { kind: "invalid_argument" });
}

class BadItem extends Error {}

const isObj = (v: unknown): v is Raw => typeof v === "object" && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const clamp = (s: string) => (s.length > MAX_STRING ? s.slice(0, MAX_STRING) : s);

/** An OTLP id: raw bytes (protobuf) or hex (OTLP/JSON); empty → undefined; all-zero or wrong size is invalid. */
function id(v: unknown, bytes: number, what: string, optional: boolean): string | undefined {
  let hex: string | undefined;
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) hex = v.length === 0 ? "" : Buffer.from(v).toString("hex");
  else if (typeof v === "string") hex = v.toLowerCase();
  else if (v === undefined || v === null) hex = "";
  if (hex === undefined) throw new BadItem(`${what} must be bytes or a hex string`);
  if (hex === "") {
    if (optional) return undefined;
    throw new BadItem(`${what} is missing`);
  }
  if (hex.length !== bytes * 2 || !/^[0-9a-f]+$/.test(hex)) throw new BadItem(`${what} must be ${bytes} bytes`);
  if (/^0+$/.test(hex)) {
    if (optional) return undefined;
    throw new BadItem(`${what} must not be all zeros`);
  }
  return hex;
}

function nanos(v: unknown, what: string): bigint {
  if (v === undefined || v === null || v === "") return 0n;
  try {
    if (typeof v === "number" && Number.isFinite(v) && v >= 0) return BigInt(Math.trunc(v));
    if (typeof v === "string" && /^\d{1,20}$/.test(v)) return BigInt(v);
    if (typeof v === "object" && v !== null && "low" in v && "high" in v) {
      const l = v as { low: number; high: number };
      return (BigInt(l.high >>> 0) << 32n) | BigInt(l.low >>> 0);
    }
  } catch {
    // fall through
  }
  throw new BadItem(`${what} must be an unsigned integer of nanoseconds`);
}

function num(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v === "string" && v.trim() !== "") {
    if (v === "NaN" || v === "Infinity" || v === "-Infinity") return Number(v);
    const n = Number(v);
    return Number.isNaN(n) ? undefined : n;
  }
  return undefined;
}

function anyValue(v: unknown, depth: number): AttrValue {
  if (!isObj(v) || depth > MAX_DEPTH) return null;
  if ("stringValue" in v) return clamp(String(v["stringValue"] ?? ""));
  if ("boolValue" in v) return v["boolValue"] === true;
  if ("intValue" in v) {
    const n = num(v["intValue"]);
    if (n === undefined) return null;
    return Number.isSafeInteger(n) ? n : String(v["intValue"]);
  }
  if ("doubleValue" in v) return num(v["doubleValue"]) ?? null;
  if ("arrayValue" in v) {
    const values = isObj(v["arrayValue"]) ? arr(v["arrayValue"]["values"]) : [];
    return values.slice(0, MAX_ATTRIBUTES).map((x) => anyValue(x, depth + 1));
  }
  if ("kvlistValue" in v) return keyValues(isObj(v["kvlistValue"]) ? v["kvlistValue"]["values"] : [], depth + 1);
  if ("bytesValue" in v) {
    const b = v["bytesValue"];
    return Buffer.isBuffer(b) ? b.toString("base64") : typeof b === "string" ? clamp(b) : null;
  }
  return null;
}

function keyValues(list: unknown, depth = 0): Attrs {
  const out: Attrs = {};
  let n = 0;
  for (const kv of arr(list)) {
    if (!isObj(kv)) continue;
    const key = str(kv["key"]);
    if (!key || n >= MAX_ATTRIBUTES) continue;
    out[clamp(key)] = anyValue(kv["value"], depth);
    n++;
  }
  return out;
}

function scope(v: unknown): OtlpScope | undefined {
  if (!isObj(v)) return undefined;
  return { name: clamp(str(v["name"]) ?? ""), version: str(v["version"]) || undefined };
}

const KIND_NAMES: Record<string, number> = {
  SPAN_KIND_UNSPECIFIED: 0,
  SPAN_KIND_INTERNAL: 1,
  SPAN_KIND_SERVER: 2,
  SPAN_KIND_CLIENT: 3,
  SPAN_KIND_PRODUCER: 4,
  SPAN_KIND_CONSUMER: 5,
};
const STATUS_NAMES: Record<string, StatusCode> = {
  STATUS_CODE_UNSET: StatusCode.UNSET,
  STATUS_CODE_OK: StatusCode.OK,
  STATUS_CODE_ERROR: StatusCode.ERROR,
};

function enumValue(v: unknown, names: Record<string, number>, max: number): number {
  const n = typeof v === "string" ? (names[v] ?? Number(v)) : typeof v === "number" ? v : 0;
  return Number.isInteger(n) && n >= 0 && n <= max ? n : 0;
}

function span(v: unknown): OtlpSpan {
  if (!isObj(v)) throw new BadItem("a span must be an object");
  const startNs = nanos(v["startTimeUnixNano"], "startTimeUnixNano");
  let endNs = nanos(v["endTimeUnixNano"], "endTimeUnixNano");
  if (startNs === 0n) throw new BadItem("startTimeUnixNano is missing");
  if (endNs < startNs) endNs = startNs;
  const status = isObj(v["status"]) ? v["status"] : {};
  return {
    traceId: id(v["traceId"], 16, "traceId", false)!,
    spanId: id(v["spanId"], 8, "spanId", false)!,
    parentSpanId: id(v["parentSpanId"], 8, "parentSpanId", true),
    traceState: str(v["traceState"]) || undefined,
    name: clamp(str(v["name"]) ?? ""),
    kind: enumValue(v["kind"], KIND_NAMES, 5),
    startNs,
    endNs,
    attributes: keyValues(v["attributes"]),
    events: arr(v["events"])
      .slice(0, MAX_EVENTS)
      .filter(isObj)
      .map((e) => ({
        timeNs: nanos(e["timeUnixNano"], "event time"),
        name: clamp(str(e["name"]) ?? ""),
        attributes: keyValues(e["attributes"]),
      })),
    links: arr(v["links"])
      .slice(0, MAX_LINKS)
      .filter(isObj)
      .flatMap((l) => {
        try {
          return [
            {
              traceId: id(l["traceId"], 16, "link traceId", false)!,
              spanId: id(l["spanId"], 8, "link spanId", false)!,
              attributes: keyValues(l["attributes"]),
            },
          ];
        } catch {
          return [];
        }
      }),
    status: {
      code: enumValue(status["code"], STATUS_NAMES, 2) as StatusCode,
      message: str(status["message"]) ? clamp(str(status["message"])!) : undefined,
    },
  };
}

function parseEnvelope(body: Buffer, format: OtlpFormat, type: protobuf.Type): Raw {
  if (format === "json") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch (err) {
      throw malformed(`the body is not valid JSON: ${(err as Error).message}`);
    }
    if (!isObj(parsed)) throw malformed(`an OTLP/JSON ${type.name} must be an object`);
    return parsed;
  }
  try {
    return type.toObject(type.decode(body), TO_OBJECT) as Raw;
  } catch (err) {
    throw malformed(`the body is not a valid protobuf ${type.name}: ${(err as Error).message}`);
  }
}

/** Decodes an ExportTraceServiceRequest; spans that are individually invalid are counted as rejected, not fatal. */
export function decodeTraces(body: Buffer, format: OtlpFormat): TracesRequest {
  const env = parseEnvelope(body, format, otlp.ExportTraceServiceRequest);
  if (env["resourceSpans"] !== undefined && !Array.isArray(env["resourceSpans"]))
    throw malformed("resourceSpans must be an array");
  let rejected = 0;
  let rejectReason: string | undefined;
  const resourceSpans: OtlpResourceSpans[] = [];
  for (const rs of arr(env["resourceSpans"])) {
    if (!isObj(rs)) throw malformed("each resourceSpans entry must be an object");
    const resource = isObj(rs["resource"]) ? keyValues(rs["resource"]["attributes"]) : {};
    const scopeSpans = arr(rs["scopeSpans"])
      .filter(isObj)
      .map((ss) => {
        const spans: OtlpSpan[] = [];
        for (const s of arr(ss["spans"])) {
          try {
            spans.push(span(s));
          } catch (err) {
            if (!(err instanceof BadItem)) throw err;
            rejected++;
            rejectReason ??= `span rejected: ${err.message}`;
          }
        }
        return { scope: scope(ss["scope"]), spans };
      });
    resourceSpans.push({ resource, scopeSpans });
  }
  return { resourceSpans, rejected, rejectReason };
}

function numberPoint(p: Raw): NumberPoint {
  const value = "asDouble" in p ? num(p["asDouble"]) : "asInt" in p ? num(p["asInt"]) : 0;
  if (value === undefined || Number.isNaN(value)) throw new BadItem("a data point value must be a number");
  return {
    attributes: keyValues(p["attributes"]),
    startNs: nanos(p["startTimeUnixNano"], "startTimeUnixNano"),
    timeNs: nanos(p["timeUnixNano"], "timeUnixNano"),
    value,
  };
}

function histogramPoint(p: Raw): HistogramPoint {
  const bounds = arr(p["explicitBounds"]).map(num);
  const bucketCounts = arr(p["bucketCounts"]).map(num);
  if (bounds.some((b) => b === undefined || !Number.isFinite(b)) || bucketCounts.some((c) => c === undefined || c < 0)) {
    throw new BadItem("histogram bounds and counts must be numbers");
  }
  if (bucketCounts.length > MAX_BUCKETS) throw new BadItem("too many histogram buckets");
  if (bucketCounts.length !== 0 && bucketCounts.length !== bounds.length + 1)
    throw new BadItem("a histogram needs one more bucket count than bounds");
  for (let i = 1; i < bounds.length; i++) if (bounds[i]! <= bounds[i - 1]!) throw new BadItem("histogram bounds must increase");
  const count = num(p["count"]) ?? 0;
  return {
    attributes: keyValues(p["attributes"]),
    startNs: nanos(p["startTimeUnixNano"], "startTimeUnixNano"),
    timeNs: nanos(p["timeUnixNano"], "timeUnixNano"),
    count,
    sum: num(p["sum"]),
    bucketCounts: bucketCounts as number[],
    bounds: bounds as number[],
  };
}

function points<T>(list: unknown, parse: (p: Raw) => T, onBad: (msg: string) => void): T[] {
  const out: T[] = [];
  for (const p of arr(list)) {
    try {
      if (!isObj(p)) throw new BadItem("a data point must be an object");
      out.push(parse(p));
    } catch (err) {
      if (!(err instanceof BadItem)) throw err;
      onBad(err.message);
    }
  }
  return out;
}

const TEMPORALITY: Record<string, number> = {
  AGGREGATION_TEMPORALITY_UNSPECIFIED: 0,
  AGGREGATION_TEMPORALITY_DELTA: 1,
  AGGREGATION_TEMPORALITY_CUMULATIVE: 2,
};

function metric(m: Raw, onBad: (msg: string) => void): OtlpMetric | undefined {
  const name = str(m["name"]);
  if (!name) {
    onBad("a metric has no name");
    return undefined;
  }
  const base = { name: clamp(name), unit: str(m["unit"]) ?? "", description: str(m["description"]) ?? "" };
  if (isObj(m["gauge"])) return { kind: "gauge", ...base, points: points(m["gauge"]["dataPoints"], numberPoint, onBad) };
  if (isObj(m["sum"])) {
    const s = m["sum"];
    return {
      kind: "sum",
      ...base,
      temporality: enumValue(s["aggregationTemporality"], TEMPORALITY, 2) as Temporality,
      monotonic: s["isMonotonic"] === true,
      points: points(s["dataPoints"], numberPoint, onBad),
    };
  }
  if (isObj(m["histogram"])) {
    const h = m["histogram"];
    return {
      kind: "histogram",
      ...base,
      temporality: enumValue(h["aggregationTemporality"], TEMPORALITY, 2) as Temporality,
      points: points(h["dataPoints"], histogramPoint, onBad),
    };
  }
  for (const type of ["exponentialHistogram", "summary"]) {
    if (isObj(m[type])) return { kind: "unsupported", name: base.name, type, pointCount: arr(m[type]["dataPoints"]).length };
  }
  onBad(`metric ${base.name} has no data`);
  return undefined;
}

/** Decodes an ExportMetricsServiceRequest; bad data points are counted as rejected. */
export function decodeMetrics(body: Buffer, format: OtlpFormat): MetricsRequest {
  const env = parseEnvelope(body, format, otlp.ExportMetricsServiceRequest);
  if (env["resourceMetrics"] !== undefined && !Array.isArray(env["resourceMetrics"]))
    throw malformed("resourceMetrics must be an array");
  let rejected = 0;
  let rejectReason: string | undefined;
  const onBad = (msg: string) => {
    rejected++;
    rejectReason ??= msg;
  };
  const resourceMetrics: OtlpResourceMetrics[] = [];
  for (const rm of arr(env["resourceMetrics"])) {
    if (!isObj(rm)) throw malformed("each resourceMetrics entry must be an object");
    resourceMetrics.push({
      resource: isObj(rm["resource"]) ? keyValues(rm["resource"]["attributes"]) : {},
      scopeMetrics: arr(rm["scopeMetrics"])
        .filter(isObj)
        .map((sm) => ({
          scope: scope(sm["scope"]),
          metrics: arr(sm["metrics"])
            .filter(isObj)
            .map((m) => metric(m, onBad))
            .filter((m): m is OtlpMetric => m !== undefined),
        })),
    });
  }
  return { resourceMetrics, rejected, rejectReason };
}

// ---- encoding (forwarding, pushing) ----

function toAnyValue(v: AttrValue): Raw {
  if (v === null) return {};
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (typeof v === "number") return Number.isInteger(v) ? { intValue: v } : { doubleValue: v };
  if (Array.isArray(v)) return { arrayValue: { values: v.map(toAnyValue) } };
  return { kvlistValue: { values: toKeyValues(v) } };
}

export function toKeyValues(attrs: Attrs): Raw[] {
  return Object.entries(attrs).map(([key, value]) => ({ key, value: toAnyValue(value) }));
}

const hex = (s: string | undefined) => (s ? Buffer.from(s, "hex") : Buffer.alloc(0));

/** Encodes spans as an OTLP protobuf ExportTraceServiceRequest. */
export function encodeTraces(resourceSpans: OtlpResourceSpans[]): Buffer {
  const obj = {
    resourceSpans: resourceSpans.map((rs) => ({
      resource: { attributes: toKeyValues(rs.resource) },
      scopeSpans: rs.scopeSpans.map((ss) => ({
        ...(ss.scope ? { scope: { name: ss.scope.name, version: ss.scope.version ?? "" } } : {}),
        spans: ss.spans.map((s) => ({
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: hex(s.parentSpanId),
          traceState: s.traceState ?? "",
          name: s.name,
          kind: s.kind,
          startTimeUnixNano: s.startNs.toString(),
          endTimeUnixNano: s.endNs.toString(),
          attributes: toKeyValues(s.attributes),
          events: s.events.map((e) => ({
            timeUnixNano: e.timeNs.toString(),
            name: e.name,
            attributes: toKeyValues(e.attributes),
          })),
          links: s.links.map((l) => ({ traceId: hex(l.traceId), spanId: hex(l.spanId), attributes: toKeyValues(l.attributes) })),
          status: { code: s.status.code, message: s.status.message ?? "" },
        })),
      })),
    })),
  };
  const t = otlp.ExportTraceServiceRequest;
  return Buffer.from(t.encode(t.fromObject(obj)).finish());
}

/** Encodes metrics as an OTLP protobuf ExportMetricsServiceRequest. */
export function encodeMetrics(resourceMetrics: OtlpResourceMetrics[]): Buffer {
  const pointTimes = (p: { startNs: bigint; timeNs: bigint }) => ({
    startTimeUnixNano: p.startNs.toString(),
    timeUnixNano: p.timeNs.toString(),
  });
  const numberPoints = (ps: NumberPoint[]) =>
    ps.map((p) => ({ attributes: toKeyValues(p.attributes), ...pointTimes(p), asDouble: p.value }));
  const obj = {
    resourceMetrics: resourceMetrics.map((rm) => ({
      resource: { attributes: toKeyValues(rm.resource) },
      scopeMetrics: rm.scopeMetrics.map((sm) => ({
        ...(sm.scope ? { scope: { name: sm.scope.name, version: sm.scope.version ?? "" } } : {}),
        metrics: sm.metrics.flatMap((m): Raw[] => {
          if (m.kind === "unsupported") return [];
          const base = { name: m.name, unit: m.unit, description: m.description };
          if (m.kind === "gauge") return [{ ...base, gauge: { dataPoints: numberPoints(m.points) } }];
          if (m.kind === "sum") {
            return [
              {
                ...base,
                sum: { dataPoints: numberPoints(m.points), aggregationTemporality: m.temporality, isMonotonic: m.monotonic },
              },
            ];
          }
          return [
            {
              ...base,
              histogram: {
                aggregationTemporality: m.temporality,
                dataPoints: m.points.map((p) => ({
                  attributes: toKeyValues(p.attributes),
                  ...pointTimes(p),
                  count: String(p.count),
                  ...(p.sum !== undefined ? { sum: p.sum } : {}),
                  bucketCounts: p.bucketCounts.map(String),
                  explicitBounds: p.bounds,
                })),
              },
            },
          ];
        }),
      })),
    })),
  };
  const t = otlp.ExportMetricsServiceRequest;
  return Buffer.from(t.encode(t.fromObject(obj)).finish());
}

/** The success body: an Export*ServiceResponse, with partial success when some items were rejected. */
export function exportResponse(
  signal: "traces" | "metrics",
  format: OtlpFormat,
  rejected: number,
  message: string | undefined,
): Buffer {
  const partial =
    rejected > 0
      ? signal === "traces"
        ? { partialSuccess: { rejectedSpans: String(rejected), errorMessage: message ?? "" } }
        : { partialSuccess: { rejectedDataPoints: String(rejected), errorMessage: message ?? "" } }
      : {};
  if (format === "json") {
    return Buffer.from(JSON.stringify(partial));
  }
  const t = signal === "traces" ? otlp.ExportTraceServiceResponse : otlp.ExportMetricsServiceResponse;
  return Buffer.from(t.encode(t.fromObject(partial)).finish());
}
