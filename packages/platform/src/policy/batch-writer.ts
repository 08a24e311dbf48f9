import { randomBytes } from "node:crypto";
import type { Logger } from "pino";

const ID_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz";

/** 19 chars of [0-9a-z], time first: text order is time order in every collation we use. */
export function timeOrderedId(at: number, seq: number): string {
  let rand = "";
  for (const b of randomBytes(6)) rand += ID_CHARS[b % 36];
  return at.toString(36).padStart(9, "0") + (seq % 1_679_616).toString(36).padStart(4, "0") + rand;
}

export interface BatchWriterOptions<T> {
  name: string;
  /** Persists one batch; may throw (the batch is retried, then dropped). */
  write: (items: T[]) => Promise<void>;
  log: Logger;
  /** Most items written at once. */
  maxBatch?: number;
  /** How long an item may wait before it is written. */
  delayMs?: number;
  /** Items kept in memory at most; beyond, new items are dropped (and counted) rather than slowing requests. */
  maxQueue?: number;
  maxAttempts?: number;
}

/**
 * Off-the-hot-path persistence for logs (decision log, vault audit): `push` is O(1) and never
 * throws; a timer writes batches; `flush` writes everything queued so far (queries call it first).
 */
export class BatchWriter<T> {
  private queue: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private failures = 0;
  private closed = false;
  readonly stats = { written: 0, dropped: 0, failedBatches: 0 };

  constructor(private readonly opts: BatchWriterOptions<T>) {}

  push(item: T): void {
    if (this.closed) return;
    if (this.queue.length >= (this.opts.maxQueue ?? 50_000)) {
      this.stats.dropped++;
      if (this.stats.dropped === 1 || this.stats.dropped % 1000 === 0) {
        this.opts.log.warn({ writer: this.opts.name, dropped: this.stats.dropped }, "log queue full: dropping entries");
      }
      return;
    }
    this.queue.push(item);
    if (this.queue.length >= (this.opts.maxBatch ?? 500)) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.opts.delayMs ?? 200);
      this.timer.unref();
    }
  }

  /** Writes everything queued before this call; never rejects. */
  flush(): Promise<void> {
    this.writing = this.writing.then(() => this.drain());
    return this.writing;
  }

  /** Flushes and stops accepting entries. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (let i = 0; i < (this.opts.maxAttempts ?? 3) && this.queue.length > 0; i++) await this.flush();
    this.closed = true;
  }

  private async drain(): Promise<void> {
    const max = this.opts.maxBatch ?? 500;
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, max);
      try {
        await this.opts.write(batch);
        this.queue.splice(0, batch.length);
        this.stats.written += batch.length;
        this.failures = 0;
      } catch (err) {
        this.failures++;
        this.stats.failedBatches++;
        if (this.failures >= (this.opts.maxAttempts ?? 3)) {
          this.queue.splice(0, batch.length);
          this.stats.dropped += batch.length;
          this.failures = 0;
          this.opts.log.error(
            { err, writer: this.opts.name, dropped: batch.length },
            "log batch dropped after repeated write failures",
          );
        } else {
          this.opts.log.warn({ err, writer: this.opts.name }, "log batch write failed; will retry");
          if (!this.timer && !this.closed) {
            this.timer = setTimeout(() => {
              this.timer = undefined;
              void this.flush();
            }, this.opts.delayMs ?? 200);
            this.timer.unref();
          }
          return;
        }
      }
    }
  }
}
