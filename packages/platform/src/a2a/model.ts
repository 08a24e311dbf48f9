/**
 * The A2A data model as Hexr holds it in memory and in storage: the v1.0 ProtoJSON shapes
 * (camelCase fields, `TASK_STATE_*` / `ROLE_*` enum names, parts as `{text}|{raw}|{url}|{data}`).
 * v1.0 responses are these objects serialized as they are; v0.3 is a translation at the edge
 * (see `wire/v03.ts`).
 */

export type TaskState =
  | "TASK_STATE_SUBMITTED"
  | "TASK_STATE_WORKING"
  | "TASK_STATE_INPUT_REQUIRED"
  | "TASK_STATE_AUTH_REQUIRED"
  | "TASK_STATE_COMPLETED"
  | "TASK_STATE_CANCELED"
  | "TASK_STATE_FAILED"
  | "TASK_STATE_REJECTED";

export const TASK_STATES: readonly TaskState[] = [
  "TASK_STATE_SUBMITTED",
  "TASK_STATE_WORKING",
  "TASK_STATE_INPUT_REQUIRED",
  "TASK_STATE_AUTH_REQUIRED",
  "TASK_STATE_COMPLETED",
  "TASK_STATE_CANCELED",
  "TASK_STATE_FAILED",
  "TASK_STATE_REJECTED",
];

/** States after which a task never changes again. */
export const TERMINAL_STATES: ReadonlySet<TaskState> = new Set([
  "TASK_STATE_COMPLETED",
  "TASK_STATE_CANCELED",
  "TASK_STATE_FAILED",
  "TASK_STATE_REJECTED",
]);

/** States in which the agent waits for the client; a follow-up message resumes the task. */
export const INTERRUPTED_STATES: ReadonlySet<TaskState> = new Set(["TASK_STATE_INPUT_REQUIRED", "TASK_STATE_AUTH_REQUIRED"]);

export const isTerminal = (s: TaskState): boolean => TERMINAL_STATES.has(s);
/** A stream or a blocking send ends at a terminal or interrupted state. */
export const endsInteraction = (s: TaskState): boolean => TERMINAL_STATES.has(s) || INTERRUPTED_STATES.has(s);

export type Role = "ROLE_USER" | "ROLE_AGENT";

export type JsonObject = Record<string, unknown>;

/** Exactly one of `text`, `raw` (base64), `url`, `data` is set. */
export interface Part {
  text?: string;
  raw?: string;
  url?: string;
  data?: unknown;
  mediaType?: string;
  filename?: string;
  metadata?: JsonObject;
}

export interface Message {
  messageId: string;
  role: Role;
  parts: Part[];
  contextId?: string;
  taskId?: string;
  metadata?: JsonObject;
  extensions?: string[];
  referenceTaskIds?: string[];
}

export interface Artifact {
  artifactId: string;
  name?: string;
  description?: string;
  parts: Part[];
  metadata?: JsonObject;
  extensions?: string[];
}

export interface TaskStatus {
  state: TaskState;
  message?: Message;
  /** RFC 3339, UTC, millisecond precision. */
  timestamp: string;
}

export interface Task {
  id: string;
  contextId: string;
  status: TaskStatus;
  artifacts?: Artifact[];
  history?: Message[];
  metadata?: JsonObject;
}

export interface TaskStatusUpdateEvent {
  taskId: string;
  contextId: string;
  status: TaskStatus;
  metadata?: JsonObject;
}

export interface TaskArtifactUpdateEvent {
  taskId: string;
  contextId: string;
  artifact: Artifact;
  append?: boolean;
  lastChunk?: boolean;
  metadata?: JsonObject;
}

/** What a stream carries, version-neutral; each protocol version serializes it its own way. */
export type StreamEvent =
  | { kind: "task"; task: Task }
  | { kind: "message"; message: Message }
  | { kind: "status"; event: TaskStatusUpdateEvent; final: boolean }
  | { kind: "artifact"; event: TaskArtifactUpdateEvent };

export interface SendConfiguration {
  /** false (default): wait for a terminal or interrupted state; true: return the task at once. */
  returnImmediately: boolean;
  historyLength?: number;
  acceptedOutputModes?: string[];
}

export interface SendRequest {
  message: Message;
  configuration: SendConfiguration;
  metadata?: JsonObject;
}

export interface ListTasksQuery {
  contextId?: string;
  status?: TaskState;
  pageSize: number;
  pageToken?: string;
  historyLength?: number;
  /** Epoch ms: only tasks whose status changed after this instant. */
  statusTimestampAfter?: number;
  includeArtifacts: boolean;
}

export interface ListTasksResult {
  tasks: Task[];
  nextPageToken: string;
  pageSize: number;
  totalSize: number;
}

/** Returns a copy of the task with at most `historyLength` recent messages (0 = none, undefined = all). */
export function withHistoryLength(task: Task, historyLength: number | undefined): Task {
  if (historyLength === undefined) return task;
  const { history, ...rest } = task;
  if (historyLength <= 0 || !history || history.length === 0) return rest;
  return history.length <= historyLength ? task : { ...rest, history: history.slice(-historyLength) };
}
