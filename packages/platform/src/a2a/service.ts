import { isHexrError } from "@hexr/core";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { singleEvent, TaskChannel, type EventStream, type Subscription } from "./channel.js";
import { invalidParams, taskNotCancelable, taskNotFound, unsupportedOperation } from "./errors.js";
import {
  agentMessage,
  isAsyncGenerator,
  normalizeResult,
  normalizeUpdate,
  outcomeState,
  type A2AHandler,
  type A2AHandlerContext,
  type Outcome,
  type Update,
} from "./handler.js";
import {
  endsInteraction,
  INTERRUPTED_STATES,
  isTerminal,
  withHistoryLength,
  type Artifact,
  type ListTasksQuery,
  type ListTasksResult,
  type Message,
  type Part,
  type SendRequest,
  type StreamEvent,
  type Task,
  type TaskState,
  type TaskStatus,
} from "./model.js";
import { TaskStore, type TaskRecord } from "./store.js";

/** Who is calling, as established by the HTTP layer (mesh mTLS, the platform ingress, or a token). */
export interface Caller {
  /** The owner key of the tasks this caller creates: a SPIFFE ID, or `apikey:<id>` through the ingress. */
  id: string;
  /** Set when the caller proved a SPIFFE identity. */
  spiffeId: string | null;
  /** Sees every task of the agent (operators through the ingress with an admin key). */
  admin: boolean;
}

export type ProtocolVersion = "0.3" | "1.0";

export interface CallContext {
  caller: Caller;
  version: ProtocolVersion;
  /** W3C trace context of the request (`traceparent`, `tracestate`), passed on to the handler. */
  trace?: Record<string, string> | undefined;
}

export interface A2AServiceOptions {
  store: TaskStore;
  handler: A2AHandler;
  /** Advertised as `capabilities.streaming`; when false the streaming methods answer -32004. */
  streaming?: boolean;
  /** How long a blocking send waits for a duplicate task that another replica is running. */
  crossReplicaWaitMs?: number;
  /** Told of every state a task of this server enters (metrics); must not throw. */
  onTaskState?: (state: TaskState) => void;
  log?: Logger;
  clock?: () => number;
}

/** A task being worked on by this process. `rec.task` is the authoritative, latest state. */
interface TaskRun {
  rec: TaskRecord;
  /** Created when the handler first reads its signal (most never do). */
  abort?: AbortController;
  /** The user message that started this run (a retry of it joins the run). */
  trigger: string;
  /** Set once the run reached its outcome (or was canceled); later handler output is ignored. */
  finished: boolean;
  settled: Promise<void>;
  settle: () => void;
  /** The artifact that streamed text chunks go to. */
  textArtifactId?: string;
}

/** A shallow copy safe to serialize later: the live task's arrays grow, their elements never change. */
function snapshot(t: Task): Task {
  const s: Task = { id: t.id, contextId: t.contextId, status: t.status };
  if (t.artifacts) s.artifacts = t.artifacts.slice();
  if (t.history) s.history = t.history.slice();
  if (t.metadata) s.metadata = t.metadata;
  return s;
}

const visible = (rec: TaskRecord, caller: Caller) => caller.admin || rec.owner === caller.id;

function mergeArtifact(list: Artifact[] | undefined, a: Artifact, append: boolean): Artifact[] {
  const out = list ? list.slice() : [];
  const i = out.findIndex((x) => x.artifactId === a.artifactId);
  if (i === -1) out.push(a);
  else if (!append) out[i] = a;
  else {
    const prev = out[i]!;
    const parts: Part[] = prev.parts.slice();
    for (const p of a.parts) {
      const last = parts[parts.length - 1];
      // Streamed text is stored as one growing part rather than thousands of chunks.
      if (p.text !== undefined && last?.text !== undefined && !p.metadata && !last.metadata && p.mediaType === last.mediaType) {
        parts[parts.length - 1] = { ...last, text: last.text + p.text };
      } else parts.push(p);
    }
    out[i] = { ...prev, parts };
  }
  return out;
}

/** What a failing handler's caller is told: HexrError messages are written for callers; others are not. */
function failureText(err: unknown): string {
  if (isHexrError(err) && err.kind !== "internal") return `The agent failed: ${err.message}`;
  return "The agent failed while handling this message; its log has the details.";
}

/**
 * The A2A operations, protocol-version neutral: tasks are created idempotently (per caller and
 * messageId), run through the handler, streamed to every subscriber in order, and persisted
 * (each reply only after its state is durable).
 */
export class A2AService {
  readonly streaming: boolean;
  private readonly store: TaskStore;
  private readonly handler: A2AHandler;
  private readonly log: Logger | undefined;
  private readonly clock: () => number;
  private readonly crossReplicaWaitMs: number;
  private readonly onTaskState: ((state: TaskState) => void) | undefined;
  private readonly runs = new Map<string, TaskRun>();
  private readonly channels = new Map<string, TaskChannel>();
  /** In-process dedupe of concurrent creations: owner + messageId → task id. */
  private readonly creating = new Map<string, Promise<string>>();
  private closed = false;

  constructor({
    store,
    handler,
    streaming = true,
    crossReplicaWaitMs = 60_000,
    onTaskState,
    log,
    clock = Date.now,
  }: A2AServiceOptions) {
    this.store = store;
    this.onTaskState = onTaskState;
    this.crossReplicaWaitMs = crossReplicaWaitMs;
    this.handler = handler;
    this.streaming = streaming;
    this.log = log;
    this.clock = clock;
  }

  private now(): string {
    return new Date(this.clock()).toISOString();
  }

  // ---- crash recovery ----

  /**
   * Called before serving: tasks this runner left submitted or working when its process died are
   * marked failed with a reason (their handler is gone; a retry needs a new messageId).
   */
  async recover(): Promise<string[]> {
    const ids = await this.store.failInFlight((task) => ({
      state: "TASK_STATE_FAILED",
      message: agentMessage(
        "The agent's A2A server restarted while this task was in flight (crash or kill); the work was lost. Send the message again with a new messageId to retry.",
        { taskId: task.id, contextId: task.contextId },
      ),
      timestamp: this.now(),
    }));
    if (ids.length) this.log?.warn({ tasks: ids.length }, "a2a: marked tasks left in flight by the previous process as failed");
    return ids;
  }

  // ---- send / stream ----

  async send(req: SendRequest, ctx: CallContext): Promise<{ task: Task } | { message: Message }> {
    const h = req.configuration.historyLength;
    const run = req.message.taskId ? await this.resume(req, ctx) : await this.admit(req, ctx);
    if ("done" in run) return run.done;
    if (!req.configuration.returnImmediately) await run.settled;
    return this.resultOf(run.rec, h);
  }

  /** Starts (or joins) a task and returns its event stream: a Task first, then updates, closed at the end. */
  async stream(req: SendRequest, ctx: CallContext): Promise<EventStream> {
    if (!this.streaming) throw unsupportedOperation("this agent does not stream (capabilities.streaming is false)");
    const h = req.configuration.historyLength;
    let sub: Subscription | undefined;
    // A run this call starts gets its subscriber before the handler can produce anything.
    const onStart = (r: TaskRun) => (sub = this.subscribeTo(r, h));
    const run = req.message.taskId ? await this.resume(req, ctx, onStart) : await this.admit(req, ctx, onStart);
    if ("done" in run)
      return singleEvent(
        "task" in run.done ? { kind: "task", task: run.done.task } : { kind: "message", message: run.done.message },
      );
    return sub ?? this.subscribeTo(run, h);
  }

  private resultOf(rec: TaskRecord, historyLength: number | undefined): { task: Task } | { message: Message } {
    if (rec.kind === "message" && rec.reply) return { message: rec.reply };
    return { task: withHistoryLength(snapshot(rec.task), historyLength) };
  }

  /**
   * Creates the task for a new message, or finds the one this caller already created for the
   * same messageId. Returns the local run, or the stored result when the task is not running here.
   */
  private async admit(
    req: SendRequest,
    ctx: CallContext,
    onStart?: (run: TaskRun) => void,
  ): Promise<TaskRun | { done: { task: Task } | { message: Message } }> {
    if (this.closed) throw unsupportedOperation("the agent is shutting down");
    const caller = ctx.caller;
    const m = req.message;
    const key = `${caller.id}\n${m.messageId}`;
    const pending = this.creating.get(key);
    let id: string;
    if (pending) id = await pending;
    else {
      let resolveId!: (id: string) => void;
      let rejectId!: (err: unknown) => void;
      const mine = new Promise<string>((res, rej) => ((resolveId = res), (rejectId = rej)));
      mine.catch(() => undefined);
      this.creating.set(key, mine);
      try {
        const taskId = randomUUID();
        const contextId = m.contextId ?? randomUUID();
        const msg: Message = { ...m, taskId, contextId };
        const task: Task = {
          id: taskId,
          contextId,
          status: { state: "TASK_STATE_SUBMITTED", timestamp: this.now() },
          history: [msg],
        };
        if (req.metadata) task.metadata = req.metadata;
        const rec: TaskRecord = { task, owner: caller.id, messageId: m.messageId, kind: "task", runner: this.store.runner };
        const r = await this.store.create(rec);
        if (r.created) {
          // Registered before duplicates waiting on `mine` resume and look for it.
          const run = this.startRun(rec, msg, ctx, onStart);
          resolveId(taskId);
          return run;
        }
        id = r.id;
        resolveId(id);
      } catch (err) {
        rejectId(err);
        throw err;
      } finally {
        this.creating.delete(key);
      }
    }
    const run = this.runs.get(id);
    if (run) return run;
    // The task exists already, and no run here owns it: finished, or running in another replica.
    const rec = await this.waitStored(id, req.configuration.returnImmediately);
    return { done: this.resultOf(rec, req.configuration.historyLength) };
  }

  /**
   * Loads a task that another process may still be working on; for a blocking send, polls until
   * it reaches a terminal or interrupted state (or `crossReplicaWaitMs` passes).
   */
  private async waitStored(id: string, returnImmediately: boolean): Promise<TaskRecord> {
    let rec = await this.store.get(id);
    if (!rec) throw taskNotFound(id);
    const deadline = this.clock() + this.crossReplicaWaitMs;
    let delay = 10;
    while (!returnImmediately && !endsInteraction(rec.task.status.state) && this.clock() < deadline && !this.closed) {
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 250);
      const local = this.runs.get(id);
      if (local) {
        await local.settled;
        return local.rec;
      }
      rec = (await this.store.get(id)) ?? rec;
    }
    return rec;
  }

  /** A follow-up message for an existing task (multi-turn: the task asked for input). */
  private async resume(
    req: SendRequest,
    ctx: CallContext,
    onStart?: (run: TaskRun) => void,
  ): Promise<TaskRun | { done: { task: Task } | { message: Message } }> {
    if (this.closed) throw unsupportedOperation("the agent is shutting down");
    const m = req.message;
    const id = m.taskId!;
    const busy = (run: TaskRun) => {
      if (!visible(run.rec, ctx.caller)) throw taskNotFound(id);
      if (run.trigger === m.messageId) return run;
      throw unsupportedOperation(`task ${id} is still working; wait for it (GetTask / SubscribeToTask) or cancel it`);
    };
    const active = this.runs.get(id);
    if (active) return busy(active);
    const rec = await this.store.get(id);
    if (!rec || rec.kind !== "task" || !visible(rec, ctx.caller)) throw taskNotFound(id);
    const again = this.runs.get(id);
    if (again) return busy(again);
    const task = rec.task;
    if (m.contextId !== undefined && m.contextId !== task.contextId) {
      throw invalidParams(`message.contextId '${m.contextId}' does not match task ${id}'s contextId '${task.contextId}'`, [
        { field: "message.contextId", description: "does not match the task's contextId" },
      ]);
    }
    if (task.history?.some((h) => h.role === "ROLE_USER" && h.messageId === m.messageId)) {
      return { done: this.resultOf(rec, req.configuration.historyLength) };
    }
    if (isTerminal(task.status.state)) {
      throw unsupportedOperation(`task ${id} is ${task.status.state} and accepts no more messages; start a new task`);
    }
    if (!INTERRUPTED_STATES.has(task.status.state)) {
      throw unsupportedOperation(`task ${id} is still working; wait for it (GetTask / SubscribeToTask) or cancel it`);
    }
    const msg: Message = { ...m, taskId: id, contextId: task.contextId };
    task.history = [...(task.history ?? []), msg];
    return this.startRun(rec, msg, ctx, onStart);
  }

  private startRun(rec: TaskRecord, message: Message, ctx: CallContext, onStart?: (run: TaskRun) => void): TaskRun {
    let settle!: () => void;
    const settled = new Promise<void>((r) => (settle = r));
    const run: TaskRun = { rec, trigger: message.messageId, finished: false, settled, settle };
    this.runs.set(rec.task.id, run);
    rec.task.status = { state: "TASK_STATE_WORKING", timestamp: this.now() };
    this.onTaskState?.("TASK_STATE_WORKING");
    onStart?.(run);
    queueMicrotask(() => void this.execute(run, message, ctx));
    return run;
  }

  private async execute(run: TaskRun, message: Message, call: CallContext): Promise<void> {
    const task = run.rec.task;
    const caller = call.caller;
    this.persist(run);
    const ctx: A2AHandlerContext = {
      ...(call.trace ? { trace: call.trace } : {}),
      callerSpiffeId: caller.spiffeId,
      caller: caller.id,
      taskId: task.id,
      contextId: task.contextId,
      get signal() {
        return (run.abort ??= new AbortController()).signal;
      },
      history: task.history ?? [message],
    };
    let outcome: Outcome;
    try {
      const r = this.handler(message, ctx);
      if (isAsyncGenerator(r)) {
        let step = await r.next();
        while (!step.done) {
          if (run.finished) {
            await r.return(undefined).catch(() => undefined);
            return;
          }
          this.applyUpdate(run, normalizeUpdate(step.value));
          step = await r.next();
        }
        outcome = normalizeResult(step.value);
      } else {
        outcome = normalizeResult(await r);
      }
    } catch (err) {
      if (run.finished) return;
      this.log?.warn({ err, taskId: task.id }, "a2a: the agent's handler failed");
      outcome = { type: "failed", message: agentMessage(failureText(err)), artifacts: [] };
    }
    if (run.finished) return;
    await this.finish(run, outcome);
  }

  private persist(run: TaskRun): void {
    this.store
      .save(run.rec)
      .catch((err: unknown) => this.log?.error({ err, taskId: run.rec.task.id }, "a2a: saving task failed"));
  }

  private publish(id: string, e: StreamEvent): void {
    this.channels.get(id)?.publish(e);
  }

  private applyUpdate(run: TaskRun, u: Update): void {
    const task = run.rec.task;
    if (u.type === "status") {
      const status: TaskStatus = { state: u.state, timestamp: this.now() };
      if (u.message) {
        status.message = { ...u.message, taskId: task.id, contextId: task.contextId };
        task.history = [...(task.history ?? []), status.message];
      }
      task.status = status;
      this.publish(task.id, { kind: "status", event: { taskId: task.id, contextId: task.contextId, status }, final: false });
    } else {
      let artifact: Artifact;
      let append: boolean;
      let lastChunk = false;
      if (u.type === "text") {
        append = run.textArtifactId !== undefined;
        run.textArtifactId ??= randomUUID();
        artifact = { artifactId: run.textArtifactId, name: "output", parts: [{ text: u.text }] };
      } else {
        artifact = u.artifact;
        append = u.append;
        lastChunk = u.lastChunk;
      }
      task.artifacts = mergeArtifact(task.artifacts, artifact, append);
      const event = {
        taskId: task.id,
        contextId: task.contextId,
        artifact,
        ...(append ? { append } : {}),
        ...(lastChunk ? { lastChunk } : {}),
      };
      this.publish(task.id, { kind: "artifact", event });
    }
    this.persist(run);
  }

  /** Applies the outcome, makes it durable, then tells the subscribers and the waiting callers. */
  private async finish(run: TaskRun, o: Outcome): Promise<void> {
    run.finished = true;
    const rec = run.rec;
    const task = rec.task;
    const state: TaskState = outcomeState(o);
    const status: TaskStatus = { state, timestamp: this.now() };
    if (o.type === "message") {
      rec.kind = "message";
      rec.reply = { ...o.message, taskId: undefined, contextId: task.contextId } as Message;
      delete rec.reply.taskId;
      status.message = rec.reply;
    } else {
      for (const a of o.artifacts) task.artifacts = mergeArtifact(task.artifacts, a, false);
      if (o.message) {
        status.message = { ...o.message, taskId: task.id, contextId: task.contextId };
        task.history = [...(task.history ?? []), status.message];
      }
    }
    task.status = status;
    let applied = true;
    try {
      applied = await this.store.save(rec, true);
    } catch (err) {
      this.log?.error({ err, taskId: task.id }, "a2a: saving the task's outcome failed");
    }
    if (!applied) {
      // Finalized elsewhere meanwhile (canceled through another replica): that state stands.
      const stored = await this.store.get(task.id).catch(() => undefined);
      if (stored) run.rec = stored;
    } else if (o.type !== "message") {
      // Published with the final status, once durable: subscribers get them in one write.
      for (const a of o.artifacts)
        this.publish(task.id, { kind: "artifact", event: { taskId: task.id, contextId: task.contextId, artifact: a } });
    }
    this.end(run);
  }

  private end(run: TaskRun): void {
    const task = run.rec.task;
    this.runs.delete(task.id);
    this.onTaskState?.(task.status.state);
    this.publish(task.id, {
      kind: "status",
      event: { taskId: task.id, contextId: task.contextId, status: task.status },
      final: true,
    });
    run.settle();
  }

  // ---- get / list / cancel / subscribe ----

  async getTask(id: string, historyLength: number | undefined, ctx: CallContext): Promise<Task> {
    const run = this.runs.get(id);
    if (run && visible(run.rec, ctx.caller)) return withHistoryLength(snapshot(run.rec.task), historyLength);
    const rec = run ? undefined : await this.store.get(id);
    if (!rec || rec.kind !== "task" || !visible(rec, ctx.caller)) throw taskNotFound(id);
    return withHistoryLength(rec.task, historyLength);
  }

  async listTasks(q: ListTasksQuery, ctx: CallContext): Promise<ListTasksResult> {
    if (q.pageToken && !TaskStore.validPageToken(q.pageToken)) {
      throw invalidParams("pageToken is not a token this server issued", [{ field: "pageToken", description: "invalid" }]);
    }
    const page = await this.store.list(q, ctx.caller.admin ? null : ctx.caller.id);
    return {
      tasks: page.records.map((r) => withHistoryLength(r.task, q.historyLength)),
      nextPageToken: page.nextPageToken,
      pageSize: page.records.length,
      totalSize: page.totalSize,
    };
  }

  async cancel(id: string, ctx: CallContext): Promise<Task> {
    const run = this.runs.get(id);
    if (run) {
      if (!visible(run.rec, ctx.caller)) throw taskNotFound(id);
      if (run.finished) {
        // Finishing right now: its outcome decides.
        await run.settled;
        return this.afterCancelOf(run.rec);
      }
      run.finished = true;
      (run.abort ??= new AbortController()).abort(new Error("task canceled"));
      const task = run.rec.task;
      const status: TaskStatus = {
        state: "TASK_STATE_CANCELED",
        message: agentMessage(`Canceled at the request of ${ctx.caller.id}.`, { taskId: task.id, contextId: task.contextId }),
        timestamp: this.now(),
      };
      task.history = [...(task.history ?? []), status.message!];
      task.status = status;
      await this.store.save(run.rec, true);
      this.end(run);
      return snapshot(task);
    }
    const rec = await this.store.get(id);
    if (!rec || rec.kind !== "task" || !visible(rec, ctx.caller)) throw taskNotFound(id);
    if (isTerminal(rec.task.status.state)) return this.afterCancelOf(rec);
    const status: TaskStatus = {
      state: "TASK_STATE_CANCELED",
      message: agentMessage(`Canceled at the request of ${ctx.caller.id}.`, { taskId: id, contextId: rec.task.contextId }),
      timestamp: this.now(),
    };
    if (await this.store.cancelStored(id, status)) {
      const task: Task = { ...rec.task, status, history: [...(rec.task.history ?? []), status.message!] };
      this.publish(id, { kind: "status", event: { taskId: id, contextId: task.contextId, status }, final: true });
      return task;
    }
    const now = await this.store.get(id);
    if (!now) throw taskNotFound(id);
    return this.afterCancelOf(now);
  }

  /** Cancel is idempotent for canceled tasks; other terminal states cannot be canceled. */
  private afterCancelOf(rec: TaskRecord): Task {
    const state = rec.task.status.state;
    if (state === "TASK_STATE_CANCELED") return snapshot(rec.task);
    throw taskNotCancelable(rec.task.id, state);
  }

  async subscribe(id: string, ctx: CallContext): Promise<EventStream> {
    if (!this.streaming) throw unsupportedOperation("this agent does not stream (capabilities.streaming is false)");
    const run = this.runs.get(id);
    if (run && visible(run.rec, ctx.caller)) return this.subscribeTo(run, undefined);
    const rec = run ? undefined : await this.store.get(id);
    if (!rec || rec.kind !== "task" || !visible(rec, ctx.caller)) throw taskNotFound(id);
    const again = this.runs.get(id);
    if (again) return this.subscribeTo(again, undefined);
    if (isTerminal(rec.task.status.state)) {
      // v1.0 forbids subscribing to a finished task; v0.3 clients get the final task and the end.
      if (ctx.version === "1.0")
        throw unsupportedOperation(`task ${id} is ${rec.task.status.state}; there is nothing to subscribe to`);
      return singleEvent({ kind: "task", task: rec.task });
    }
    // Waiting for input (or running elsewhere): the current task now, updates when they happen here.
    return this.channel(id).subscribe({ kind: "task", task: rec.task });
  }

  private subscribeTo(run: TaskRun, historyLength: number | undefined): Subscription {
    const first: StreamEvent = { kind: "task", task: withHistoryLength(snapshot(run.rec.task), historyLength) };
    return this.channel(run.rec.task.id).subscribe(first);
  }

  private channel(id: string): TaskChannel {
    let ch = this.channels.get(id);
    if (!ch) {
      ch = new TaskChannel(() => {
        if (this.channels.get(id) === ch) this.channels.delete(id);
      });
      this.channels.set(id, ch);
    }
    return ch;
  }

  /** Tasks currently running in this process (for tests, health and shutdown). */
  get activeRuns(): number {
    return this.runs.size;
  }

  /**
   * Graceful stop: running handlers are aborted and their tasks marked failed with the reason
   * (the same outcome a crash has, recorded now instead of at the next start).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const runs = [...this.runs.values()];
    await Promise.all(
      runs.map(async (run) => {
        if (run.finished) return run.settled;
        run.finished = true;
        (run.abort ??= new AbortController()).abort(new Error("agent shutting down"));
        const task = run.rec.task;
        const status: TaskStatus = {
          state: "TASK_STATE_FAILED",
          message: agentMessage(
            "The agent's A2A server shut down while this task was in flight; send the message again with a new messageId.",
            {
              taskId: task.id,
              contextId: task.contextId,
            },
          ),
          timestamp: this.now(),
        };
        task.history = [...(task.history ?? []), status.message!];
        task.status = status;
        await this.store.save(run.rec, true).catch(() => undefined);
        this.end(run);
      }),
    );
    for (const ch of this.channels.values()) ch.closeAll();
    await this.store.batcher.drain();
  }
}
