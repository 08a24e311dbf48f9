import { HexrError } from "@hexr/core";
import { GrpcCode, WorkloadApiError } from "./errors.js";
import { validateJwtSvid as validateLocally, type JwtBundle, type JwtSvid, type ValidatedJwtSvid } from "./jwt.js";
import type { X509Bundle, X509Context, X509Svid } from "./svid.js";
import { WorkloadApiClient, type Watch, type WorkloadApiClientOptions } from "./workload-client.js";

export interface IdentityOptions extends WorkloadApiClientOptions {
  clock?: () => number;
  /** Reconnect backoff after a stream error (the spec: clients reconnect at once, then back off). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Fraction of a JWT-SVID's lifetime after which a cached one is replaced (default: half). */
  jwtRefreshFraction?: number;
  /** Called for every stream error; the identity keeps retrying unless the error is fatal. */
  onError?: (err: Error) => void;
}

interface CachedJwt {
  svid: JwtSvid;
  refreshAt: number;
}

/**
 * The workload's identity, kept current from the Workload API: the X.509-SVID and bundles (a watched
 * stream, so rotation is picked up without a call), JWT-SVIDs per audience cached until near
 * expiry, and local JWT-SVID validation against the watched JWT bundles.
 */
export class Identity {
  readonly client: WorkloadApiClient;
  private readonly clock: () => number;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly jwtRefreshFraction: number;
  private readonly onError: ((err: Error) => void) | undefined;
  private context: X509Context | undefined;
  private jwtBundles: Map<string, JwtBundle> | undefined;
  private x509Watch: Watch | undefined;
  private jwtWatch: Watch | undefined;
  private readonly jwtCache = new Map<string, CachedJwt>();
  private readonly jwtPending = new Map<string, Promise<JwtSvid>>();
  private readonly listeners = new Set<(svid: X509Svid, ctx: X509Context) => void>();
  private readonly waiters = new Set<{ kind: "x509" | "jwt"; resolve: () => void; reject: (e: Error) => void }>();
  private lastError: Error | undefined;
  private fatal: Error | undefined;
  private closed = false;
  private jwtWatchEnded = true;
  private timers = new Set<NodeJS.Timeout>();

  constructor(opts: IdentityOptions = {}) {
    this.client = new WorkloadApiClient(opts);
    this.clock = opts.clock ?? Date.now;
    this.backoff = { initialMs: opts.backoff?.initialMs ?? 200, maxMs: opts.backoff?.maxMs ?? 30_000 };
    this.jwtRefreshFraction = opts.jwtRefreshFraction ?? 0.5;
    this.onError = opts.onError;
    this.watchX509(0);
  }

  /** Resolves once the first X.509-SVID has arrived; rejects on a fatal error or after `timeoutMs`. */
  ready({ timeoutMs = 15_000 }: { timeoutMs?: number } = {}): Promise<void> {
    return this.wait("x509", timeoutMs);
  }

  /** The default X.509-SVID (the first one the Workload API lists). */
  get x509Svid(): X509Svid {
    const svid = this.context?.svids[0];
    if (!svid) throw this.notReady();
    return svid;
  }

  get x509Svids(): X509Svid[] {
    if (!this.context) throw this.notReady();
    return this.context.svids;
  }

  get spiffeId(): string {
    return this.x509Svid.spiffeId;
  }

  /** The X.509 bundle of a trust domain (own by default) from the latest stream message. */
  x509Bundle(trustDomain?: string): X509Bundle {
    if (!this.context) throw this.notReady();
    const td = trustDomain ?? this.trustDomain;
    const b = this.context.bundles.get(td);
    if (!b) throw new HexrError("identity.no_bundle", `no X.509 bundle for trust domain ${td}`, { kind: "not_found" });
    return b;
  }

  get trustDomain(): string {
    return new URL(this.x509Svid.spiffeId).host;
  }

  /** Called with the new default SVID on every update (rotation); returns an unsubscribe function. */
  onUpdate(listener: (svid: X509Svid, ctx: X509Context) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A JWT-SVID for the audience, from the cache until `jwtRefreshFraction` of its life has passed. */
  async jwtSvid(audience: string | readonly string[], opts: { spiffeId?: string } = {}): Promise<JwtSvid> {
    const aud = [...new Set(typeof audience === "string" ? [audience] : audience)];
    if (aud.length === 0 || aud.some((a) => !a)) {
      throw new HexrError("identity.invalid_audience", "a JWT-SVID needs at least one non-empty audience", {
        kind: "invalid_argument",
      });
    }
    const key = `${opts.spiffeId ?? ""}\n${[...aud].sort().join("\n")}`;
    const hit = this.jwtCache.get(key);
    if (hit && this.clock() < hit.refreshAt) return hit.svid;
    let pending = this.jwtPending.get(key);
    if (!pending) {
      pending = (async () => {
        const fetchedAt = this.clock();
        const svids = await this.client.fetchJwtSvids(aud, opts.spiffeId);
        const svid = svids[0];
        if (!svid) throw new WorkloadApiError(GrpcCode.PERMISSION_DENIED, "the Workload API returned no JWT-SVID");
        const life = Math.max(0, svid.expiresAt - (svid.issuedAt ?? fetchedAt));
        this.jwtCache.set(key, {
          svid,
          refreshAt: Math.min(svid.expiresAt, (svid.issuedAt ?? fetchedAt) + life * this.jwtRefreshFraction),
        });
        if (this.jwtCache.size > 256) this.jwtCache.delete(this.jwtCache.keys().next().value as string);
        return svid;
      })().finally(() => this.jwtPending.delete(key));
      this.jwtPending.set(key, pending);
    }
    return pending;
  }

  /** The shape the credentials layer consumes (`JwtSvidSource`). */
  async fetchJwtSvid(audience: string): Promise<{ token: string; spiffeId: string; expiresAt: number }> {
    const s = await this.jwtSvid(audience);
    return { token: s.token, spiffeId: s.spiffeId, expiresAt: s.expiresAt };
  }

  /** Validates a JWT-SVID locally against the JWT bundles (watched from the Workload API). */
  async validateJwtSvid(token: string, audience: string): Promise<ValidatedJwtSvid> {
    if (!this.jwtBundles) {
      this.watchJwt(0);
      await this.wait("jwt", 15_000);
    }
    return validateLocally(token, audience, this.jwtBundles!, { now: this.clock() });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    this.closed = true;
    this.x509Watch?.cancel();
    this.jwtWatch?.cancel();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const err = new HexrError("identity.closed", "the identity was closed", { kind: "unavailable" });
    for (const w of this.waiters) w.reject(err);
    this.waiters.clear();
    this.client.close();
  }

  private notReady(): HexrError {
    return new HexrError("identity.not_ready", "no X.509-SVID yet: await identity.ready() first", { kind: "unavailable" });
  }

  private wait(kind: "x509" | "jwt", timeoutMs: number): Promise<void> {
    if (kind === "x509" ? this.context : this.jwtBundles) return Promise.resolve();
    if (this.fatal) return Promise.reject(this.fatal);
    return new Promise<void>((resolve, reject) => {
      const w = {
        kind,
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
        reject: (e: Error) => {
          clearTimeout(t);
          reject(e);
        },
      };
      const t = setTimeout(() => {
        this.waiters.delete(w);
        const why = this.lastError ? `: ${this.lastError.message}` : "";
        const code = this.lastError instanceof WorkloadApiError ? this.lastError.code : "identity.timeout";
        reject(
          new HexrError(
            code,
            `no ${kind === "x509" ? "X.509-SVID" : "JWT bundle"} from the Workload API within ${timeoutMs} ms${why}`,
            {
              kind: this.lastError instanceof HexrError ? this.lastError.kind : "timeout",
            },
          ),
        );
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  private settle(kind: "x509" | "jwt", err?: Error): void {
    for (const w of [...this.waiters]) {
      if (w.kind !== kind && !err) continue;
      this.waiters.delete(w);
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  private watchX509(attempt: number): void {
    if (this.closed) return;
    let received = false;
    this.x509Watch = this.client.watchX509Context((ctx) => {
      received = true;
      this.context = ctx;
      this.lastError = undefined;
      this.settle("x509");
      for (const l of [...this.listeners]) {
        try {
          l(ctx.svids[0]!, ctx);
        } catch (err) {
          this.onError?.(err as Error);
        }
      }
    });
    this.x509Watch.done.then(
      () => this.retry(() => this.watchX509(1), 1),
      (err: Error) => this.failed(err, () => this.watchX509(received ? 0 : attempt + 1), received ? 0 : attempt),
    );
  }

  private watchJwt(attempt: number): void {
    if (this.closed || (this.jwtWatch && attempt === 0 && !this.jwtWatchEnded)) return;
    this.jwtWatchEnded = false;
    let received = false;
    this.jwtWatch = this.client.watchJwtBundles((bundles) => {
      received = true;
      this.jwtBundles = bundles;
      this.settle("jwt");
    });
    this.jwtWatch.done.then(
      () => {
        this.jwtWatchEnded = true;
        this.retry(() => this.watchJwt(1), 1);
      },
      (err: Error) => {
        this.jwtWatchEnded = true;
        this.failed(err, () => this.watchJwt(received ? 1 : attempt + 1), received ? 0 : attempt);
      },
    );
  }

  private failed(err: Error, again: () => void, attempt: number): void {
    if (this.closed) return;
    this.lastError = err;
    this.onError?.(err);
    if (err instanceof WorkloadApiError && !err.retryable) {
      this.fatal = err;
      this.settle("x509", err);
      this.settle("jwt", err);
      return;
    }
    this.retry(again, attempt);
  }

  private retry(again: () => void, attempt: number): void {
    if (this.closed) return;
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(attempt, 16));
    const delay = attempt === 0 ? 0 : base / 2 + Math.random() * (base / 2);
    const t = setTimeout(() => {
      this.timers.delete(t);
      again();
    }, delay);
    // Reconnecting alone must not keep the process alive.
    t.unref();
    this.timers.add(t);
  }
}

/** Starts watching the Workload API (`SPIFFE_ENDPOINT_SOCKET` by default). */
export function createIdentity(opts: IdentityOptions = {}): Identity {
  return new Identity(opts);
}
