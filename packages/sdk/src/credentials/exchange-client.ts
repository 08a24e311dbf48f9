import { HexrError, type ErrorKind } from "@hexr/core";
import { parseCredentials, type CacheKey, type ToolCredentials } from "./types.js";

/** A JWT-SVID for an audience; the SDK's Workload API client is one, a test may use the authority. */
export interface JwtSvidSource {
  fetchJwtSvid(audience: string): Promise<{ token: string; spiffeId: string; expiresAt: number }>;
}

export interface ExchangeResult {
  credentials: ToolCredentials;
  spiffeId: string;
  cacheKey: CacheKey;
}

export interface ExchangeClientOptions {
  platformUrl: string;
  jwtSource: JwtSvidSource;
  /** The credential injector's SPIFFE ID, `spiffe://<td>/system/credentials` (resolved once, on first use). */
  audience: string | (() => Promise<string>);
  clock?: () => number;
  timeoutMs?: number;
}

const KIND_BY_STATUS: Record<number, ErrorKind> = {
  400: "invalid_argument",
  401: "unauthenticated",
  403: "permission_denied",
  404: "not_found",
  409: "conflict",
  422: "failed_precondition",
  502: "upstream",
  503: "unavailable",
  504: "timeout",
};

function parseCacheKey(raw: unknown): CacheKey {
  const o = (raw ?? {}) as { id?: unknown; key?: unknown };
  const key = typeof o.key === "string" ? Buffer.from(o.key, "base64") : Buffer.alloc(0);
  if (typeof o.id !== "string" || key.length !== 32) {
    throw new HexrError("credentials.invalid_response", "the platform's cache key is malformed", { kind: "upstream" });
  }
  return { id: o.id, key };
}

/** Calls the platform's credential injector with the agent's JWT-SVID as bearer. */
export class ExchangeClient {
  private readonly opts: ExchangeClientOptions;
  private readonly clock: () => number;
  private svid: { token: string; refreshAt: number } | undefined;
  private audience: Promise<string> | undefined;

  constructor(opts: ExchangeClientOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? Date.now;
  }

  /** Reuses a JWT-SVID until half its lifetime has passed, as SPIRE's agents do. */
  private async bearer(): Promise<string> {
    const now = this.clock();
    if (this.svid && this.svid.refreshAt > now) return this.svid.token;
    const aud = this.opts.audience;
    this.audience ??= typeof aud === "string" ? Promise.resolve(aud) : aud();
    const s = await this.opts.jwtSource.fetchJwtSvid(
      await this.audience.catch((err: unknown) => {
        this.audience = undefined;
        throw err;
      }),
    );
    this.svid = { token: s.token, refreshAt: now + (s.expiresAt - now) / 2 };
    return s.token;
  }

  private async post(path: string, body: unknown): Promise<Record<string, unknown>> {
    const url = this.opts.platformUrl.replace(/\/+$/, "") + path;
    let res: Response;
    try {
      res = await fetch(url, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await this.bearer()}`,
          "content-type": "application/json",
          accept: "application/json",
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
      });
    } catch (err) {
      if (err instanceof HexrError) throw err;
      const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
      throw new HexrError(
        "credentials.platform_unreachable",
        `cannot reach the Hexr platform at ${this.opts.platformUrl}: ${cause}`,
        {
          kind: "unavailable",
        },
      );
    }
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // handled below
    }
    if (!res.ok) {
      if (res.status === 401) this.svid = undefined;
      const code = typeof json["code"] === "string" ? json["code"] : "credentials.exchange_failed";
      const detail = typeof json["detail"] === "string" ? json["detail"] : `HTTP ${res.status} from ${path}`;
      const details: Record<string, unknown> = {};
      for (const k of ["provider", "cloudCode", "cloudMessage", "tool", "requestId"])
        if (json[k] !== undefined) details[k] = json[k];
      throw new HexrError(code, detail, { kind: KIND_BY_STATUS[res.status] ?? "internal", details });
    }
    return json;
  }

  async exchange(tool: string): Promise<ExchangeResult> {
    const json = await this.post("/api/v1/exchange", { tool });
    if (json["tool"] !== tool || typeof json["spiffeId"] !== "string") {
      throw new HexrError("credentials.invalid_response", "the platform answered for another tool or without an identity", {
        kind: "upstream",
      });
    }
    return {
      credentials: parseCredentials(tool, json["credentials"]),
      spiffeId: json["spiffeId"],
      cacheKey: parseCacheKey(json["cacheKey"]),
    };
  }

  async cacheKey(): Promise<{ spiffeId: string; cacheKey: CacheKey }> {
    const json = await this.post("/api/v1/exchange/cache-key", {});
    if (typeof json["spiffeId"] !== "string")
      throw new HexrError("credentials.invalid_response", "cache key without identity", { kind: "upstream" });
    return { spiffeId: json["spiffeId"], cacheKey: parseCacheKey(json["cacheKey"]) };
  }
}
