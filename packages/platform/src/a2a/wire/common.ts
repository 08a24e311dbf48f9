import { z, type ZodError } from "zod";
import { invalidParams, type A2AError } from "../errors.js";

export const JsonObject = z.record(z.string(), z.unknown());

/** ProtoJSON writes unset strings as "" (or omits them): both mean "not given". */
export const optionalId = z
  .string()
  .max(256)
  .optional()
  .transform((v) => (v === "" ? undefined : v));

export const requiredId = z.string().min(1, "is required").max(256);

export const historyLength = z.number().int().min(0).max(100_000).optional();

/** Base64 or base64url, as ProtoJSON accepts for `bytes`. */
export const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** `message.parts[0].text: Invalid input` — one field violation per zod issue. */
export function toInvalidParams(err: ZodError, prefix = ""): A2AError {
  const violations = err.issues.map((i) => ({
    field: prefix + formatPath(i.path as PropertyKey[]),
    description: i.message,
  }));
  const summary = violations.map((v) => (v.field ? `${v.field}: ${v.description}` : v.description)).join("; ");
  return invalidParams(summary, violations);
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

/** Parses `value` with `schema` or throws -32602 with the violations. */
export function parseParams<T>(schema: z.ZodType<T>, value: unknown, prefix = ""): T {
  const r = schema.safeParse(value);
  if (!r.success) throw toInvalidParams(r.error, prefix);
  return r.data;
}

/** RFC 3339 UTC with milliseconds, as A2A timestamps are written. */
export function isoNow(clock: () => number): string {
  return new Date(clock()).toISOString();
}
