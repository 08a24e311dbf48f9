import { HexrError, PROBLEM_TYPE_BASE, httpStatusByKind, isHexrError, type ProblemDetails } from "@hexr/core";
import type { ServerResponse } from "node:http";
import type { ZodError } from "zod";

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** Renders any error as an RFC 9457 problem. Unknown errors become a bare 500: no message, no stack. */
export function toProblem(err: unknown, requestId?: string): ProblemDetails {
  if (isHexrError(err)) {
    const status = httpStatusByKind[err.kind];
    const problem: ProblemDetails = {
      type: PROBLEM_TYPE_BASE + err.code.replace(/\./g, "/"),
      title: TITLES[status] ?? "Error",
      status,
      detail: err.kind === "internal" ? "internal error" : err.message,
      code: err.code,
      ...(requestId ? { requestId } : {}),
    };
    if (err.details && err.kind !== "internal") Object.assign(problem, err.details);
    return problem;
  }
  return {
    type: PROBLEM_TYPE_BASE + "internal",
    title: TITLES[500]!,
    status: 500,
    detail: "internal error; the server log has the details under this request id",
    code: "internal",
    ...(requestId ? { requestId } : {}),
  };
}

export function sendProblem(res: ServerResponse, problem: ProblemDetails, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(problem);
  res.writeHead(problem.status, {
    "content-type": "application/problem+json",
    "content-length": Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

/** `a.b[2].c: message` lines for a zod error, and the same as a structured list. */
export function validationError(where: "body" | "query" | "params", err: ZodError): HexrError {
  const errors = err.issues.map((i) => ({
    path: formatPath(i.path as PropertyKey[]),
    message: i.code === "unrecognized_keys" ? `unknown field(s): ${(i as { keys: string[] }).keys.join(", ")}` : i.message,
  }));
  const summary = errors.map((e) => (e.path ? `${e.path}: ${e.message}` : e.message)).join("; ");
  return new HexrError("request.validation_failed", `invalid ${where}: ${summary}`, {
    kind: "invalid_argument",
    details: { errors },
  });
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}
