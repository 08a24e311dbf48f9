import type { Attributes, AttributeValue } from "@opentelemetry/api";

/** Longest string kept in an attribute; longer values are cut (a span is not a log of payloads). */
export const MAX_ATTRIBUTE_LENGTH = 4096;
export const REDACTED = "[REDACTED]";

// Keys whose values are credentials by name. Bare "token" is not here: gen_ai.usage.*_tokens are counts.
const SECRET_KEY =
  /(authorization|password|passwd|secret|api[_-]?key|apikey|cookie|private[_-]?key|access[_-]?key|(access|refresh|id|auth|session|bearer|mesh)[_-]?token|jwt|credential|signature)/i;

// Values that look like credentials whatever their key: bearer headers, JWTs/JWT-SVIDs, PEM keys, provider keys.
const SECRET_VALUE = [
  /^\s*(bearer|basic)\s+\S+/i,
  /^eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*$/,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
  /^(sk|rk|pk)-[A-Za-z0-9_-]{16,}$/,
  /^sk-ant-[A-Za-z0-9_-]{16,}$/,
  /^hexr_[a-z0-9]+_[A-Za-z0-9_-]{20,}$/,
  /^(AKIA|ASIA)[A-Z0-9]{16}$/,
];

export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

export function looksLikeSecret(value: string): boolean {
  if (value.length < 16) return false;
  return SECRET_VALUE.some((re) => re.test(value));
}

function clamp(s: string): string {
  return s.length > MAX_ATTRIBUTE_LENGTH ? s.slice(0, MAX_ATTRIBUTE_LENGTH - 1) + "…" : s;
}

/** One attribute value as OpenTelemetry accepts it, or undefined to drop it. Never throws. */
export function toAttributeValue(key: string, value: unknown): AttributeValue | undefined {
  if (isSecretKey(key)) return value === undefined || value === null ? undefined : REDACTED;
  switch (typeof value) {
    case "string":
      return looksLikeSecret(value) ? REDACTED : clamp(value);
    case "number":
      return Number.isFinite(value) ? value : String(value);
    case "boolean":
      return value;
    case "bigint":
      return value.toString();
    case "object": {
      if (value === null) return undefined;
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value.toISOString();
      if (Array.isArray(value)) return toHomogeneousArray(value);
      return undefined;
    }
    default:
      return undefined;
  }
}

function toHomogeneousArray(values: unknown[]): AttributeValue | undefined {
  const strings = values.every((v) => typeof v === "string");
  if (strings) return (values as string[]).slice(0, 128).map((v) => (looksLikeSecret(v) ? REDACTED : clamp(v)));
  if (values.every((v) => typeof v === "number" && Number.isFinite(v))) return (values as number[]).slice(0, 128);
  if (values.every((v) => typeof v === "boolean")) return (values as boolean[]).slice(0, 128);
  return undefined;
}

/** Cleans caller-supplied attributes: drops what OpenTelemetry cannot hold, clamps long strings, redacts secrets. */
export function sanitizeAttributes(input: Record<string, unknown> | undefined): Attributes {
  const out: Attributes = {};
  if (!input) return out;
  let entries: [string, unknown][];
  try {
    entries = Object.entries(input);
  } catch {
    return out; // a hostile proxy or getter: record nothing rather than throw into the caller
  }
  for (const [k, v] of entries) {
    if (!k) continue;
    const value = toAttributeValue(k, v);
    if (value !== undefined) out[k] = value;
  }
  return out;
}
