import { SpanStatusCode, trace, type Tracer } from "@opentelemetry/api";
import { createHash, createSecretKey, type KeyObject } from "node:crypto";
import { ExchangeClient, type JwtSvidSource } from "./exchange-client.js";
import { freshUntil, L1Cache } from "./l1-cache.js";
import { ValkeyCache, type SharedCache } from "./l2-cache.js";
import { openEntry, sealEntry, TamperedEntry } from "./sealed-entry.js";
import { parseCredentials, type CacheKey, type CacheTier, type ToolCredentials } from "./types.js";

export const CACHE_LOOKUP_SPAN = "hexr.cache.lookup";
// The attribute names of the telemetry contract (sdk/src/telemetry/semconv.ts).
const ATTR_TOOL = "hexr.tool.service";
const ATTR_TIER = "hexr.cache.tier";
const ATTR_HIT = "hexr.cache.hit";

export interface ToolCredentialProviderOptions {
  /** The platform's URL (`HEXR_PLATFORM_URL`). */
  platformUrl: string;
  jwtSource: JwtSvidSource;
  /** Trust domain of the agent (or how to learn it); the exchange is addressed to `spiffe://<td>/system/credentials`. */
  trustDomain?: string | (() => Promise<string>);
  /** The L2 tier: a Valkey/Redis URL, a `SharedCache`, or absent for L1 only. */
  l2?: string | SharedCache;
  /** Disables the in-process tier (benchmarks of L2). */
  l1?: boolean;
  /** Prefix of L2 keys, to share one Valkey between installations. */
  keyPrefix?: string;
  warn?: (message: string) => void;
  clock?: () => number;
  tracer?: Tracer;
}

interface Identity {
  spiffeId: string;
  cacheKey: CacheKey;
  /** The AES key imported once; per-tool L2 key names and AADs computed once. */
  aesKey: KeyObject;
  slots: Map<string, { key: string; aad: string }>;
}

function credentialsAudience(td: string | (() => Promise<string>)): string | (() => Promise<string>) {
  const of = (t: string) => `spiffe://${t}/system/credentials`;
  return typeof td === "string" ? of(td) : async () => of(await td());
}

function identityOf(spiffeId: string, cacheKey: CacheKey): Identity {
  return { spiffeId, cacheKey, aesKey: createSecretKey(cacheKey.key), slots: new Map() };
}

/**
 * Credentials for an agent's tools: L1 (in-process) → L2 (Valkey, sealed per identity) → the
 * platform's exchange. Entries stop being served before the credentials expire, and concurrent
 * misses for a tool share one exchange.
 */
export class ToolCredentialProvider {
  private readonly l1 = new L1Cache();
  private readonly useL1: boolean;
  private readonly l2: SharedCache | undefined;
  private readonly ownsL2: boolean;
  private readonly exchangeClient: ExchangeClient;
  private readonly clock: () => number;
  private readonly tracer: Tracer;
  private readonly warn: (message: string) => void;
  private readonly keyPrefix: string;
  private readonly inflight = new Map<string, Promise<{ value: ToolCredentials; tier: CacheTier }>>();
  private identity: Identity | undefined;
  private identityLoading: Promise<Identity | undefined> | undefined;
  /** How many exchanges this provider made (tests and diagnostics). */
  exchanges = 0;

  constructor(opts: ToolCredentialProviderOptions) {
    this.clock = opts.clock ?? Date.now;
    this.tracer = opts.tracer ?? trace.getTracer("hexr");
    this.warn = opts.warn ?? ((m) => process.emitWarning(m, { code: "HEXR_CREDENTIALS" }));
    this.useL1 = opts.l1 ?? true;
    this.keyPrefix = opts.keyPrefix ?? "hexr:";
    this.ownsL2 = typeof opts.l2 === "string";
    this.l2 = typeof opts.l2 === "string" ? new ValkeyCache({ url: opts.l2, warn: this.warn }) : opts.l2;
    this.exchangeClient = new ExchangeClient({
      platformUrl: opts.platformUrl,
      jwtSource: opts.jwtSource,
      audience: credentialsAudience(opts.trustDomain ?? "hexr.local"),
      clock: this.clock,
    });
  }

  /** The credentials for `tool`, from the fastest tier that has fresh ones. */
  async get(tool: string): Promise<ToolCredentials> {
    const span = this.tracer.startSpan(CACHE_LOOKUP_SPAN, { attributes: { [ATTR_TOOL]: tool } });
    if (this.useL1) {
      const hit = this.l1.get(tool, this.clock());
      if (hit !== undefined) {
        span.setAttribute(ATTR_TIER, "L1");
        span.setAttribute(ATTR_HIT, true);
        span.end();
        return hit;
      }
    }
    try {
      let flight = this.inflight.get(tool);
      const joined = flight !== undefined;
      if (!flight) {
        flight = this.fill(tool).finally(() => this.inflight.delete(tool));
        this.inflight.set(tool, flight);
      }
      const { value, tier } = await flight;
      span.setAttribute(ATTR_TIER, tier);
      span.setAttribute(ATTR_HIT, tier !== "L3");
      if (joined) span.setAttribute("hexr.cache.single_flight_joined", true);
      return value;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as { code?: string }).code ?? "error" });
      throw err;
    } finally {
      span.end();
    }
  }

  /** Forgets a tool's cached credentials in both tiers (e.g. after the cloud refused them). */
  async invalidate(tool: string): Promise<void> {
    this.l1.delete(tool);
    if (this.l2 && this.identity) await this.l2.delete(this.slot(this.identity, tool).key);
  }

  async close(): Promise<void> {
    if (this.ownsL2) await this.l2?.close();
  }

  /** The L2 key name (no SPIFFE ID in clear) and the AAD binding an entry to that name, identity and tool. */
  private slot(id: Identity, tool: string): { key: string; aad: string } {
    let slot = id.slots.get(tool);
    if (!slot) {
      const who = createHash("sha256").update(id.spiffeId).digest("base64url").slice(0, 22);
      const key = `${this.keyPrefix}cred:${id.cacheKey.id}:${who}:${tool}`;
      slot = { key, aad: `hexr-l2|${key}|${id.spiffeId}|${tool}` };
      id.slots.set(tool, slot);
    }
    return slot;
  }

  /** The sealing key comes from the platform, once per process; without it L2 is skipped. */
  private async loadIdentity(): Promise<Identity | undefined> {
    if (this.identity) return this.identity;
    this.identityLoading ??= this.exchangeClient
      .cacheKey()
      .then(
        (r) => (this.identity = identityOf(r.spiffeId, r.cacheKey)),
        () => undefined,
      )
      .finally(() => (this.identityLoading = undefined));
    return this.identityLoading;
  }

  private async fill(tool: string): Promise<{ value: ToolCredentials; tier: CacheTier }> {
    const identity = this.l2 ? (this.identity ?? (await this.loadIdentity())) : undefined;
    if (this.l2 && identity) {
      const fromL2 = await this.readL2(identity, tool);
      if (fromL2) {
        if (this.useL1) this.l1.set(tool, fromL2.value, fromL2.freshUntil);
        return { value: fromL2.value, tier: "L2" };
      }
    }
    const issuedAt = this.clock();
    this.exchanges++;
    const result = await this.exchangeClient.exchange(tool);
    const known = this.identity;
    const id =
      known && known.spiffeId === result.spiffeId && known.cacheKey.key.equals(result.cacheKey.key)
        ? known
        : identityOf(result.spiffeId, result.cacheKey);
    this.identity = id;
    const until = freshUntil(result.credentials.expiresAt, issuedAt);
    if (this.useL1) this.l1.set(tool, result.credentials, until);
    if (this.l2) await this.writeL2(id, tool, result.credentials, until);
    return { value: result.credentials, tier: "L3" };
  }

  private async readL2(id: Identity, tool: string): Promise<{ value: ToolCredentials; freshUntil: number } | undefined> {
    const { key, aad } = this.slot(id, tool);
    const sealed = await this.l2!.get(key);
    if (!sealed) return undefined;
    try {
      const entry = JSON.parse(openEntry(id.aesKey, sealed, aad).toString("utf8")) as {
        freshUntil: number;
        credentials: unknown;
      };
      const value = parseCredentials(tool, entry.credentials);
      // Redis TTLs are not trusted for expiry: the sealed freshness bound is.
      if (!(entry.freshUntil > this.clock())) return undefined;
      return { value, freshUntil: entry.freshUntil };
    } catch (err) {
      const why =
        err instanceof TamperedEntry ? "failed authentication (tampered or sealed by another identity)" : "is malformed";
      this.warn(`hexr: ignoring the L2 cache entry for tool '${tool}': it ${why}; exchanging again`);
      await this.l2!.delete(key);
      return undefined;
    }
  }

  private async writeL2(id: Identity, tool: string, credentials: ToolCredentials, until: number): Promise<void> {
    const { key, aad } = this.slot(id, tool);
    const plaintext = Buffer.from(JSON.stringify({ freshUntil: until, credentials }), "utf8");
    await this.l2!.set(key, sealEntry(id.aesKey, plaintext, aad), until - this.clock());
  }
}
