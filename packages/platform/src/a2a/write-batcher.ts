import type { Queryable, Storage } from "../storage/types.js";

type Op = (tx: Queryable) => Promise<unknown>;

interface Pending {
  op: Op;
  key: string | undefined;
  waiters: Array<{ resolve: (v: unknown) => void; reject: (e: unknown) => void }>;
}

export interface WriteBatcherOptions {
  storage: Storage;
  /** Most operations committed in one transaction. */
  maxBatch?: number;
  /** Transactions in flight at once (PostgreSQL overlaps round trips and fsyncs; SQLite has one writer). */
  maxConcurrent?: number;
}

/**
 * Group commit: writes queued during one turn of the event loop are committed in one transaction,
 * and each caller's promise resolves only after that commit — so a reply is never sent for data
 * that is not durable, yet N concurrent requests cost one commit instead of N. Writes with the same
 * key coalesce (only the latest state of a task is written), and a key is never in two
 * transactions at once, so writes to it commit in the order they were queued.
 *
 * Operations must not fail for expected reasons (use `ON CONFLICT DO NOTHING`, conditional
 * updates): in PostgreSQL one failed statement aborts the whole transaction. If a batch fails
 * anyway, every operation is retried alone, so one bad write cannot fail its neighbours.
 */
export class WriteBatcher {
  private readonly storage: Storage;
  private readonly maxBatch: number;
  private readonly maxConcurrent: number;
  private queue: Pending[] = [];
  /** Queued (not yet taken) operations by key: later writes replace them. */
  private readonly keyed = new Map<string, Pending>();
  /** Keys of operations in transactions now. */
  private readonly inFlight = new Set<string>();
  private active = 0;
  private scheduled = false;
  private scheduledUrgent = false;
  private idleWaiters: Array<() => void> = [];

  constructor({ storage, maxBatch = 512, maxConcurrent = storage.dialect === "postgres" ? 4 : 1 }: WriteBatcherOptions) {
    this.storage = storage;
    this.maxBatch = maxBatch;
    this.maxConcurrent = maxConcurrent;
  }

  /**
   * Queues `op`; resolves with its result once committed. A later op with the same `key` replaces
   * a queued one. `urgent` commits without waiting for the next turn of the event loop.
   */
  run<T>(op: (tx: Queryable) => Promise<T>, key?: string, urgent = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiter = { resolve: resolve as (v: unknown) => void, reject };
      if (key !== undefined) {
        const queued = this.keyed.get(key);
        if (queued) {
          queued.op = op;
          queued.waiters.push(waiter);
          if (urgent) this.schedule(true);
          return;
        }
      }
      const p: Pending = { op, key, waiters: [waiter] };
      this.queue.push(p);
      if (key !== undefined) this.keyed.set(key, p);
      this.schedule(urgent);
    });
  }

  /** Resolves when everything queued before the call is committed (read-your-writes for queries). */
  drain(): Promise<void> {
    if (this.queue.length === 0 && this.active === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private schedule(urgent = false): void {
    if (this.active >= this.maxConcurrent || (this.scheduled && (!urgent || this.scheduledUrgent))) return;
    this.scheduled = true;
    if (urgent) this.scheduledUrgent = true;
    // Ordinary writes wait until the event loop has read every socket (setImmediate), so that
    // requests arriving together commit together. Urgent ones (a task's outcome, which its
    // callers wait for) commit once the current promise chains have run (nextTick), gathering
    // the outcomes those chains produced, without waiting for another turn of the loop.
    if (urgent) process.nextTick(() => this.launch());
    else setImmediate(() => this.launch());
  }

  /** Starts as many transactions as allowed with what is queued. */
  private launch(): void {
    if (!this.scheduled) return;
    this.scheduled = false;
    this.scheduledUrgent = false;
    while (this.active < this.maxConcurrent) {
      const batch = this.take();
      if (batch.length === 0) break;
      this.active++;
      void this.commit(batch).finally(() => {
        this.active--;
        for (const p of batch) if (p.key !== undefined) this.inFlight.delete(p.key);
        if (this.queue.length > 0) this.schedule();
        else if (this.active === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
    }
  }

  /** Removes the next batch from the queue: in order, skipping keys that are in a transaction now. */
  private take(): Pending[] {
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    for (const p of this.queue) {
      if (batch.length < this.maxBatch && (p.key === undefined || !this.inFlight.has(p.key))) {
        batch.push(p);
        if (p.key !== undefined) {
          this.inFlight.add(p.key);
          // No longer open to coalescing: later writes to the key wait for this one.
          this.keyed.delete(p.key);
        }
      } else rest.push(p);
    }
    this.queue = rest;
    return batch;
  }

  private async commit(batch: Pending[]): Promise<void> {
    const results = new Array<unknown>(batch.length);
    try {
      await this.storage.transaction(async (tx) => {
        for (let i = 0; i < batch.length; i++) results[i] = await batch[i]!.op(tx);
      });
    } catch {
      // Isolate the failure: each op alone, in its own transaction.
      for (const p of batch) {
        try {
          const r = await this.storage.transaction((tx) => p.op(tx));
          for (const w of p.waiters) w.resolve(r);
        } catch (err) {
          for (const w of p.waiters) w.reject(err);
        }
      }
      return;
    }
    for (let i = 0; i < batch.length; i++) for (const w of batch[i]!.waiters) w.resolve(results[i]);
  }
}
