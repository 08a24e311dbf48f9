import { Redis, type RedisOptions } from "iovalkey";

/** What the credential provider needs from a shared cache: opaque bytes with a TTL. */
export interface SharedCache {
  /** Resolves undefined on a miss and when the cache is unreachable (after one warning). */
  get(key: string): Promise<Buffer | undefined>;
  set(key: string, value: Buffer, ttlMs: number): Promise<void>;
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}

export interface ValkeyCacheOptions {
  /** `redis://` / `rediss://` / `valkey://` URL. */
  url: string;
  /** Called once when the cache becomes unreachable, and again only after it recovered and failed anew. */
  warn?: (message: string) => void;
  /** Bound on every command, so an unreachable cache costs at most this per lookup. */
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Extra iovalkey options (TLS, credentials). */
  redisOptions?: RedisOptions;
}

/** Removes the password from a URL before it appears in a message. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(invalid URL)";
  }
}

/**
 * The L2 tier on Valkey/Redis. It never fails a lookup: while the server is down, reads miss and
 * writes are dropped, commands fail fast (no offline queue) and a reconnect runs in the background.
 */
export class ValkeyCache implements SharedCache {
  private readonly client: Redis;
  private readonly warn: (message: string) => void;
  private readonly where: string;
  private readonly connecting: Promise<void>;
  private settled = false;
  private healthy = true;

  constructor({
    url,
    warn = defaultWarn,
    commandTimeoutMs = 250,
    connectTimeoutMs = 1000,
    redisOptions = {},
  }: ValkeyCacheOptions) {
    this.warn = warn;
    this.where = redactRedisUrl(url);
    this.client = new Redis(url.replace(/^valkey(s?):/, "redis$1:"), {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: connectTimeoutMs,
      commandTimeout: commandTimeoutMs,
      retryStrategy: (attempt) => Math.min(attempt * 200, 5000),
      ...redisOptions,
    });
    // Failures surface through the commands; without a listener the client would crash the process.
    this.client.on("error", () => undefined);
    this.connecting = this.client.connect().then(
      () => void (this.settled = true),
      () => void (this.settled = true),
    );
  }

  private failed(op: string, err: unknown): void {
    if (!this.healthy) return;
    this.healthy = false;
    this.warn(
      `hexr: L2 credential cache ${this.where} is unavailable (${op}: ${(err as Error).message}); using the in-process cache and the exchange until it is back`,
    );
  }

  async get(key: string): Promise<Buffer | undefined> {
    // Only the very first calls wait for the initial connection; later, a down server fails fast.
    if (!this.settled) await this.connecting;
    try {
      const v = await this.client.getBuffer(key);
      this.healthy = true;
      return v ?? undefined;
    } catch (err) {
      this.failed("GET", err);
      return undefined;
    }
  }

  async set(key: string, value: Buffer, ttlMs: number): Promise<void> {
    if (ttlMs <= 0) return;
    if (!this.settled) await this.connecting;
    try {
      await this.client.set(key, value, "PX", Math.ceil(ttlMs));
      this.healthy = true;
    } catch (err) {
      this.failed("SET", err);
    }
  }

  async delete(key: string): Promise<void> {
    if (!this.settled) await this.connecting;
    try {
      await this.client.del(key);
    } catch (err) {
      this.failed("DEL", err);
    }
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}

function defaultWarn(message: string): void {
  process.emitWarning(message, { code: "HEXR_L2_CACHE_UNAVAILABLE" });
}
