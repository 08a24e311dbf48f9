import type { Logger } from "pino";
import { forwarded } from "./metrics/catalog.js";

export type Signal = "traces" | "metrics";

export interface ForwarderOptions {
  /** Base URL of the external OTLP/HTTP receiver; `/v1/traces` and `/v1/metrics` are appended. */
  url: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
  /** Batches waiting beyond this are dropped (oldest first): a dead collector must not grow the heap. */
  maxQueue?: number;
  log: Logger;
}

/**
 * Sends a copy of accepted telemetry to an external OTLP endpoint (Jaeger, a collector), off the
 * request path: one batch at a time from a bounded queue, one retry on a network error or 5xx, then
 * dropped and counted. Ingestion never waits for it.
 */
export class Forwarder {
  private readonly queue: Array<{ signal: Signal; body: Buffer }> = [];
  private running: Promise<void> | undefined;
  private stopped = false;
  private lastWarn = 0;
  readonly base: string;

  constructor(private readonly opts: ForwarderOptions) {
    this.base = opts.url.replace(/\/+$/, "");
  }

  enqueue(signal: Signal, body: Buffer): void {
    if (this.stopped) return;
    if (this.queue.length >= (this.opts.maxQueue ?? 256)) {
      this.queue.shift();
      forwarded.inc({ signal, result: "dropped" });
    }
    this.queue.push({ signal, body });
    this.running ??= this.drain().finally(() => (this.running = undefined));
  }

  private async drain(): Promise<void> {
    for (let item = this.queue.shift(); item; item = this.queue.shift()) {
      let outcome = await this.send(item.signal, item.body);
      if (outcome === "retry" && !this.stopped) outcome = await this.send(item.signal, item.body);
      forwarded.inc({ signal: item.signal, result: outcome === "ok" ? "ok" : "failed" });
    }
  }

  private async send(signal: Signal, body: Buffer): Promise<"ok" | "retry" | "failed"> {
    try {
      const res = await fetch(`${this.base}/v1/${signal}`, {
        method: "POST",
        headers: { ...this.opts.headers, "content-type": "application/x-protobuf" },
        body,
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) return "ok";
      this.warn(`HTTP ${res.status}`);
      // a 4xx will not get better by retrying
      return res.status >= 500 || res.status === 429 ? "retry" : "failed";
    } catch (err) {
      this.warn((err as Error & { cause?: Error }).cause?.message ?? (err as Error).message);
      return "retry";
    }
  }

  private warn(why: string): void {
    const now = Date.now();
    if (now - this.lastWarn < 60_000) return;
    this.lastWarn = now;
    // The origin only: the URL or headers may carry credentials.
    this.opts.log.warn({ target: new URL(this.base).origin, why }, "telemetry: forwarding to the external OTLP endpoint failed");
  }

  /** Waits up to `ms` for queued batches, then drops the rest. */
  async stop(ms = 5000): Promise<void> {
    const pending = this.running;
    if (pending) await Promise.race([pending, new Promise((r) => setTimeout(r, ms).unref())]);
    this.stopped = true;
    this.queue.length = 0;
  }
}
