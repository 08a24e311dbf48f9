import type { Context } from "@opentelemetry/api";
import { ExportResultCode, type ExportResult } from "@opentelemetry/core";
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { isSecretKey, looksLikeSecret, REDACTED } from "./attributes.js";

/**
 * Runs a processor so that nothing it does can throw into `span.end()`: the OpenTelemetry SDK calls
 * processors synchronously from the application's code path.
 */
export class GuardedSpanProcessor implements SpanProcessor {
  constructor(
    private readonly inner: SpanProcessor,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  onStart(span: Span, parentContext: Context): void {
    try {
      this.inner.onStart(span, parentContext);
    } catch (err) {
      this.onError(err);
    }
  }

  onEnding(span: Span): void {
    try {
      this.inner.onEnding?.(span);
    } catch (err) {
      this.onError(err);
    }
  }

  onEnd(span: ReadableSpan): void {
    try {
      this.inner.onEnd(span);
    } catch (err) {
      this.onError(err);
    }
  }

  forceFlush(): Promise<void> {
    return safe(() => this.inner.forceFlush(), this.onError);
  }

  shutdown(): Promise<void> {
    return safe(() => this.inner.shutdown(), this.onError);
  }
}

function safe(fn: () => Promise<void>, onError: (err: unknown) => void): Promise<void> {
  try {
    return fn().catch(onError);
  } catch (err) {
    onError(err);
    return Promise.resolve();
  }
}

/**
 * Last line of defence for "no secrets in traces": whoever created the span (our helpers, another
 * module using the raw API, a library), credential-looking attributes are replaced before export.
 */
export class RedactingSpanProcessor implements SpanProcessor {
  onStart(): void {}

  onEnding(span: Span): void {
    for (const [k, v] of Object.entries(span.attributes)) {
      if (v === undefined || v === REDACTED) continue;
      if (isSecretKey(k) || (typeof v === "string" && looksLikeSecret(v))) span.setAttribute(k, REDACTED);
      else if (Array.isArray(v) && v.some((x) => typeof x === "string" && looksLikeSecret(x))) {
        span.setAttribute(
          k,
          (v as string[]).map((x) => (looksLikeSecret(x) ? REDACTED : x)),
        );
      }
    }
    for (const event of span.events) {
      const attrs = event.attributes as Record<string, unknown> | undefined;
      if (!attrs) continue;
      for (const [k, v] of Object.entries(attrs)) {
        if (isSecretKey(k) || (typeof v === "string" && looksLikeSecret(v))) attrs[k] = REDACTED;
        else if (typeof v === "string") attrs[k] = scrubText(v);
      }
    }
  }

  onEnd(): void {}
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

// Error messages sometimes quote a header or a key; keep the message, lose the credential.
const INLINE_SECRET =
  /(bearer\s+)[A-Za-z0-9._~+/=-]{12,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+|\b(sk|rk)-[A-Za-z0-9_-]{16,}|\bhexr_[a-z0-9]+_[A-Za-z0-9_-]{20,}/gi;

export function scrubText(text: string): string {
  return text.replace(INLINE_SECRET, (m, bearer: string | undefined) => (bearer ? `${bearer}${REDACTED}` : REDACTED));
}

export interface ExportStats {
  exported: number;
  failed: number;
  lastError: string | undefined;
}

/**
 * Wraps an exporter: counts what was sent and what failed, warns (rate-limited, without the URL's
 * credentials) when the collector is unreachable, and turns a synchronous throw into a failed result.
 */
export class ReportingSpanExporter implements SpanExporter {
  readonly stats: ExportStats = { exported: 0, failed: 0, lastError: undefined };
  private lastWarn = 0;

  constructor(
    private readonly inner: SpanExporter,
    private readonly opts: { target: string; warn?: (msg: string) => void; warnEveryMs?: number; clock?: () => number } = {
      target: "collector",
    },
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    const finish = (result: ExportResult) => {
      if (result.code === ExportResultCode.SUCCESS) this.stats.exported += spans.length;
      else this.fail(spans.length, result.error);
      done(result);
    };
    try {
      this.inner.export(spans, finish);
    } catch (err) {
      finish({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }

  private fail(count: number, error: Error | undefined): void {
    this.stats.failed += count;
    this.stats.lastError = error ? scrubText(error.message) : "export failed";
    const now = (this.opts.clock ?? Date.now)();
    if (this.opts.warn && now - this.lastWarn >= (this.opts.warnEveryMs ?? 60_000)) {
      this.lastWarn = now;
      this.opts.warn(`hexr telemetry: could not export ${count} span(s) to ${this.opts.target}: ${this.stats.lastError}`);
    }
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.().catch(() => undefined) ?? Promise.resolve();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown().catch(() => undefined);
  }
}
