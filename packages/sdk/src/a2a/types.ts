/**
 * A2A objects as the client hands them to agent code: the v1.0 ProtoJSON shapes (camelCase,
 * `TASK_STATE_*`, `ROLE_*`, parts `{text}|{raw}|{url}|{data}`), whichever protocol version was
 * spoken on the wire.
 */

export type A2ATaskState =
  | "TASK_STATE_SUBMITTED"
  | "TASK_STATE_WORKING"
  | "TASK_STATE_INPUT_REQUIRED"
  | "TASK_STATE_AUTH_REQUIRED"
  | "TASK_STATE_COMPLETED"
  | "TASK_STATE_CANCELED"
  | "TASK_STATE_FAILED"
  | "TASK_STATE_REJECTED";

export interface A2APart {
  text?: string;
  /** Base64 bytes. */
  raw?: string;
  url?: string;
  data?: unknown;
  mediaType?: string;
  filename?: string;
  metadata?: Record<string, unknown>;
}

export interface A2AMessage {
  messageId: string;
  role: "ROLE_USER" | "ROLE_AGENT";
  parts: A2APart[];
  contextId?: string;
  taskId?: string;
  metadata?: Record<string, unknown>;
  extensions?: string[];
  referenceTaskIds?: string[];
}

export interface A2AArtifact {
  artifactId: string;
  name?: string;
  description?: string;
  parts: A2APart[];
  metadata?: Record<string, unknown>;
}

export interface A2ATaskStatus {
  state: A2ATaskState;
  message?: A2AMessage;
  timestamp?: string;
}

export interface A2ATask {
  id: string;
  contextId: string;
  status: A2ATaskStatus;
  artifacts?: A2AArtifact[];
  history?: A2AMessage[];
  metadata?: Record<string, unknown>;
}

export type A2AStreamEvent =
  | { kind: "task"; task: A2ATask }
  | { kind: "message"; message: A2AMessage }
  | { kind: "status-update"; taskId: string; contextId: string; status: A2ATaskStatus; final: boolean }
  | { kind: "artifact-update"; taskId: string; contextId: string; artifact: A2AArtifact; append: boolean; lastChunk: boolean };

export interface A2AListTasksResult {
  tasks: A2ATask[];
  nextPageToken: string;
  pageSize: number;
  totalSize: number;
}

/** What can be sent: text, or a message without the fields the client fills in. */
export type A2AMessageInput = string | (Partial<Omit<A2AMessage, "parts">> & { parts: A2APart[] });

export function isA2ATask(v: A2ATask | A2AMessage): v is A2ATask {
  return "status" in v && "id" in v;
}

/** The text of a reply: a task's artifacts (or its status message), or a message's text parts. */
export function a2aText(v: A2ATask | A2AMessage): string {
  const parts = isA2ATask(v)
    ? v.artifacts?.length
      ? v.artifacts.flatMap((a) => a.parts)
      : (v.status.message?.parts ?? [])
    : v.parts;
  return parts
    .map((p) => p.text)
    .filter((t): t is string => t !== undefined)
    .join("");
}
