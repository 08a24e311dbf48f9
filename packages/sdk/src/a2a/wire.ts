/**
 * The two JSON-RPC dialects of A2A: v1.0 (PascalCase methods, ProtoJSON) and v0.3 (`message/send`,
 * objects with `kind`, lowercase states). Requests are written in either; replies are read into
 * the v1.0 shapes of `types.ts`.
 */
import type { A2AArtifact, A2AMessage, A2APart, A2AStreamEvent, A2ATask, A2ATaskState, A2ATaskStatus } from "./types.js";

export type A2AVersion = "1.0" | "0.3";

type Obj = Record<string, unknown>;

export const METHODS = {
  "1.0": {
    send: "SendMessage",
    stream: "SendStreamingMessage",
    get: "GetTask",
    cancel: "CancelTask",
    subscribe: "SubscribeToTask",
    list: "ListTasks",
  },
  "0.3": {
    send: "message/send",
    stream: "message/stream",
    get: "tasks/get",
    cancel: "tasks/cancel",
    subscribe: "tasks/resubscribe",
    list: undefined,
  },
} as const;

const FROM_V03_STATE: Record<string, A2ATaskState> = {
  submitted: "TASK_STATE_SUBMITTED",
  working: "TASK_STATE_WORKING",
  "input-required": "TASK_STATE_INPUT_REQUIRED",
  "auth-required": "TASK_STATE_AUTH_REQUIRED",
  completed: "TASK_STATE_COMPLETED",
  canceled: "TASK_STATE_CANCELED",
  failed: "TASK_STATE_FAILED",
  rejected: "TASK_STATE_REJECTED",
};

const DATA_PART_COMPAT_FLAG = "data_part_compat";

// ---- requests ----

function partToV03(p: A2APart): Obj {
  if (p.text !== undefined) return { kind: "text", text: p.text, ...(p.metadata ? { metadata: p.metadata } : {}) };
  if (p.raw !== undefined || p.url !== undefined) {
    const file: Obj = p.raw !== undefined ? { bytes: p.raw } : { uri: p.url };
    if (p.mediaType) file["mimeType"] = p.mediaType;
    if (p.filename) file["name"] = p.filename;
    return { kind: "file", file, ...(p.metadata ? { metadata: p.metadata } : {}) };
  }
  const d = p.data;
  if (d !== null && typeof d === "object" && !Array.isArray(d))
    return { kind: "data", data: d, ...(p.metadata ? { metadata: p.metadata } : {}) };
  return { kind: "data", data: { value: d ?? null }, metadata: { ...p.metadata, [DATA_PART_COMPAT_FLAG]: true } };
}

export function messageForWire(m: A2AMessage, version: A2AVersion): Obj {
  if (version === "1.0") return m as unknown as Obj;
  const out: Obj = {
    kind: "message",
    messageId: m.messageId,
    role: m.role === "ROLE_AGENT" ? "agent" : "user",
    parts: m.parts.map(partToV03),
  };
  for (const k of ["contextId", "taskId", "metadata", "extensions", "referenceTaskIds"] as const)
    if (m[k] !== undefined) out[k] = m[k];
  return out;
}

export interface SendConfig {
  returnImmediately?: boolean;
  historyLength?: number;
  acceptedOutputModes?: string[];
}

export function sendParams(m: A2AMessage, version: A2AVersion, cfg: SendConfig, metadata?: Obj): Obj {
  const configuration: Obj = {};
  if (cfg.historyLength !== undefined) configuration["historyLength"] = cfg.historyLength;
  if (cfg.acceptedOutputModes) configuration["acceptedOutputModes"] = cfg.acceptedOutputModes;
  if (version === "1.0") {
    if (cfg.returnImmediately) configuration["returnImmediately"] = true;
  } else configuration["blocking"] = !cfg.returnImmediately;
  return {
    message: messageForWire(m, version),
    ...(Object.keys(configuration).length ? { configuration } : {}),
    ...(metadata ? { metadata } : {}),
  };
}

// ---- replies ----

function partFromV03(p: Obj): A2APart {
  const out: A2APart = {};
  const metadata = p["metadata"] as Obj | undefined;
  if (p["kind"] === "text") out.text = String(p["text"] ?? "");
  else if (p["kind"] === "file") {
    const f = (p["file"] ?? {}) as Obj;
    if (typeof f["bytes"] === "string") out.raw = f["bytes"];
    else out.url = String(f["uri"] ?? "");
    if (typeof f["mimeType"] === "string") out.mediaType = f["mimeType"];
    if (typeof f["name"] === "string") out.filename = f["name"];
  } else {
    const data = p["data"] as Obj | undefined;
    if (metadata?.[DATA_PART_COMPAT_FLAG] === true && data && "value" in data) {
      out.data = data["value"];
      const { [DATA_PART_COMPAT_FLAG]: _f, ...rest } = metadata;
      if (Object.keys(rest).length) out.metadata = rest;
      return out;
    }
    out.data = data;
  }
  if (metadata) out.metadata = metadata;
  return out;
}

function messageFromWire(m: Obj, version: A2AVersion): A2AMessage {
  if (version === "1.0") return m as unknown as A2AMessage;
  const out: A2AMessage = {
    messageId: String(m["messageId"] ?? ""),
    role: m["role"] === "agent" ? "ROLE_AGENT" : "ROLE_USER",
    parts: ((m["parts"] as Obj[] | undefined) ?? []).map(partFromV03),
  };
  for (const k of ["contextId", "taskId", "metadata", "extensions", "referenceTaskIds"] as const) {
    if (m[k] !== undefined) (out as unknown as Obj)[k] = m[k];
  }
  return out;
}

function statusFromWire(s: Obj, version: A2AVersion): A2ATaskStatus {
  const state =
    version === "1.0"
      ? (s["state"] as A2ATaskState)
      : (FROM_V03_STATE[String(s["state"])] ?? ("TASK_STATE_UNSPECIFIED" as A2ATaskState));
  const out: A2ATaskStatus = { state };
  if (typeof s["timestamp"] === "string") out.timestamp = s["timestamp"];
  if (s["message"]) out.message = messageFromWire(s["message"] as Obj, version);
  return out;
}

function artifactFromWire(a: Obj, version: A2AVersion): A2AArtifact {
  if (version === "1.0") return a as unknown as A2AArtifact;
  const out: A2AArtifact = {
    artifactId: String(a["artifactId"] ?? ""),
    parts: ((a["parts"] as Obj[] | undefined) ?? []).map(partFromV03),
  };
  if (typeof a["name"] === "string") out.name = a["name"];
  if (typeof a["description"] === "string") out.description = a["description"];
  if (a["metadata"]) out.metadata = a["metadata"] as Obj;
  return out;
}

export function taskFromWire(t: Obj, version: A2AVersion): A2ATask {
  if (version === "1.0") return t as unknown as A2ATask;
  const out: A2ATask = {
    id: String(t["id"]),
    contextId: String(t["contextId"] ?? ""),
    status: statusFromWire((t["status"] ?? {}) as Obj, version),
  };
  if (Array.isArray(t["artifacts"])) out.artifacts = (t["artifacts"] as Obj[]).map((a) => artifactFromWire(a, version));
  if (Array.isArray(t["history"])) out.history = (t["history"] as Obj[]).map((m) => messageFromWire(m, version));
  if (t["metadata"]) out.metadata = t["metadata"] as Obj;
  return out;
}

/** `SendMessage` / `message/send` result → the task or the message. */
export function sendResultFromWire(r: Obj, version: A2AVersion): A2ATask | A2AMessage {
  if (version === "1.0") {
    if (r["task"]) return r["task"] as A2ATask;
    if (r["message"]) return r["message"] as A2AMessage;
    // Tolerate servers that answer with the bare object.
    if ("status" in r && "id" in r) return r as unknown as A2ATask;
    if ("parts" in r && "messageId" in r) return r as unknown as A2AMessage;
    throw new TypeError("the SendMessage result holds neither a task nor a message");
  }
  return r["kind"] === "message" ? messageFromWire(r, version) : taskFromWire(r, version);
}

const ends = (s: A2ATaskState) =>
  s === "TASK_STATE_COMPLETED" ||
  s === "TASK_STATE_CANCELED" ||
  s === "TASK_STATE_FAILED" ||
  s === "TASK_STATE_REJECTED" ||
  s === "TASK_STATE_INPUT_REQUIRED" ||
  s === "TASK_STATE_AUTH_REQUIRED";

export function streamEventFromWire(r: Obj, version: A2AVersion): A2AStreamEvent {
  if (version === "1.0") {
    if (r["task"]) return { kind: "task", task: r["task"] as A2ATask };
    if (r["message"]) return { kind: "message", message: r["message"] as A2AMessage };
    if (r["statusUpdate"]) {
      const e = r["statusUpdate"] as Obj;
      const status = e["status"] as A2ATaskStatus;
      return {
        kind: "status-update",
        taskId: String(e["taskId"]),
        contextId: String(e["contextId"]),
        status,
        final: ends(status.state),
      };
    }
    if (r["artifactUpdate"]) {
      const e = r["artifactUpdate"] as Obj;
      return {
        kind: "artifact-update",
        taskId: String(e["taskId"]),
        contextId: String(e["contextId"]),
        artifact: e["artifact"] as A2AArtifact,
        append: e["append"] === true,
        lastChunk: e["lastChunk"] === true,
      };
    }
    throw new TypeError(`unknown stream event: ${Object.keys(r).join(",")}`);
  }
  switch (r["kind"]) {
    case "task":
      return { kind: "task", task: taskFromWire(r, version) };
    case "message":
      return { kind: "message", message: messageFromWire(r, version) };
    case "status-update": {
      const status = statusFromWire((r["status"] ?? {}) as Obj, version);
      return {
        kind: "status-update",
        taskId: String(r["taskId"]),
        contextId: String(r["contextId"]),
        status,
        final: r["final"] === true || ends(status.state),
      };
    }
    case "artifact-update":
      return {
        kind: "artifact-update",
        taskId: String(r["taskId"]),
        contextId: String(r["contextId"]),
        artifact: artifactFromWire((r["artifact"] ?? {}) as Obj, version),
        append: r["append"] === true,
        lastChunk: r["lastChunk"] === true,
      };
    default:
      throw new TypeError(`unknown v0.3 stream event kind: ${String(r["kind"])}`);
  }
}
