/**
 * RFC 8785 JSON Canonicalization Scheme, and the Agent Card payload preparation of A2A §8.4.1:
 * default values (empty strings, empty arrays and objects, null) are removed before
 * canonicalization, and `signatures` is excluded.
 */

/** RFC 8785: object members sorted by UTF-16 code units, ES number and string serialization, no whitespace. */
export function canonicalize(value: unknown): string {
  if (value === null || typeof value === "boolean") return String(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError("JCS: numbers must be finite");
    return JSON.stringify(value);
  }
  if (typeof value === "string") {
    // Lone surrogates cannot be represented in I-JSON (RFC 8785 §3.2.2.2).
    if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(value)) {
      throw new TypeError("JCS: strings must not contain lone surrogates");
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalize).join(",")}]`;
  if (typeof value === "object") {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalize(obj[k])}`).join(",")}}`;
  }
  throw new TypeError(`JCS: cannot canonicalize a ${typeof value}`);
}

/** Removes default values recursively: "", null, undefined, [] and {} (after their own cleaning). */
export function withoutDefaults(value: unknown): unknown {
  if (value === "" || value === null || value === undefined) return undefined;
  if (Array.isArray(value)) {
    const out = value.map(withoutDefaults).filter((v) => v !== undefined);
    return out.length ? out : undefined;
  }
  if (typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const c = withoutDefaults(v);
      if (c !== undefined) out[k] = c;
    }
    return Object.keys(out).length ? out : undefined;
  }
  return value;
}

/** The bytes an Agent Card signature covers. */
export function cardSigningPayload(card: Record<string, unknown>): string {
  const { signatures: _s, ...rest } = card;
  return canonicalize(withoutDefaults(rest) ?? {});
}
