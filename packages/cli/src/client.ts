import { HexrError, type ErrorKind, type ProblemDetails } from "@hexr/core";
import { ADMIN_KEY_FILE, PLATFORM_FILE, type PlatformInfo } from "@hexr/platform";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

export interface Target {
  url: string;
  apiKey: string | undefined;
  /** Where the target came from, for error messages. */
  via: string;
  dataDir: string;
}

export function dataDirFrom(opt: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(opt ?? env["HEXR_HOME"] ?? join(homedir(), ".hexr"));
}

/** `HEXR_PLATFORM_URL` + `HEXR_API_KEY` reach a remote platform; otherwise the local one through its data dir. */
export function resolveTarget(dataDirOpt: string | undefined, env: NodeJS.ProcessEnv = process.env): Target {
  const dataDir = dataDirFrom(dataDirOpt, env);
  const remote = env["HEXR_PLATFORM_URL"];
  if (remote)
    return { url: remote.replace(/\/+$/, ""), apiKey: env["HEXR_API_KEY"] || undefined, via: "HEXR_PLATFORM_URL", dataDir };
  const infoPath = join(dataDir, PLATFORM_FILE);
  if (!existsSync(infoPath)) {
    throw new HexrError(
      "cli.platform_not_running",
      `no platform is running for data dir ${dataDir}: start one with 'hexr up' (or set HEXR_PLATFORM_URL and HEXR_API_KEY)`,
      { kind: "unavailable" },
    );
  }
  const info = JSON.parse(readFileSync(infoPath, "utf8")) as PlatformInfo;
  const keyPath = join(dataDir, ADMIN_KEY_FILE);
  const apiKey = env["HEXR_API_KEY"] || (existsSync(keyPath) ? readFileSync(keyPath, "utf8").trim() : undefined);
  return { url: info.url, apiKey, via: infoPath, dataDir };
}

const KIND_BY_STATUS: Record<number, ErrorKind> = {
  400: "invalid_argument",
  401: "unauthenticated",
  403: "permission_denied",
  404: "not_found",
  405: "invalid_argument",
  409: "conflict",
  413: "payload_too_large",
  415: "unsupported_media_type",
  422: "failed_precondition",
  502: "upstream",
  503: "unavailable",
  504: "timeout",
};

/** A small client for the REST API: problem+json responses become HexrErrors with the server's code. */
export class ApiClient {
  constructor(readonly target: Target) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.target.url + path, {
        method,
        headers: {
          ...(this.target.apiKey ? { authorization: `Bearer ${this.target.apiKey}` } : {}),
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (err) {
      throw new HexrError(
        "cli.platform_unreachable",
        `cannot reach the platform at ${this.target.url} (from ${this.target.via}): ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}. Is 'hexr up' running?`,
        { kind: "unavailable" },
      );
    }
    const text = await res.text();
    if (!res.ok) {
      let problem: Partial<ProblemDetails> = {};
      try {
        problem = JSON.parse(text) as ProblemDetails;
      } catch {
        // not a problem document
      }
      throw new HexrError(problem.code ?? "cli.http_error", problem.detail ?? `HTTP ${res.status} from ${path}`, {
        kind: KIND_BY_STATUS[res.status] ?? "internal",
        details: problem.errors ? { errors: problem.errors } : undefined,
      });
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }
}
