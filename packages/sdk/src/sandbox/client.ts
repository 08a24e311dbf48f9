import { ExecResult, HexrError, SandboxStatus, type ErrorKind, type SandboxLanguage } from "@hexr/core";
import { defaultIdentity } from "../identity/default.js";
import { fetchTransport, nodeTransport, type TransportResponse } from "./transport.js";

/** A JWT-SVID for an audience: the SDK's Workload API client is one. */
export interface SandboxJwtSource {
  fetchJwtSvid(audience: string): Promise<{ token: string; expiresAt: number }>;
}

export interface SandboxExecOptions {
  /** `python` (default), `shell` or `javascript`. */
  language?: SandboxLanguage;
  /** Seconds before the execution is killed (exit code 124); default 30. */
  timeout?: number;
  /** Environment variables inside the sandbox (the agent's own environment is never passed). */
  envVars?: Record<string, string>;
  /** Packages installed into this execution only: pip requirements (python) or npm names (javascript). */
  packages?: string[];
  /** Cancels the execution (the sandbox is killed). */
  signal?: AbortSignal;
}

export interface SandboxClientOptions {
  /** The platform, `HEXR_PLATFORM_URL` by default. */
  platformUrl?: string;
  /** `HEXR_TRUST_DOMAIN`, default `hexr.local`: JWT-SVIDs are addressed to `spiffe://<td>/system/sandbox`. */
  trustDomain?: string;
  /** An API key (operators, scripts); `HEXR_API_KEY` by default. Takes precedence over the JWT-SVID. */
  apiKey?: string;
  /** Where JWT-SVIDs come from; by default the SPIFFE Workload API (`SPIFFE_ENDPOINT_SOCKET`). */
  jwtSource?: SandboxJwtSource;
  /** Execute on behalf of this tenant (its route); by default the caller's own tenant. */
  tenant?: string;
  /** A `fetch` to send requests with (tests, proxies); by default node:http over keep-alive connections. */
  fetch?: typeof fetch;
  clock?: () => number;
}

const KIND_BY_STATUS: Record<number, ErrorKind> = {
  400: "invalid_argument",
  401: "unauthenticated",
  403: "permission_denied",
  404: "not_found",
  413: "payload_too_large",
  422: "failed_precondition",
  502: "upstream",
  503: "unavailable",
  504: "timeout",
};

/** Room on top of the execution's own timeout for queueing, sandbox start-up and package installation. */
const SLACK_MS = 60_000;
const INSTALL_SLACK_MS = 600_000;

/** The sandbox service's client: `exec` runs code in a fresh isolated sandbox, `isEnabled` asks whether one is available. */
export class SandboxClient {
  private readonly env: NodeJS.ProcessEnv;
  private readonly opts: SandboxClientOptions;
  private svid: { token: string; refreshAt: number } | undefined;

  constructor(opts: SandboxClientOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    this.opts = opts;
    this.env = env;
  }

  private get platformUrl(): string {
    const url = this.opts.platformUrl ?? this.env["HEXR_PLATFORM_URL"];
    if (!url) {
      throw new HexrError(
        "sandbox.not_configured",
        "sandbox.exec() needs HEXR_PLATFORM_URL (set by 'hexr run' and 'hexr deploy')",
        {
          kind: "failed_precondition",
        },
      );
    }
    return url.replace(/\/+$/, "");
  }

  get audience(): string {
    return `spiffe://${this.opts.trustDomain ?? this.env["HEXR_TRUST_DOMAIN"] ?? "hexr.local"}/system/sandbox`;
  }

  /** The bearer: an API key, or a JWT-SVID reused until half its lifetime has passed. */
  private async bearer(): Promise<string> {
    const apiKey = this.opts.apiKey ?? this.env["HEXR_API_KEY"];
    if (apiKey) return apiKey;
    const now = (this.opts.clock ?? Date.now)();
    if (this.svid && this.svid.refreshAt > now) return this.svid.token;
    let source = this.opts.jwtSource;
    if (!source) {
      if (!this.env["SPIFFE_ENDPOINT_SOCKET"]) {
        throw new HexrError(
          "sandbox.not_configured",
          "sandbox.exec() needs an identity: run the agent with 'hexr run' (SPIFFE_ENDPOINT_SOCKET) or set HEXR_API_KEY",
          { kind: "failed_precondition" },
        );
      }
      source = defaultIdentity();
    }
    const s = await source.fetchJwtSvid(this.audience);
    this.svid = { token: s.token, refreshAt: now + (s.expiresAt - now) / 2 };
    return s.token;
  }

  private async call(method: string, path: string, body: unknown, timeoutMs: number, signal?: AbortSignal): Promise<unknown> {
    const url = this.platformUrl + path;
    const timeout = AbortSignal.timeout(timeoutMs);
    const send = this.opts.fetch ? fetchTransport(this.opts.fetch) : nodeTransport;
    let res: TransportResponse;
    try {
      res = await send(url, {
        method,
        headers: {
          authorization: `Bearer ${await this.bearer()}`,
          accept: "application/json",
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      if (err instanceof HexrError) throw err;
      if (signal?.aborted)
        throw new HexrError("sandbox.aborted", "the execution was cancelled", { kind: "unavailable", cause: err });
      const e = err as Error & { cause?: Error };
      const why = timeout.aborted ? `no answer within ${Math.round(timeoutMs / 1000)} s` : (e.cause?.message ?? e.message);
      throw new HexrError("sandbox.unreachable", `cannot reach the sandbox service at ${this.platformUrl}: ${why}`, {
        kind: "unavailable",
      });
    }
    const text = res.text;
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (res.status < 200 || res.status > 299) {
      const p = (json ?? {}) as { code?: string; detail?: string };
      throw new HexrError(p.code ?? "sandbox.http_error", p.detail ?? `HTTP ${res.status} from ${path}`, {
        kind: KIND_BY_STATUS[res.status] ?? "internal",
      });
    }
    return json;
  }

  /** Runs `code` in a fresh sandbox; a non-zero exit is a result (`ok: false`), not an error. */
  async exec(code: string, opts: SandboxExecOptions = {}): Promise<ExecResult> {
    const body = {
      code,
      ...(opts.language ? { language: opts.language } : {}),
      ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}),
      ...(opts.envVars ? { envVars: opts.envVars } : {}),
      ...(opts.packages?.length ? { packages: opts.packages } : {}),
    };
    const path = this.opts.tenant
      ? `/api/v1/tenants/${encodeURIComponent(this.opts.tenant)}/sandbox/execute`
      : "/api/v1/sandbox/execute";
    const waitMs = (opts.timeout ?? 30) * 1000 + (opts.packages?.length ? INSTALL_SLACK_MS : SLACK_MS);
    const json = await this.call("POST", path, body, waitMs, opts.signal);
    const parsed = ExecResult.safeParse(json);
    if (!parsed.success)
      throw new HexrError("sandbox.invalid_response", "the sandbox service answered with a malformed result", {
        kind: "upstream",
      });
    return parsed.data;
  }

  /** The service's status; throws when it cannot be reached. */
  async status(): Promise<SandboxStatus> {
    const parsed = SandboxStatus.safeParse(await this.call("GET", "/api/v1/sandbox/status", undefined, 15_000));
    if (!parsed.success)
      throw new HexrError("sandbox.invalid_response", "the sandbox service answered with a malformed status", {
        kind: "upstream",
      });
    return parsed.data;
  }

  /** False when the service is not configured, not reachable, refuses us, or has no working backend. Never throws. */
  async isEnabled(): Promise<boolean> {
    try {
      return (await this.status()).enabled;
    } catch {
      return false;
    }
  }
}
