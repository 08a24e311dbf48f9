/**
 * A2A v0.3 over JSON-RPC: `message/send`-style methods, objects tagged with `kind`, lowercase
 * states, `text`/`file`/`data` parts. Translated to and from the internal (v1.0) model here.
 */
import { z } from "zod";
import { pushNotSupported } from "../errors.js";
import type {
  Artifact,
  Message,
  Part,
  SendRequest,
  StreamEvent,
  Task,
  TaskArtifactUpdateEvent,
  TaskState,
  TaskStatus,
  TaskStatusUpdateEvent,
} from "../model.js";
import { BASE64, JsonObject, historyLength, optionalId, parseParams, requiredId } from "./common.js";

export const V03_METHODS = [
  "message/send",
  "message/stream",
  "tasks/get",
  "tasks/cancel",
  "tasks/resubscribe",
  "tasks/pushNotificationConfig/set",
  "tasks/pushNotificationConfig/get",
  "tasks/pushNotificationConfig/list",
  "tasks/pushNotificationConfig/delete",
  "agent/getAuthenticatedExtendedCard",
] as const;

/** How a2a-js marks a v1.0 non-object `data` wrapped as `{ value }` for v0.3, which requires an object. */
export const DATA_PART_COMPAT_FLAG = "data_part_compat";

const STATE_TO_V03: Record<TaskState, string> = {
  TASK_STATE_SUBMITTED: "submitted",
  TASK_STATE_WORKING: "working",
  TASK_STATE_INPUT_REQUIRED: "input-required",
  TASK_STATE_AUTH_REQUIRED: "auth-required",
  TASK_STATE_COMPLETED: "completed",
  TASK_STATE_CANCELED: "canceled",
  TASK_STATE_FAILED: "failed",
  TASK_STATE_REJECTED: "rejected",
};

const FileV03 = z.union([
  z.object({ bytes: z.string().regex(BASE64, "must be base64"), mimeType: z.string().optional(), name: z.string().optional() }),
  z.object({ uri: z.string().min(1), mimeType: z.string().optional(), name: z.string().optional() }),
]);

const PartV03 = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("text"), text: z.string(), metadata: JsonObject.optional() }),
  z.object({ kind: z.literal("file"), file: FileV03, metadata: JsonObject.optional() }),
  z.object({ kind: z.literal("data"), data: JsonObject, metadata: JsonObject.optional() }),
]);
type PartV03 = z.infer<typeof PartV03>;

function partFromV03(p: PartV03): Part {
  const out: Part = {};
  if (p.kind === "text") out.text = p.text;
  else if (p.kind === "file") {
    if ("bytes" in p.file) out.raw = p.file.bytes;
    else out.url = p.file.uri;
    if (p.file.mimeType) out.mediaType = p.file.mimeType;
    if (p.file.name) out.filename = p.file.name;
  } else {
    let metadata = p.metadata;
    out.data = p.data;
    if (metadata?.[DATA_PART_COMPAT_FLAG] === true) {
      if ("value" in p.data) out.data = p.data["value"];
      const { [DATA_PART_COMPAT_FLAG]: _flag, ...rest } = metadata;
      metadata = Object.keys(rest).length ? rest : undefined;
    }
    if (metadata) out.metadata = metadata;
    return out;
  }
  if (p.metadata) out.metadata = p.metadata;
  return out;
}

export const MessageV03 = z
  .object({
    kind: z.literal("message").optional(),
    messageId: requiredId,
    role: z.enum(["user", "agent"]),
    parts: z.array(PartV03).min(1, "at least one part is required"),
    contextId: optionalId,
    taskId: optionalId,
    metadata: JsonObject.optional(),
    extensions: z.array(z.string()).optional(),
    referenceTaskIds: z.array(z.string()).optional(),
  })
  .transform((m): Message => {
    const out: Message = {
      messageId: m.messageId,
      role: m.role === "user" ? "ROLE_USER" : "ROLE_AGENT",
      parts: m.parts.map(partFromV03),
    };
    if (m.contextId !== undefined) out.contextId = m.contextId;
    if (m.taskId !== undefined) out.taskId = m.taskId;
    if (m.metadata !== undefined) out.metadata = m.metadata;
    if (m.extensions?.length) out.extensions = m.extensions;
    if (m.referenceTaskIds?.length) out.referenceTaskIds = m.referenceTaskIds;
    return out;
  });

const MessageSendParams = z.object({
  message: MessageV03,
  configuration: z
    .object({
      acceptedOutputModes: z.array(z.string()).optional(),
      blocking: z.boolean().optional(),
      historyLength,
      pushNotificationConfig: z.unknown().optional(),
    })
    .optional(),
  metadata: JsonObject.optional(),
});

const TaskQueryParams = z.object({ id: requiredId, historyLength, metadata: JsonObject.optional() });
const TaskIdParams = z.object({ id: requiredId, metadata: JsonObject.optional() });

export function parseSendV03(params: unknown): SendRequest {
  const p = parseParams(MessageSendParams, params);
  if (p.configuration?.pushNotificationConfig !== undefined) throw pushNotSupported();
  const req: SendRequest = {
    message: p.message,
    // v0.3 is blocking unless `blocking: false` (as the v0.3 reference server behaves).
    configuration: {
      returnImmediately: p.configuration?.blocking === false,
      ...(p.configuration?.historyLength !== undefined ? { historyLength: p.configuration.historyLength } : {}),
      ...(p.configuration?.acceptedOutputModes?.length ? { acceptedOutputModes: p.configuration.acceptedOutputModes } : {}),
    },
  };
  if (p.metadata !== undefined) req.metadata = p.metadata;
  return req;
}

export const parseGetTaskV03 = (params: unknown) => parseParams(TaskQueryParams, params);
export const parseTaskIdV03 = (params: unknown) => parseParams(TaskIdParams, params);

// ---- internal → v0.3 ----

function partToV03(p: Part): Record<string, unknown> {
  let out: Record<string, unknown>;
  if (p.text !== undefined) out = { kind: "text", text: p.text };
  else if (p.raw !== undefined || p.url !== undefined) {
    const file: Record<string, unknown> = p.raw !== undefined ? { bytes: p.raw } : { uri: p.url };
    if (p.mediaType) file["mimeType"] = p.mediaType;
    if (p.filename) file["name"] = p.filename;
    out = { kind: "file", file };
  } else {
    const d = p.data;
    if (d !== null && typeof d === "object" && !Array.isArray(d)) out = { kind: "data", data: d };
    else {
      out = { kind: "data", data: { value: d ?? null }, metadata: { ...(p.metadata ?? {}), [DATA_PART_COMPAT_FLAG]: true } };
      return out;
    }
  }
  if (p.metadata) out["metadata"] = p.metadata;
  return out;
}

export function messageToV03(m: Message): Record<string, unknown> {
  const out: Record<string, unknown> = {
    kind: "message",
    messageId: m.messageId,
    role: m.role === "ROLE_USER" ? "user" : "agent",
    parts: m.parts.map(partToV03),
  };
  if (m.contextId !== undefined) out["contextId"] = m.contextId;
  if (m.taskId !== undefined) out["taskId"] = m.taskId;
  if (m.metadata !== undefined) out["metadata"] = m.metadata;
  if (m.extensions?.length) out["extensions"] = m.extensions;
  if (m.referenceTaskIds?.length) out["referenceTaskIds"] = m.referenceTaskIds;
  return out;
}

function statusToV03(s: TaskStatus): Record<string, unknown> {
  const out: Record<string, unknown> = { state: STATE_TO_V03[s.state], timestamp: s.timestamp };
  if (s.message) out["message"] = messageToV03(s.message);
  return out;
}

function artifactToV03(a: Artifact): Record<string, unknown> {
  const out: Record<string, unknown> = { artifactId: a.artifactId, parts: a.parts.map(partToV03) };
  if (a.name !== undefined) out["name"] = a.name;
  if (a.description !== undefined) out["description"] = a.description;
  if (a.metadata !== undefined) out["metadata"] = a.metadata;
  if (a.extensions?.length) out["extensions"] = a.extensions;
  return out;
}

export function taskToV03(t: Task): Record<string, unknown> {
  const out: Record<string, unknown> = { kind: "task", id: t.id, contextId: t.contextId, status: statusToV03(t.status) };
  if (t.artifacts?.length) out["artifacts"] = t.artifacts.map(artifactToV03);
  if (t.history?.length) out["history"] = t.history.map(messageToV03);
  if (t.metadata !== undefined) out["metadata"] = t.metadata;
  return out;
}

function statusEventToV03(e: TaskStatusUpdateEvent, final: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {
    kind: "status-update",
    taskId: e.taskId,
    contextId: e.contextId,
    status: statusToV03(e.status),
    final,
  };
  if (e.metadata !== undefined) out["metadata"] = e.metadata;
  return out;
}

function artifactEventToV03(e: TaskArtifactUpdateEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {
    kind: "artifact-update",
    taskId: e.taskId,
    contextId: e.contextId,
    artifact: artifactToV03(e.artifact),
  };
  if (e.append) out["append"] = true;
  if (e.lastChunk) out["lastChunk"] = true;
  if (e.metadata !== undefined) out["metadata"] = e.metadata;
  return out;
}

export const sendResultV03 = (r: { task: Task } | { message: Message }) =>
  "task" in r ? taskToV03(r.task) : messageToV03(r.message);

export function streamEventV03(e: StreamEvent): unknown {
  switch (e.kind) {
    case "task":
      return taskToV03(e.task);
    case "message":
      return messageToV03(e.message);
    case "status":
      return statusEventToV03(e.event, e.final);
    case "artifact":
      return artifactEventToV03(e.event);
  }
}
