/**
 * Two error families (as in the MCP SDK): `HexrError` never crosses the wire as-is; the edge
 * (HTTP, JSON-RPC, CLI) maps its stable `code` to a status, a JSON-RPC code or an exit code.
 */

/** How an error is presented to a caller; each edge maps a kind to its own vocabulary. */
export type ErrorKind =
  | "invalid_argument" // 400
  | "unauthenticated" // 401
  | "permission_denied" // 403
  | "not_found" // 404
  | "conflict" // 409
  | "payload_too_large" // 413
  | "unsupported_media_type" // 415
  | "failed_precondition" // 412/422
  | "unavailable" // 503
  | "upstream" // 502
  | "timeout" // 504
  | "internal"; // 500

export interface HexrErrorOptions {
  kind?: ErrorKind;
  /** Extra machine-readable fields that are safe to show to the caller. */
  details?: Record<string, unknown>;
  cause?: unknown;
}

export class HexrError extends Error {
  /** Stable dotted code, e.g. `tenant.not_found`. Part of the public contract. */
  readonly code: string;
  readonly kind: ErrorKind;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, options: HexrErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "HexrError";
    this.code = code;
    this.kind = options.kind ?? "internal";
    this.details = options.details;
  }
}

export function isHexrError(err: unknown): err is HexrError {
  return err instanceof HexrError;
}

export const httpStatusByKind: Record<ErrorKind, number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  failed_precondition: 422,
  upstream: 502,
  unavailable: 503,
  timeout: 504,
  internal: 500,
};

/** CLI exit codes, sysexits(3)-flavoured so scripts can tell failures apart. */
export const exitCodeByKind: Record<ErrorKind, number> = {
  invalid_argument: 2,
  unauthenticated: 77,
  permission_denied: 77,
  not_found: 4,
  conflict: 5,
  payload_too_large: 2,
  unsupported_media_type: 2,
  failed_precondition: 6,
  upstream: 69,
  unavailable: 69,
  timeout: 75,
  internal: 70,
};

/** The RFC 9457 problem document every HTTP error of Hexr is rendered as. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  requestId?: string;
  errors?: Array<{ path: string; message: string }>;
  [extra: string]: unknown;
}

export const PROBLEM_TYPE_BASE = "https://hexr.dev/problems/";
