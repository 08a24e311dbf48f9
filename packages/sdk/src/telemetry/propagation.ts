import { context, ROOT_CONTEXT, trace, type Context, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

/** Header names of W3C Trace Context. Baggage is deliberately not propagated: it would carry data across tenants' agents. */
export const TRACEPARENT = "traceparent";
export const TRACESTATE = "tracestate";

/** Anything that holds HTTP headers: a fetch `Headers`, node's `IncomingHttpHeaders`, or a plain record. */
export type HeaderCarrier = Headers | Record<string, string | string[] | undefined>;

const propagator = new W3CTraceContextPropagator();

const getter: TextMapGetter<HeaderCarrier> = {
  keys(carrier) {
    return carrier instanceof Headers ? [...carrier.keys()] : Object.keys(carrier);
  },
  get(carrier, key) {
    if (carrier instanceof Headers) return carrier.get(key) ?? undefined;
    const direct = carrier[key];
    if (direct !== undefined) return direct;
    // Plain records written by hand may not be lower-case.
    const found = Object.keys(carrier).find((k) => k.toLowerCase() === key);
    return found === undefined ? undefined : carrier[found];
  },
};

const setter: TextMapSetter<HeaderCarrier> = {
  set(carrier, key, value) {
    if (carrier instanceof Headers) carrier.set(key, value);
    else carrier[key] = value;
  },
};

/**
 * Writes `traceparent` (and `tracestate`) for the current span into `headers` and returns them, so
 * an outgoing A2A or platform call continues the caller's trace. With no active span it adds nothing.
 */
export function injectTraceHeaders<C extends HeaderCarrier = Record<string, string>>(
  headers: C = {} as C,
  ctx: Context = context.active(),
): C {
  try {
    propagator.inject(ctx, headers, setter);
  } catch {
    // a frozen or exotic carrier: the call goes out untraced rather than failing
  }
  return headers;
}

/**
 * Reads W3C Trace Context from incoming headers. Malformed or missing headers give a context
 * without a remote parent (a new trace starts), never an error.
 */
export function extractTraceContext(headers: HeaderCarrier | undefined, base: Context = ROOT_CONTEXT): Context {
  if (!headers) return base;
  try {
    return propagator.extract(base, headers, getter);
  } catch {
    return base;
  }
}

/** Runs `fn` with the trace context of incoming `headers` as the active context. */
export function withTraceContext<T>(headers: HeaderCarrier | undefined, fn: () => T): T {
  return context.with(extractTraceContext(headers), fn);
}

/** The active trace id (32 hex), or undefined outside a span. */
export function currentTraceId(ctx: Context = context.active()): string | undefined {
  const sc = trace.getSpanContext(ctx);
  return sc && trace.isSpanContextValid(sc) ? sc.traceId : undefined;
}
