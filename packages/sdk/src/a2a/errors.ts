import { HexrError, type ErrorKind } from "@hexr/core";

/** JSON-RPC / A2A error codes → stable Hexr codes and kinds. */
const BY_CODE: Record<number, [string, ErrorKind]> = {
  [-32700]: ["a2a.parse_error", "invalid_argument"],
  [-32600]: ["a2a.invalid_request", "invalid_argument"],
  [-32601]: ["a2a.method_not_found", "invalid_argument"],
  [-32602]: ["a2a.invalid_params", "invalid_argument"],
  [-32603]: ["a2a.internal_error", "upstream"],
  [-32001]: ["a2a.task_not_found", "not_found"],
  [-32002]: ["a2a.task_not_cancelable", "failed_precondition"],
  [-32003]: ["a2a.push_notifications_not_supported", "failed_precondition"],
  [-32004]: ["a2a.unsupported_operation", "failed_precondition"],
  [-32005]: ["a2a.content_type_not_supported", "invalid_argument"],
  [-32006]: ["a2a.invalid_agent_response", "upstream"],
  [-32007]: ["a2a.extended_card_not_configured", "failed_precondition"],
  [-32008]: ["a2a.extension_support_required", "failed_precondition"],
  [-32009]: ["a2a.version_not_supported", "failed_precondition"],
};

const BY_REASON: Record<string, [string, ErrorKind]> = {
  UNAUTHENTICATED: ["a2a.unauthenticated", "unauthenticated"],
  PERMISSION_DENIED: ["a2a.permission_denied", "permission_denied"],
  PAYLOAD_TOO_LARGE: ["a2a.payload_too_large", "payload_too_large"],
};

export interface RpcErrorBody {
  code: number;
  message: string;
  data?: unknown;
}

/** A JSON-RPC error from the agent as a HexrError; `details.rpcCode` keeps the protocol code. */
export function fromRpcError(agent: string, e: RpcErrorBody): HexrError {
  const reason = Array.isArray(e.data)
    ? (e.data as Array<{ reason?: unknown }>).map((d) => d?.reason).find((r): r is string => typeof r === "string")
    : undefined;
  const [code, kind] = (reason && BY_REASON[reason]) || BY_CODE[e.code] || ["a2a.error", "upstream"];
  return new HexrError(code, `${agent}: ${e.message}`, { kind, details: { rpcCode: e.code, ...(reason ? { reason } : {}) } });
}

const KIND_BY_STATUS: Record<number, ErrorKind> = {
  400: "invalid_argument",
  401: "unauthenticated",
  403: "permission_denied",
  404: "not_found",
  409: "conflict",
  413: "payload_too_large",
  415: "unsupported_media_type",
  502: "upstream",
  503: "unavailable",
  504: "timeout",
};

/** A non-JSON-RPC HTTP failure (a proxy or the platform ingress answering with problem+json). */
export function fromHttpError(agent: string, status: number, body: string): HexrError {
  let problem: { code?: string; detail?: string } = {};
  try {
    problem = JSON.parse(body) as typeof problem;
  } catch {
    // not JSON
  }
  return new HexrError(problem.code ?? "a2a.http_error", `${agent}: ${problem.detail ?? `HTTP ${status}`}`, {
    kind: KIND_BY_STATUS[status] ?? "upstream",
    details: { status },
  });
}

export function unreachable(agent: string, err: unknown): HexrError {
  const e = err as Error & { cause?: Error };
  return new HexrError("a2a.unreachable", `cannot reach agent ${agent}: ${e.cause?.message ?? e.message}`, {
    kind: "unavailable",
  });
}
