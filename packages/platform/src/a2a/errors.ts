import { isHexrError } from "@hexr/core";

/** JSON-RPC 2.0 codes and the A2A-specific codes (A2A spec §5.4, §9.5). */
export const A2A_CODES = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** JSON-RPC "server error" range, used by Hexr for authentication and authorization failures. */
  SERVER_ERROR: -32000,
  TASK_NOT_FOUND: -32001,
  TASK_NOT_CANCELABLE: -32002,
  PUSH_NOTIFICATION_NOT_SUPPORTED: -32003,
  UNSUPPORTED_OPERATION: -32004,
  CONTENT_TYPE_NOT_SUPPORTED: -32005,
  INVALID_AGENT_RESPONSE: -32006,
  EXTENDED_CARD_NOT_CONFIGURED: -32007,
  EXTENSION_SUPPORT_REQUIRED: -32008,
  VERSION_NOT_SUPPORTED: -32009,
} as const;

/** `google.rpc.ErrorInfo` reasons, as the v1.0 binding puts them in `error.data`. */
const REASONS: Record<number, string> = {
  [A2A_CODES.PARSE_ERROR]: "PARSE_ERROR",
  [A2A_CODES.INVALID_REQUEST]: "INVALID_REQUEST",
  [A2A_CODES.METHOD_NOT_FOUND]: "METHOD_NOT_FOUND",
  [A2A_CODES.INVALID_PARAMS]: "INVALID_PARAMS",
  [A2A_CODES.INTERNAL_ERROR]: "INTERNAL_ERROR",
  [A2A_CODES.TASK_NOT_FOUND]: "TASK_NOT_FOUND",
  [A2A_CODES.TASK_NOT_CANCELABLE]: "TASK_NOT_CANCELABLE",
  [A2A_CODES.PUSH_NOTIFICATION_NOT_SUPPORTED]: "PUSH_NOTIFICATION_NOT_SUPPORTED",
  [A2A_CODES.UNSUPPORTED_OPERATION]: "UNSUPPORTED_OPERATION",
  [A2A_CODES.CONTENT_TYPE_NOT_SUPPORTED]: "CONTENT_TYPE_NOT_SUPPORTED",
  [A2A_CODES.INVALID_AGENT_RESPONSE]: "INVALID_AGENT_RESPONSE",
  [A2A_CODES.EXTENDED_CARD_NOT_CONFIGURED]: "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
  [A2A_CODES.EXTENSION_SUPPORT_REQUIRED]: "EXTENSION_SUPPORT_REQUIRED",
  [A2A_CODES.VERSION_NOT_SUPPORTED]: "VERSION_NOT_SUPPORTED",
};

export const ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo";
export const BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest";

export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

/**
 * A protocol error: it crosses the wire as a JSON-RPC error object. `httpStatus` is what the HTTP
 * binding answers with (200 for JSON-RPC-level errors, as the binding requires; 401/403/413 where the
 * HTTP layer itself refuses the request).
 */
export class A2AError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly metadata: Record<string, string> | undefined;
  readonly fieldViolations: Array<{ field: string; description: string }> | undefined;
  readonly httpStatus: number;

  constructor(
    code: number,
    message: string,
    opts: {
      reason?: string;
      metadata?: Record<string, string>;
      fieldViolations?: Array<{ field: string; description: string }>;
      httpStatus?: number;
    } = {},
  ) {
    super(message);
    this.name = "A2AError";
    this.code = code;
    this.reason = opts.reason ?? REASONS[code] ?? "SERVER_ERROR";
    this.metadata = opts.metadata;
    this.fieldViolations = opts.fieldViolations;
    this.httpStatus = opts.httpStatus ?? 200;
  }

  toJsonRpc(): JsonRpcErrorObject {
    const data: unknown[] = [
      {
        "@type": ERROR_INFO_TYPE,
        reason: this.reason,
        domain: this.code === A2A_CODES.SERVER_ERROR ? "hexr.dev" : "a2a-protocol.org",
        ...(this.metadata ? { metadata: this.metadata } : {}),
      },
    ];
    if (this.fieldViolations?.length) data.push({ "@type": BAD_REQUEST_TYPE, fieldViolations: this.fieldViolations });
    return { code: this.code, message: this.message, data };
  }
}

export const parseError = (detail: string) => new A2AError(A2A_CODES.PARSE_ERROR, `Invalid JSON payload: ${detail}`);
export const invalidRequest = (detail: string) => new A2AError(A2A_CODES.INVALID_REQUEST, `Invalid JSON-RPC request: ${detail}`);
export const methodNotFound = (method: string, version: string) =>
  new A2AError(A2A_CODES.METHOD_NOT_FOUND, `Method not found: '${method}' is not an A2A ${version} method`, {
    metadata: { method, version },
  });
export const invalidParams = (detail: string, fieldViolations?: Array<{ field: string; description: string }>) =>
  new A2AError(A2A_CODES.INVALID_PARAMS, `Invalid parameters: ${detail}`, fieldViolations ? { fieldViolations } : {});
export const taskNotFound = (id: string) =>
  new A2AError(A2A_CODES.TASK_NOT_FOUND, `Task not found: ${id}`, { metadata: { taskId: id } });
export const taskNotCancelable = (id: string, state: string) =>
  new A2AError(A2A_CODES.TASK_NOT_CANCELABLE, `Task cannot be canceled: ${id} is already in state ${state}`, {
    metadata: { taskId: id, state },
  });
export const pushNotSupported = () =>
  new A2AError(A2A_CODES.PUSH_NOTIFICATION_NOT_SUPPORTED, "Push notifications are not supported by this agent");
export const unsupportedOperation = (detail: string) =>
  new A2AError(A2A_CODES.UNSUPPORTED_OPERATION, `This operation is not supported: ${detail}`);
export const versionNotSupported = (version: string) =>
  new A2AError(A2A_CODES.VERSION_NOT_SUPPORTED, `A2A protocol version '${version}' is not supported; supported: 0.3, 1.0`, {
    metadata: { requested: version, supported: "0.3,1.0" },
    httpStatus: 200,
  });
export const extendedCardNotConfigured = () =>
  new A2AError(A2A_CODES.EXTENDED_CARD_NOT_CONFIGURED, "This agent has no extended agent card");
export const internalError = () =>
  new A2AError(A2A_CODES.INTERNAL_ERROR, "Internal error; the agent's log has the details", { httpStatus: 500 });
export const payloadTooLarge = (limit: number) =>
  new A2AError(A2A_CODES.INVALID_REQUEST, `Request payload too large: the limit is ${limit} bytes`, {
    reason: "PAYLOAD_TOO_LARGE",
    metadata: { limit: String(limit) },
    httpStatus: 413,
  });
export const unauthenticated = (detail = "missing or invalid credentials") =>
  new A2AError(A2A_CODES.SERVER_ERROR, `Unauthenticated: ${detail}`, { reason: "UNAUTHENTICATED", httpStatus: 401 });
export const permissionDenied = (detail: string) =>
  new A2AError(A2A_CODES.SERVER_ERROR, `Permission denied: ${detail}`, { reason: "PERMISSION_DENIED", httpStatus: 403 });

/**
 * Maps anything thrown inside the A2A server to a protocol error. HexrErrors keep their message
 * (they are written for callers) unless internal; everything else becomes a bare -32603.
 */
export function toA2AError(err: unknown): A2AError {
  if (err instanceof A2AError) return err;
  if (isHexrError(err)) {
    switch (err.kind) {
      case "invalid_argument":
        return invalidParams(err.message);
      case "not_found":
        return new A2AError(A2A_CODES.TASK_NOT_FOUND, err.message);
      case "unauthenticated":
        return unauthenticated(err.message);
      case "permission_denied":
        return permissionDenied(err.message);
      case "payload_too_large":
        return new A2AError(A2A_CODES.INVALID_REQUEST, err.message, { reason: "PAYLOAD_TOO_LARGE", httpStatus: 413 });
      case "failed_precondition":
      case "conflict":
        return unsupportedOperation(err.message);
      case "unavailable":
      case "upstream":
      case "timeout":
        return new A2AError(A2A_CODES.INTERNAL_ERROR, err.message, { reason: "UNAVAILABLE", httpStatus: 503 });
      default:
        return internalError();
    }
  }
  return internalError();
}
