/**
 * A2A v1.0 over JSON-RPC: PascalCase methods, ProtoJSON bodies. The internal model already is the
 * v1.0 shape, so this file only validates inputs and wraps outputs.
 */
import { z } from "zod";
import { pushNotSupported } from "../errors.js";
import {
  TASK_STATES,
  type ListTasksQuery,
  type ListTasksResult,
  type Message,
  type Part,
  type SendRequest,
  type StreamEvent,
  type Task,
  type TaskState,
} from "../model.js";
import { BASE64, JsonObject, historyLength, optionalId, parseParams, requiredId } from "./common.js";

export const V1_METHODS = [
  "SendMessage",
  "SendStreamingMessage",
  "GetTask",
  "ListTasks",
  "CancelTask",
  "SubscribeToTask",
  "CreateTaskPushNotificationConfig",
  "GetTaskPushNotificationConfig",
  "ListTaskPushNotificationConfigs",
  "DeleteTaskPushNotificationConfig",
  "GetExtendedAgentCard",
] as const;

const ROLE_NAMES = { 1: "ROLE_USER", 2: "ROLE_AGENT" } as const;
const Role = z
  .union([z.enum(["ROLE_USER", "ROLE_AGENT"]), z.literal(1), z.literal(2)])
  .transform((r) => (typeof r === "number" ? ROLE_NAMES[r] : r));

const STATE_BY_NUMBER: Record<number, TaskState> = {
  1: "TASK_STATE_SUBMITTED",
  2: "TASK_STATE_WORKING",
  3: "TASK_STATE_COMPLETED",
  4: "TASK_STATE_FAILED",
  5: "TASK_STATE_CANCELED",
  6: "TASK_STATE_INPUT_REQUIRED",
  7: "TASK_STATE_REJECTED",
  8: "TASK_STATE_AUTH_REQUIRED",
};
const State = z
  .union([z.enum(TASK_STATES as [TaskState, ...TaskState[]]), z.number().int().min(1).max(8)])
  .transform((s) => (typeof s === "number" ? STATE_BY_NUMBER[s]! : s));

export const PartV1 = z
  .object({
    text: z.string().optional(),
    raw: z.string().regex(BASE64, "must be base64").optional(),
    url: z.string().min(1).optional(),
    data: z.unknown().optional(),
    mediaType: z.string().max(255).optional(),
    filename: z.string().max(1024).optional(),
    metadata: JsonObject.optional(),
  })
  .superRefine((p, ctx) => {
    const n =
      (p.text !== undefined ? 1 : 0) + (p.raw !== undefined ? 1 : 0) + (p.url !== undefined ? 1 : 0) + ("data" in p ? 1 : 0);
    if (n !== 1) ctx.addIssue({ code: "custom", message: "a part needs exactly one of text, raw, url, data" });
  })
  .transform((p): Part => {
    // Drop ProtoJSON defaults so stored parts stay minimal.
    if (p.mediaType === "") delete p.mediaType;
    if (p.filename === "") delete p.filename;
    return p;
  });

export const MessageV1 = z
  .object({
    messageId: requiredId,
    role: Role,
    parts: z.array(PartV1).min(1, "at least one part is required"),
    contextId: optionalId,
    taskId: optionalId,
    metadata: JsonObject.optional(),
    extensions: z.array(z.string()).optional(),
    referenceTaskIds: z.array(z.string()).optional(),
  })
  .transform((m): Message => {
    const out: Message = { messageId: m.messageId, role: m.role, parts: m.parts };
    if (m.contextId !== undefined) out.contextId = m.contextId;
    if (m.taskId !== undefined) out.taskId = m.taskId;
    if (m.metadata !== undefined) out.metadata = m.metadata;
    if (m.extensions?.length) out.extensions = m.extensions;
    if (m.referenceTaskIds?.length) out.referenceTaskIds = m.referenceTaskIds;
    return out;
  });

const SendMessageRequestV1 = z.object({
  tenant: z.string().optional(),
  message: MessageV1,
  configuration: z
    .object({
      acceptedOutputModes: z.array(z.string()).optional(),
      taskPushNotificationConfig: z.unknown().optional(),
      historyLength,
      returnImmediately: z.boolean().optional(),
    })
    .optional(),
  metadata: JsonObject.optional(),
});

const TaskIdRequest = z.object({ tenant: z.string().optional(), id: requiredId, metadata: JsonObject.optional() });
const GetTaskRequestV1 = z.object({ tenant: z.string().optional(), id: requiredId, historyLength });

const ListTasksRequestV1 = z.object({
  tenant: z.string().optional(),
  contextId: optionalId,
  status: State.optional(),
  pageSize: z.number().int().min(1).max(100).optional(),
  pageToken: z.string().max(512).optional(),
  historyLength,
  statusTimestampAfter: z.iso.datetime({ offset: true }).optional(),
  includeArtifacts: z.boolean().optional(),
});

export function parseSendV1(params: unknown): SendRequest {
  const p = parseParams(SendMessageRequestV1, params);
  // Push notifications are not offered (capabilities.pushNotifications = false): refuse, do not ignore.
  if (p.configuration?.taskPushNotificationConfig !== undefined) throw pushNotSupported();
  const req: SendRequest = {
    message: p.message,
    configuration: {
      returnImmediately: p.configuration?.returnImmediately === true,
      ...(p.configuration?.historyLength !== undefined ? { historyLength: p.configuration.historyLength } : {}),
      ...(p.configuration?.acceptedOutputModes?.length ? { acceptedOutputModes: p.configuration.acceptedOutputModes } : {}),
    },
  };
  if (p.metadata !== undefined) req.metadata = p.metadata;
  return req;
}

export const parseGetTaskV1 = (params: unknown) => parseParams(GetTaskRequestV1, params);
export const parseTaskIdV1 = (params: unknown) => parseParams(TaskIdRequest, params);

export function parseListTasksV1(params: unknown): ListTasksQuery {
  const p = parseParams(ListTasksRequestV1, params);
  const q: ListTasksQuery = { pageSize: p.pageSize ?? 50, includeArtifacts: p.includeArtifacts === true };
  if (p.contextId !== undefined) q.contextId = p.contextId;
  if (p.status !== undefined) q.status = p.status;
  if (p.pageToken) q.pageToken = p.pageToken;
  if (p.historyLength !== undefined) q.historyLength = p.historyLength;
  if (p.statusTimestampAfter !== undefined) q.statusTimestampAfter = Date.parse(p.statusTimestampAfter);
  return q;
}

/** `SendMessage` result: a oneof of task or message. */
export const sendResultV1 = (r: { task: Task } | { message: Message }) => r;

export function listResultV1(r: ListTasksResult, includeArtifacts: boolean): unknown {
  // ListTasks: without includeArtifacts the field MUST be absent; with it, present (possibly empty).
  const tasks = r.tasks.map((t) => {
    if (!includeArtifacts) {
      if (t.artifacts === undefined) return t;
      const { artifacts: _a, ...rest } = t;
      return rest;
    }
    return t.artifacts === undefined ? { ...t, artifacts: [] } : t;
  });
  return { tasks, nextPageToken: r.nextPageToken, pageSize: r.pageSize, totalSize: r.totalSize };
}

/** One `StreamResponse` (a oneof) per event. */
export function streamEventV1(e: StreamEvent): unknown {
  switch (e.kind) {
    case "task":
      return { task: e.task };
    case "message":
      return { message: e.message };
    case "status":
      return { statusUpdate: e.event };
    case "artifact":
      return { artifactUpdate: e.event };
  }
}
