/**
 * The bridge between the A2A server and an agent's code: an `A2AHandler` receives the message and
 * a context, and returns a result (text, data, artifacts or a Message) — or yields updates from an
 * async generator while it works. Plain values are interpreted; the `reply` helpers say exactly
 * what is meant when a plain value would be ambiguous.
 */
import { randomUUID } from "node:crypto";
import type { Artifact, Message, Part, TaskState } from "./model.js";

export interface A2AHandlerContext {
  /** The caller's SPIFFE ID when it proved one (mTLS through the mesh, or a JWT-SVID); null otherwise. */
  callerSpiffeId: string | null;
  /** Who called: a SPIFFE ID, or `apikey:<id>` for API-key callers coming through the platform ingress. */
  caller: string;
  taskId: string;
  contextId: string;
  /** Aborted when the task is canceled (`tasks/cancel`) or the server shuts down. */
  signal: AbortSignal;
  /** The task's messages so far, oldest first; the last one is `message`. */
  history: Message[];
  /** The request's W3C trace context (`traceparent`, `tracestate`), to continue the caller's trace. */
  trace?: Record<string, string>;
}

/** Artifact shorthand: `text` or `data` instead of `parts`; the id is generated when absent. */
export interface ArtifactInput {
  artifactId?: string;
  name?: string;
  description?: string;
  parts?: Part[];
  text?: string;
  data?: unknown;
  metadata?: Record<string, unknown>;
}

const OUTCOME = Symbol.for("hexr.a2a.outcome");
const UPDATE = Symbol.for("hexr.a2a.update");

/** A normalized handler result: how the task ends (or pauses) and what it produced. */
export type Outcome =
  | { type: "completed"; artifacts: Artifact[]; message?: Message }
  /** The agent answers with a Message instead of a task. */
  | { type: "message"; message: Message }
  | { type: "input-required" | "auth-required" | "rejected" | "failed"; message?: Message; artifacts: Artifact[] };

/** A normalized streaming update. */
export type Update =
  | { type: "status"; state: "TASK_STATE_WORKING"; message?: Message }
  | { type: "artifact"; artifact: Artifact; append: boolean; lastChunk: boolean }
  /** A chunk of the run's streamed text output (one artifact that grows). */
  | { type: "text"; text: string };

export type A2AResult = string | number | boolean | null | undefined | object;
export type A2AUpdate = string | object;

export type A2AHandler = (
  message: Message,
  ctx: A2AHandlerContext,
) => Promise<A2AResult> | A2AResult | AsyncGenerator<A2AUpdate, A2AResult, void>;

export function agentMessage(content: string | Part[], ids: { taskId?: string; contextId?: string } = {}): Message {
  const m: Message = {
    messageId: randomUUID(),
    role: "ROLE_AGENT",
    parts: typeof content === "string" ? [{ text: content }] : content,
  };
  if (ids.taskId) m.taskId = ids.taskId;
  if (ids.contextId) m.contextId = ids.contextId;
  return m;
}

export function toArtifact(a: ArtifactInput, index = 0): Artifact {
  const parts: Part[] = a.parts ?? (a.text !== undefined ? [{ text: a.text }] : a.data !== undefined ? [{ data: a.data }] : []);
  if (parts.length === 0) throw new TypeError("an artifact needs parts, text or data");
  const out: Artifact = { artifactId: a.artifactId ?? randomUUID(), parts };
  out.name = a.name ?? (index === 0 ? "result" : `result-${index + 1}`);
  if (a.description !== undefined) out.description = a.description;
  if (a.metadata !== undefined) out.metadata = a.metadata;
  return out;
}

const brand = <T extends object>(sym: symbol, v: T): T => Object.defineProperty(v, sym, { value: true, enumerable: false });

/** Explicit results for handlers (a plain object would otherwise be taken as data). */
export const reply = {
  text: (text: string): Outcome => brand(OUTCOME, { type: "completed", artifacts: [toArtifact({ text })] }),
  data: (data: unknown): Outcome => brand(OUTCOME, { type: "completed", artifacts: [toArtifact({ data })] }),
  artifacts: (artifacts: ArtifactInput[]): Outcome =>
    brand(OUTCOME, { type: "completed", artifacts: artifacts.map((a, i) => toArtifact(a, i)) }),
  /** Answer with a Message, without a task. */
  message: (content: string | Part[]): Outcome => brand(OUTCOME, { type: "message", message: agentMessage(content) }),
  inputRequired: (prompt: string | Part[]): Outcome =>
    brand(OUTCOME, { type: "input-required", message: agentMessage(prompt), artifacts: [] }),
  authRequired: (prompt: string | Part[]): Outcome =>
    brand(OUTCOME, { type: "auth-required", message: agentMessage(prompt), artifacts: [] }),
  rejected: (reason: string): Outcome => brand(OUTCOME, { type: "rejected", message: agentMessage(reason), artifacts: [] }),
  failed: (reason: string): Outcome => brand(OUTCOME, { type: "failed", message: agentMessage(reason), artifacts: [] }),
};

/** Explicit streaming updates for async-generator handlers. */
export const update = {
  working: (message?: string | Part[]): Update =>
    brand(UPDATE, {
      type: "status",
      state: "TASK_STATE_WORKING",
      ...(message !== undefined ? { message: agentMessage(message) } : {}),
    }),
  artifact: (a: ArtifactInput, opts: { append?: boolean; lastChunk?: boolean } = {}): Update =>
    brand(UPDATE, {
      type: "artifact",
      artifact: toArtifact(a),
      append: opts.append === true,
      lastChunk: opts.lastChunk === true,
    }),
  text: (text: string): Update => brand(UPDATE, { type: "text", text }),
};

function isMessageLike(v: object): v is Message {
  const m = v as Partial<Message>;
  return typeof m.messageId === "string" && (m.role === "ROLE_AGENT" || m.role === "ROLE_USER") && Array.isArray(m.parts);
}

const isBranded = (v: object, sym: symbol) => (v as Record<symbol, unknown>)[sym] === true;

/** Interprets a handler's return value. */
export function normalizeResult(r: A2AResult): Outcome {
  if (r === undefined) return { type: "completed", artifacts: [] };
  if (typeof r === "string") return { type: "completed", artifacts: [toArtifact({ text: r })] };
  if (typeof r === "object" && r !== null) {
    if (isBranded(r, OUTCOME)) return r as Outcome;
    if (isMessageLike(r)) return { type: "message", message: { ...r, role: "ROLE_AGENT" } };
    const keys = Object.keys(r);
    if (keys.length === 1 && keys[0] === "artifacts" && Array.isArray((r as { artifacts: unknown }).artifacts)) {
      return {
        type: "completed",
        artifacts: (r as { artifacts: ArtifactInput[] }).artifacts.map((a, i) => toArtifact(a, i)),
      };
    }
  }
  return { type: "completed", artifacts: [toArtifact({ data: r })] };
}

/** Interprets one value yielded by a streaming handler. */
export function normalizeUpdate(u: A2AUpdate): Update {
  if (typeof u === "string") return { type: "text", text: u };
  if (isBranded(u, UPDATE)) return u as Update;
  const o = u as { artifact?: ArtifactInput; append?: boolean; lastChunk?: boolean; status?: string; message?: string };
  if (o.artifact !== undefined) {
    return { type: "artifact", artifact: toArtifact(o.artifact), append: o.append === true, lastChunk: o.lastChunk === true };
  }
  if (o.status === "working") {
    return {
      type: "status",
      state: "TASK_STATE_WORKING",
      ...(o.message !== undefined ? { message: agentMessage(o.message) } : {}),
    };
  }
  throw new TypeError("a streaming handler may yield text, update.working(), update.artifact() or update.text()");
}

/** The task state an outcome leaves the task in. */
export function outcomeState(o: Outcome): TaskState {
  switch (o.type) {
    case "completed":
    case "message":
      return "TASK_STATE_COMPLETED";
    case "input-required":
      return "TASK_STATE_INPUT_REQUIRED";
    case "auth-required":
      return "TASK_STATE_AUTH_REQUIRED";
    case "rejected":
      return "TASK_STATE_REJECTED";
    case "failed":
      return "TASK_STATE_FAILED";
  }
}

export function isAsyncGenerator(v: unknown): v is AsyncGenerator<A2AUpdate, A2AResult, void> {
  return (
    typeof v === "object" &&
    v !== null &&
    typeof (v as AsyncGenerator)[Symbol.asyncIterator] === "function" &&
    typeof (v as AsyncGenerator).next === "function"
  );
}
