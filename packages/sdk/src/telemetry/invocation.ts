import { context, SpanKind, SpanStatusCode, trace, type Context, type Span } from "@opentelemetry/api";
import { sanitizeAttributes } from "./attributes.js";
import { extractTraceContext, injectTraceHeaders, type HeaderCarrier } from "./propagation.js";
import { ATTR, SPAN } from "./semconv.js";
import { hexrTracer, recordError } from "./span.js";

export interface AgentInvocation {
  /** Incoming headers (the bridge's request): a W3C traceparent there makes this span the caller's child. */
  headers?: HeaderCarrier;
  framework?: string;
  /** The caller's SPIFFE ID as verified by the mesh. */
  caller?: string;
  taskId?: string;
}

function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return typeof v === "object" && v !== null && typeof (v as Record<symbol, unknown>)[Symbol.asyncIterator] === "function";
}
function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (
    (typeof v === "object" || typeof v === "function") && v !== null && typeof (v as PromiseLike<unknown>).then === "function"
  );
}

function finish(span: Span, err?: unknown): void {
  try {
    if (err !== undefined) recordError(span, err);
    else span.setStatus({ code: SpanStatusCode.OK });
    span.end();
  } catch {
    // telemetry never breaks the invocation
  }
}

/** Steps through `source` inside `ctx` (so the handler's own spans nest under the invocation) and ends `span` with it. */
async function* traced(source: AsyncIterable<unknown>, span: Span, ctx: Context): AsyncGenerator<unknown> {
  const it = context.with(ctx, () => source[Symbol.asyncIterator]());
  let failed = false;
  try {
    for (;;) {
      const r = await context.with(ctx, () => it.next());
      if (r.done) return r.value;
      yield r.value;
    }
  } catch (err) {
    failed = true;
    finish(span, err);
    throw err;
  } finally {
    if (!failed) finish(span);
    // an abandoned iteration (caller stopped reading) still closes the handler's generator
    await it.return?.().catch(() => undefined);
  }
}

/**
 * Runs one agent invocation inside a `hexr.agent.invoke` server span that continues the caller's
 * trace from `headers`. Works for handlers returning a value, a promise, or an async iterable of
 * updates (then the span lasts until the iteration ends). What `hexrAgent`'s host wraps each call in.
 */
export function traceAgentInvocation<T>(inv: AgentInvocation, fn: () => T): T {
  let span: Span;
  let ctx: Context;
  try {
    const parent = inv.headers ? extractTraceContext(inv.headers, context.active()) : context.active();
    span = hexrTracer().startSpan(
      SPAN.AGENT_INVOKE,
      {
        kind: SpanKind.SERVER,
        attributes: sanitizeAttributes({
          [ATTR.FRAMEWORK]: inv.framework,
          [ATTR.CALLER]: inv.caller,
          [ATTR.TASK_ID]: inv.taskId,
        }),
      },
      parent,
    );
    ctx = trace.setSpan(parent, span);
  } catch {
    return fn();
  }
  let out: T;
  try {
    out = context.with(ctx, fn);
  } catch (err) {
    finish(span, err);
    throw err;
  }
  if (isAsyncIterable(out) && !isThenable(out)) return traced(out, span, ctx) as T;
  if (isThenable(out)) {
    return Promise.resolve(out).then(
      (v) => {
        if (isAsyncIterable(v)) return traced(v, span, ctx);
        finish(span);
        return v;
      },
      (err: unknown) => {
        finish(span, err);
        throw err;
      },
    ) as T;
  }
  finish(span);
  return out;
}

/** The A2A task state of a result, when it looks like an A2A Task or a send result wrapping one. */
function taskStateOf(result: unknown): string | undefined {
  const r = result as { status?: { state?: unknown }; task?: { status?: { state?: unknown } } } | null;
  const state = r?.status?.state ?? r?.task?.status?.state;
  return typeof state === "string"
    ? state
        .replace(/^TASK_STATE_/, "")
        .toLowerCase()
        .replace(/_/g, "-")
    : undefined;
}

/**
 * Runs one call to another agent inside a `hexr.a2a.send` client span: `fn` gets the W3C trace
 * headers to send along (so the callee's spans join this trace), and the span records the target
 * and the resulting task state (from `stateOf`, else an A2A Task's `status.state`, else
 * `completed`; `failed` when `fn` throws).
 */
export async function traceA2aSend<T>(
  target: string,
  fn: (traceHeaders: Record<string, string>) => Promise<T>,
  stateOf: (result: T) => string | undefined = taskStateOf,
): Promise<T> {
  let span: Span;
  let ctx: Context;
  try {
    span = hexrTracer().startSpan(
      SPAN.A2A_SEND,
      { kind: SpanKind.CLIENT, attributes: sanitizeAttributes({ [ATTR.A2A_TARGET]: target }) },
      context.active(),
    );
    ctx = trace.setSpan(context.active(), span);
  } catch {
    return fn({});
  }
  const headers = injectTraceHeaders({}, ctx);
  try {
    const result = await context.with(ctx, () => fn(headers));
    try {
      span.setAttribute(ATTR.A2A_TASK_STATE, stateOf(result) ?? "completed");
    } catch {
      // ignore
    }
    finish(span);
    return result;
  } catch (err) {
    try {
      span.setAttribute(ATTR.A2A_TASK_STATE, "failed");
    } catch {
      // ignore
    }
    finish(span, err);
    throw err;
  }
}
