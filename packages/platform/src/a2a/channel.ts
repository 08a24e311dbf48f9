import { endsInteraction, type StreamEvent } from "./model.js";

/** True for the event after which a stream closes: a terminal or interrupted status, or a Message. */
export function isFinalEvent(e: StreamEvent): boolean {
  return e.kind === "message" || (e.kind === "status" && (e.final || endsInteraction(e.event.status.state)));
}

/** A stream of events read in batches: all that is available at once (fewer, larger writes). */
export interface EventStream {
  /** Waits for at least one event (or the end); `done` is true when these were the last. */
  nextBatch(): Promise<{ events: StreamEvent[]; done: boolean }>;
  /** The reader went away. */
  close(): void;
}

/**
 * One subscriber's ordered view of a task's events. Events are buffered until read (a slow reader
 * never blocks the task or other subscribers); the iterator ends after a final event, or when the
 * subscriber closes it.
 */
export class Subscription implements AsyncIterableIterator<StreamEvent>, EventStream {
  private readonly buffer: StreamEvent[] = [];
  private wake: (() => void) | undefined;
  private ended = false;

  constructor(private readonly detach: (s: Subscription) => void) {}

  /** Called by the channel, in publish order. */
  push(e: StreamEvent): void {
    if (this.ended) return;
    this.buffer.push(e);
    if (isFinalEvent(e)) this.finish();
    this.signal();
  }

  /** Ends the subscription after the buffered events have been read. */
  finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.detach(this);
    this.signal();
  }

  private signal(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async nextBatch(): Promise<{ events: StreamEvent[]; done: boolean }> {
    while (this.buffer.length === 0 && !this.ended) await new Promise<void>((r) => (this.wake = r));
    return { events: this.buffer.splice(0), done: this.ended };
  }

  close(): void {
    this.buffer.length = 0;
    this.finish();
  }

  async next(): Promise<IteratorResult<StreamEvent>> {
    for (;;) {
      const e = this.buffer.shift();
      if (e) return { value: e, done: false };
      if (this.ended) return { value: undefined, done: true };
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** The reader went away: drop what is buffered and detach. */
  async return(): Promise<IteratorResult<StreamEvent>> {
    this.close();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** Fan-out of one task's events to every subscriber, each in the same order; closing one affects no other. */
export class TaskChannel {
  private readonly subs = new Set<Subscription>();

  constructor(private readonly onEmpty: () => void) {}

  get size(): number {
    return this.subs.size;
  }

  subscribe(first?: StreamEvent): Subscription {
    const s = new Subscription((sub) => {
      this.subs.delete(sub);
      if (this.subs.size === 0) this.onEmpty();
    });
    this.subs.add(s);
    if (first) s.push(first);
    return s;
  }

  publish(e: StreamEvent): void {
    for (const s of [...this.subs]) s.push(e);
  }

  /** Ends every subscription (server shutdown). */
  closeAll(): void {
    for (const s of [...this.subs]) s.finish();
  }
}

/** A stream of one event that then ends. */
export function singleEvent(e: StreamEvent): EventStream {
  let sent = false;
  return {
    async nextBatch() {
      if (sent) return { events: [], done: true };
      sent = true;
      return { events: [e], done: true };
    },
    close() {
      sent = true;
    },
  };
}
