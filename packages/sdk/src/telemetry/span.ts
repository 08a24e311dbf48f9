import {
  context,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type Tracer,
} from "@opentelemetry/api";
import { sanitizeAttributes } from "./attributes.js";
import { scrubText } from "./processors.js";
import { ATTR } from "./semconv.js";

export { SpanKind, SpanStatusCode, type Span };

/** The tracer name of Hexr's instrumentation. */
export const TRACER_NAME = "hexr";

export interface WithSpanOptions {
  /** Cleaned before use: unsupported values dropped, long strings cut, secrets redacted. */
  attributes?: Record<string, unknown>;
  kind?: SpanKind;
  /** Parent context; the active context by default (use `extractTraceContext(headers)` on a server). */
  parent?: Context;
  links?: Link[];
  tracer?: Tracer;
}

export function hexrTracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}

/** Marks a span as failed with the error's type and a scrubbed message; never throws. */
export function recordError(span: Span, err: unknown): void {
  try {
    const e = err instanceof Error ? err : new Error(typeof err === "string" ? err : "non-Error thrown");
    const code = (err as { code?: unknown } | null)?.code;
    // SDK error classes often keep name "Error"; their class name says more (RateLimitError)
    const type = e.name && e.name !== "Error" ? e.name : e.constructor?.name || "Error";
    span.setAttribute(ATTR.ERROR_TYPE, typeof code === "string" && code ? code : type);
    span.recordException({ name: e.name, message: scrubText(e.message) });
    span.setStatus({ code: SpanStatusCode.ERROR, message: scrubText(e.message).slice(0, 512) });
  } catch {
    // telemetry never breaks the caller
  }
}

function markOk(span: Span): void {
  try {
    // Keep a status the callee chose (e.g. an error it handled); otherwise the operation succeeded.
    const status = (span as unknown as { status?: { code?: SpanStatusCode } }).status;
    if (!status || status.code === SpanStatusCode.UNSET) span.setStatus({ code: SpanStatusCode.OK });
  } catch {
    // ignore
  }
}

function safeEnd(span: Span): void {
  try {
    span.end();
  } catch {
    // ignore
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (
    (typeof v === "object" || typeof v === "function") && v !== null && typeof (v as PromiseLike<unknown>).then === "function"
  );
}

/**
 * Runs `fn` inside a new active span and ends it when `fn` returns or its promise settles: OK on
 * success, ERROR with the exception recorded on a throw or rejection (which is re-thrown unchanged).
 * Telemetry failures never reach `fn`'s caller: if a span cannot be started, `fn` runs without one.
 *
 * ```ts
 * const out = await withSpan(SPAN.TOOL_INVOKE, { attributes: { [ATTR.TOOL_SERVICE]: "aws_s3" } }, async (span) => ...);
 * ```
 */
export function withSpan<T>(name: string, fn: (span: Span) => T): T;
export function withSpan<T>(name: string, opts: WithSpanOptions, fn: (span: Span) => T): T;
export function withSpan<T>(name: string, a: WithSpanOptions | ((span: Span) => T), b?: (span: Span) => T): T {
  const opts: WithSpanOptions = typeof a === "function" ? {} : a;
  const fn = (typeof a === "function" ? a : b) as (span: Span) => T;
  let span: Span;
  let ctx: Context;
  try {
    const tracer = opts.tracer ?? hexrTracer();
    const attributes: Attributes = sanitizeAttributes(opts.attributes);
    const parent = opts.parent ?? context.active();
    span = tracer.startSpan(
      name,
      { kind: opts.kind ?? SpanKind.INTERNAL, attributes, ...(opts.links ? { links: opts.links } : {}) },
      parent,
    );
    ctx = trace.setSpan(parent, span);
  } catch {
    return fn(trace.wrapSpanContext(trace.getSpanContext(context.active()) ?? INVALID));
  }
  let result: T;
  try {
    result = context.with(ctx, fn, undefined, span);
  } catch (err) {
    recordError(span, err);
    safeEnd(span);
    throw err;
  }
  if (isThenable(result)) {
    return Promise.resolve(result).then(
      (v) => {
        markOk(span);
        safeEnd(span);
        return v;
      },
      (err: unknown) => {
        recordError(span, err);
        safeEnd(span);
        throw err;
      },
    ) as T;
  }
  markOk(span);
  safeEnd(span);
  return result;
}

const INVALID = { traceId: "00000000000000000000000000000000", spanId: "0000000000000000", traceFlags: 0 };

/** Sets attributes on the active span (cleaned like `withSpan`'s); a no-op outside a span. */
export function setSpanAttributes(attrs: Record<string, unknown>, span: Span | undefined = trace.getActiveSpan()): void {
  if (!span) return;
  try {
    span.setAttributes(sanitizeAttributes(attrs));
  } catch {
    // ignore
  }
}
