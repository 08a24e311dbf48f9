import { describeWorkload, HexrError, isSpiffeId, type ErrorKind } from "@hexr/core";
import { defaultIdentity } from "../identity/default.js";

/** Metadata of a secret, as `list` returns it: never a value. */
export interface SecretInfo {
  name: string;
  currentVersion: number;
  createdAt: string;
  updatedAt: string;
  deleted: boolean;
}

export interface SecretVersionInfo {
  name: string;
  version: number;
  encoding: "utf8" | "base64";
  sizeBytes: number;
  createdAt: string;
  createdBy: string;
  destroyed: boolean;
  destroyedAt: string | null;
}

export interface Secret {
  name: string;
  version: number;
  value: string;
  encoding: "utf8" | "base64";
  createdAt: string;
}

/** Returns a bearer token for the vault: a JWT-SVID with the vault's SPIFFE ID as audience (or an API key). */
export type TokenProvider = () => Promise<string>;

export interface VaultClientOptions {
  /** The platform, `HEXR_PLATFORM_URL` by default. */
  platformUrl?: string;
  /** `HEXR_TRUST_DOMAIN`, default `hexr.local`: JWT-SVIDs are addressed to `spiffe://<td>/system/vault`. */
  trustDomain?: string;
  /** Where the bearer comes from; by default a JWT-SVID from the SPIFFE Workload API (`SPIFFE_ENDPOINT_SOCKET`), or `HEXR_API_KEY`. */
  token?: TokenProvider;
  /** The tenant whose vault to use; by default the tenant of the agent's own SPIFFE ID (or `HEXR_TENANT`). */
  tenant?: string;
  /** Called when a request passed only because a policy is in `warn` mode; by default a process warning. */
  onPolicyWarning?: (warning: string, request: { method: string; name: string }) => void;
  fetch?: typeof fetch;
  timeoutMs?: number;
}

const KIND_BY_STATUS: Record<number, ErrorKind> = {
  400: "invalid_argument",
  401: "unauthenticated",
  403: "permission_denied",
  404: "not_found",
  409: "conflict",
  413: "payload_too_large",
  415: "unsupported_media_type",
  422: "failed_precondition",
  502: "upstream",
  503: "unavailable",
  504: "timeout",
};

/** `spiffe://<td>/system/vault`: the audience of a JWT-SVID for the vault. */
export function vaultAudience(trustDomain = "hexr.local"): string {
  return `spiffe://${trustDomain}/system/vault`;
}

/** The `sub` of a JWT, unverified: only to learn our own tenant from our own token. */
function subjectOf(token: string): string | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8")) as { sub?: unknown };
    return typeof claims.sub === "string" ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

const warned = new Set<string>();
function defaultWarning(warning: string): void {
  if (warned.has(warning)) return;
  warned.add(warning);
  process.emitWarning(`a vault request passed only because a policy is in warn mode: ${warning}`, { type: "HexrPolicyWarning" });
}

/**
 * The vault's client for agents: `get`, `put`, `list` by the agent's SPIFFE identity. The bearer is a
 * JWT-SVID addressed to the vault, fetched (and cached) through the Workload API unless a token
 * provider is given. Values are never cached or logged here.
 */
export class VaultClient {
  private readonly opts: VaultClientOptions;
  private readonly env: NodeJS.ProcessEnv;

  constructor(opts: VaultClientOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    this.opts = opts;
    this.env = env;
  }

  get audience(): string {
    return vaultAudience(this.opts.trustDomain ?? this.env["HEXR_TRUST_DOMAIN"] ?? "hexr.local");
  }

  private get platformUrl(): string {
    const url = this.opts.platformUrl ?? this.env["HEXR_PLATFORM_URL"];
    if (!url) {
      throw new HexrError(
        "vault.not_configured",
        "the vault client needs HEXR_PLATFORM_URL (set by 'hexr run' and 'hexr deploy')",
        {
          kind: "failed_precondition",
        },
      );
    }
    return url.replace(/\/+$/, "");
  }

  private async token(): Promise<string> {
    if (this.opts.token) return this.opts.token();
    const apiKey = this.env["HEXR_API_KEY"];
    if (apiKey) return apiKey;
    if (!this.env["SPIFFE_ENDPOINT_SOCKET"]) {
      throw new HexrError(
        "vault.not_configured",
        "the vault client needs an identity: run the agent with 'hexr run' (SPIFFE_ENDPOINT_SOCKET) or set HEXR_API_KEY",
        {
          kind: "failed_precondition",
        },
      );
    }
    return (await defaultIdentity().jwtSvid(this.audience)).token;
  }

  private tenantFor(token: string): string {
    const explicit = this.opts.tenant ?? this.env["HEXR_TENANT"];
    if (explicit) return explicit;
    const sub = subjectOf(token);
    if (sub && isSpiffeId(sub)) {
      const w = describeWorkload(sub);
      if (w.kind === "agent") return w.tenant;
    }
    throw new HexrError(
      "vault.not_configured",
      "cannot tell which tenant's vault to use: the identity is not an agent's; pass { tenant }",
      {
        kind: "failed_precondition",
      },
    );
  }

  private async call<T>(method: string, path: string, name: string, body?: unknown): Promise<T> {
    const token = await this.token();
    const url = `${this.platformUrl}/api/v1/tenants/${encodeURIComponent(this.tenantFor(token))}${path}`;
    let res: Response;
    try {
      res = await (this.opts.fetch ?? fetch)(url, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          accept: "application/json",
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 15_000),
      });
    } catch (err) {
      const e = err as Error & { cause?: Error };
      throw new HexrError(
        "vault.unreachable",
        `cannot reach the vault at ${this.platformUrl}: ${e.cause?.message ?? e.message}`,
        { kind: "unavailable" },
      );
    }
    const warning = res.headers.get("hexr-policy-warning");
    if (warning) (this.opts.onPolicyWarning ?? defaultWarning)(warning, { method, name });
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const p = (json ?? {}) as { code?: string; detail?: string };
      throw new HexrError(p.code ?? "vault.http_error", p.detail ?? `HTTP ${res.status} from the vault`, {
        kind: KIND_BY_STATUS[res.status] ?? "internal",
      });
    }
    return json as T;
  }

  /** The secret with its metadata (current version, or `version`). */
  getSecret(name: string, opts: { version?: number } = {}): Promise<Secret> {
    return this.call<Secret>(
      "GET",
      `/secrets/${encodeURIComponent(name)}${opts.version ? `?version=${opts.version}` : ""}`,
      name,
    );
  }

  /** The value as text (a binary secret comes back as base64; use `getBytes`). */
  async get(name: string, opts: { version?: number } = {}): Promise<string> {
    return (await this.getSecret(name, opts)).value;
  }

  async getBytes(name: string, opts: { version?: number } = {}): Promise<Buffer> {
    const s = await this.getSecret(name, opts);
    return s.encoding === "base64" ? Buffer.from(s.value, "base64") : Buffer.from(s.value, "utf8");
  }

  /** Writes a new version; bytes are stored as they are. Needs a policy that permits `vault:write`. */
  put(name: string, value: string | Uint8Array, opts: { expectedVersion?: number } = {}): Promise<SecretVersionInfo> {
    const body =
      typeof value === "string"
        ? { value }
        : { value: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64"), encoding: "base64" };
    return this.call<SecretVersionInfo>("PUT", `/secrets/${encodeURIComponent(name)}`, name, {
      ...body,
      ...(opts.expectedVersion !== undefined ? { expectedVersion: opts.expectedVersion } : {}),
    });
  }

  /** Names and versions under a prefix, never values. */
  async list(prefix = "", opts: { includeDeleted?: boolean } = {}): Promise<SecretInfo[]> {
    const items: SecretInfo[] = [];
    let after: string | null = null;
    do {
      const q = new URLSearchParams({ prefix, limit: "1000", includeDeleted: opts.includeDeleted ? "true" : "false" });
      if (after) q.set("after", after);
      const page: { items: SecretInfo[]; nextAfter: string | null } = await this.call("GET", `/secrets?${q}`, `${prefix}*`);
      items.push(...page.items);
      after = page.nextAfter;
    } while (after);
    return items;
  }

  async versions(name: string): Promise<SecretVersionInfo[]> {
    return (await this.call<{ items: SecretVersionInfo[] }>("GET", `/secrets/${encodeURIComponent(name)}/versions`, name)).items;
  }

  /** A tombstone: the secret stops being readable; a later `put` brings it back. */
  async delete(name: string): Promise<void> {
    await this.call("DELETE", `/secrets/${encodeURIComponent(name)}`, name);
  }

  /** Erases one version's ciphertext for good. */
  async destroy(name: string, version: number): Promise<void> {
    await this.call("DELETE", `/secrets/${encodeURIComponent(name)}/versions/${version}`, name);
  }
}

/** A token provider over anything that hands out JWT-SVIDs (the SDK's `Identity`, or a Workload API client). */
export function jwtSvidTokenProvider(
  source: { fetchJwtSvid(audience: string): Promise<{ token: string }> },
  audience: string,
): TokenProvider {
  return async () => (await source.fetchJwtSvid(audience)).token;
}
