import { describeWorkload, HexrError, parseSpiffeId, TenantName } from "@hexr/core";
import { createHash, randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { z } from "zod";
import type { TenantScope } from "../../auth/principal.js";
import type { RegistrationEntry, Selector } from "../types.js";
import type { EntryFilter, EntryRow, EntryStore } from "./store.js";

const SELECTOR_TYPE = /^[a-z][a-z0-9_-]{0,31}$/;
// Printable: no control characters (they would corrupt logs and tables).
const SELECTOR_VALUE = /^[^\p{Cc}]{1,1024}$/u;
const MAX_SELECTORS = 32;

export const SelectorObject = z.strictObject({
  type: z.string().describe("selector type, e.g. unix, hexr, k8s"),
  value: z.string().describe("e.g. uid:1000, tenant:acme-corp"),
});

export const CreateEntryRequest = z.strictObject({
  spiffeId: z.string().min(1).max(2048),
  selectors: z
    .array(z.union([z.string().max(1100).describe("type:value, e.g. unix:uid:1000"), SelectorObject]))
    .min(1)
    .max(MAX_SELECTORS),
  tenant: TenantName.optional().describe("owner; inferred from agent SPIFFE IDs"),
  x509SvidTtlSeconds: z.number().int().min(1).optional(),
  jwtSvidTtlSeconds: z.number().int().min(1).optional(),
  expiresAt: z.iso.datetime({ offset: true }).optional().describe("RFC 3339; the entry stops matching after it"),
  createdBy: z.string().min(1).max(100).optional().describe("a label such as hexr-run; defaults to the caller"),
});
export type CreateEntryRequest = z.input<typeof CreateEntryRequest>;

/** An entry on the wire (REST, CLI). */
export const Entry = z.object({
  id: z.string(),
  spiffeId: z.string(),
  selectors: z.array(z.object({ type: z.string(), value: z.string() })),
  tenant: z.string().nullable(),
  x509SvidTtlSeconds: z.number(),
  jwtSvidTtlSeconds: z.number(),
  createdBy: z.string(),
  createdAt: z.string().describe("RFC 3339"),
  expiresAt: z.string().nullable().describe("RFC 3339"),
});
export type Entry = z.infer<typeof Entry>;

export const ENTRY_ID = /^[0-9a-f]{32}$/;

export function toEntryView(e: RegistrationEntry): Entry {
  return {
    id: e.id,
    spiffeId: e.spiffeId,
    selectors: e.selectors.map((s) => ({ ...s })),
    tenant: e.tenant,
    x509SvidTtlSeconds: e.x509SvidTtlSeconds,
    jwtSvidTtlSeconds: e.jwtSvidTtlSeconds,
    createdBy: e.createdBy,
    createdAt: new Date(e.createdAt).toISOString(),
    expiresAt: e.expiresAt === null ? null : new Date(e.expiresAt).toISOString(),
  };
}

const bad = (code: string, message: string, details?: Record<string, unknown>) =>
  new HexrError(code, message, { kind: "invalid_argument", ...(details ? { details } : {}) });

/** `type:value` → Selector; the value may itself contain colons (`unix:uid:1000`). */
export function parseSelector(input: string | Selector): Selector {
  let type: string;
  let value: string;
  if (typeof input === "string") {
    const i = input.indexOf(":");
    if (i <= 0)
      throw bad(
        "identity.invalid_selector",
        `selector ${JSON.stringify(input.slice(0, 80))} must be 'type:value' (e.g. unix:uid:1000)`,
      );
    type = input.slice(0, i);
    value = input.slice(i + 1);
  } else {
    type = input.type;
    value = input.value;
  }
  if (!SELECTOR_TYPE.test(type)) {
    throw bad(
      "identity.invalid_selector",
      `selector type ${JSON.stringify(type.slice(0, 40))} must be 1-32 lowercase letters, digits, '_' or '-', starting with a letter`,
    );
  }
  if (!SELECTOR_VALUE.test(value)) {
    throw bad("identity.invalid_selector", `selector value for '${type}' must be 1-1024 characters without control characters`);
  }
  return { type, value };
}

export const selectorKey = (s: Selector): string => `${s.type}:${s.value}`;

function toEntry(r: EntryRow): RegistrationEntry {
  return {
    id: r.id,
    spiffeId: r.spiffe_id,
    selectors: (JSON.parse(r.selectors) as string[]).map((k) => parseSelector(k)),
    tenant: r.tenant,
    x509SvidTtlSeconds: r.x509_svid_ttl,
    jwtSvidTtlSeconds: r.jwt_svid_ttl,
    createdBy: r.created_by,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
  };
}

/** Selector → entries, so that the Workload API matches a caller without a database round trip. */
class MatchIndex {
  private readonly bySelector = new Map<string, RegistrationEntry[]>();
  private readonly byId = new Map<string, RegistrationEntry>();

  replaceAll(entries: RegistrationEntry[]): void {
    this.bySelector.clear();
    this.byId.clear();
    for (const e of entries) this.add(e);
  }

  add(e: RegistrationEntry): void {
    if (this.byId.has(e.id)) return;
    this.byId.set(e.id, e);
    for (const s of e.selectors) {
      const k = selectorKey(s);
      const list = this.bySelector.get(k);
      if (list) list.push(e);
      else this.bySelector.set(k, [e]);
    }
  }

  remove(id: string): void {
    const e = this.byId.get(id);
    if (!e) return;
    this.byId.delete(id);
    for (const s of e.selectors) {
      const k = selectorKey(s);
      const rest = (this.bySelector.get(k) ?? []).filter((x) => x.id !== id);
      if (rest.length) this.bySelector.set(k, rest);
      else this.bySelector.delete(k);
    }
  }

  ids(): Set<string> {
    return new Set(this.byId.keys());
  }

  match(selectors: readonly Selector[], now: number): RegistrationEntry[] {
    const hits = new Map<RegistrationEntry, number>();
    for (const k of new Set(selectors.map(selectorKey))) {
      for (const e of this.bySelector.get(k) ?? []) hits.set(e, (hits.get(e) ?? 0) + 1);
    }
    const out: RegistrationEntry[] = [];
    for (const [e, n] of hits) if (n === e.selectors.length && (e.expiresAt === null || e.expiresAt > now)) out.push(e);
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
}

export interface EntryServiceOptions {
  store: EntryStore;
  trustDomain: string;
  defaults: { x509SvidTtlSeconds: number; jwtSvidTtlSeconds: number; maxSvidTtlSeconds: number };
  clock?: () => number;
  random?: (n: number) => Buffer;
  log?: Logger;
}

/**
 * Registration entries: which SPIFFE ID a workload gets when its attested selectors include all
 * of an entry's selectors (SPIRE's model). Persisted through the store; matched from memory.
 */
export class EntryService {
  private readonly store: EntryStore;
  private readonly trustDomain: string;
  private readonly defaults: EntryServiceOptions["defaults"];
  private readonly clock: () => number;
  private readonly random: (n: number) => Buffer;
  private readonly log: Logger | undefined;
  private readonly index = new MatchIndex();
  private loaded = false;
  private readonly listeners = new Set<() => void>();

  constructor(opts: EntryServiceOptions) {
    this.store = opts.store;
    this.trustDomain = opts.trustDomain;
    this.defaults = opts.defaults;
    this.clock = opts.clock ?? Date.now;
    this.random = opts.random ?? randomBytes;
    this.log = opts.log;
  }

  /** Loads the match index; call again to pick up entries written by other replicas. */
  async refresh(): Promise<void> {
    const live = (await this.store.allLive(this.clock())).map(toEntry);
    const before = this.index.ids();
    this.index.replaceAll(live);
    const wasLoaded = this.loaded;
    this.loaded = true;
    const changed = before.size !== live.length || live.some((e) => !before.has(e.id));
    if (wasLoaded && changed) this.emit();
  }

  get ready(): boolean {
    return this.loaded;
  }

  /** Validates and normalises a create request (no I/O). */
  prepare(input: CreateEntryRequest, createdBy: string): EntryRow {
    const parsed = CreateEntryRequest.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw bad("identity.invalid_entry", `${issue.path.join(".") || "entry"}: ${issue.message}`);
    }
    const req = parsed.data;
    const id = parseSpiffeId(req.spiffeId);
    if (id.trustDomain !== this.trustDomain) {
      throw bad("identity.foreign_trust_domain", `${req.spiffeId} is not in this platform's trust domain ${this.trustDomain}`);
    }
    if (id.path === "")
      throw bad(
        "identity.invalid_spiffe_id",
        "an entry's SPIFFE ID needs a path (the trust domain's own ID identifies no workload)",
      );
    let tenant: string | null = null;
    if (id.segments[0] === "agent") {
      const w = describeWorkload(id);
      if (w.kind !== "agent" || !w.tenant || [w.tenant, w.agent, w.role].some((s) => !TenantName.safeParse(s).success)) {
        throw bad(
          "identity.invalid_spiffe_id",
          "agent IDs have the form spiffe://<trust-domain>/agent/<tenant>/<agent>/<role>, each a DNS label",
        );
      }
      if (req.tenant !== undefined && req.tenant !== w.tenant) {
        throw bad(
          "identity.entry_tenant_mismatch",
          `tenant '${req.tenant}' does not match the tenant '${w.tenant}' of the SPIFFE ID`,
        );
      }
      tenant = w.tenant;
    } else if (req.tenant !== undefined) {
      throw bad("identity.entry_tenant_mismatch", "only agent IDs (spiffe://<td>/agent/<tenant>/...) can belong to a tenant");
    }
    const byKey = new Map<string, Selector>();
    for (const s of req.selectors) {
      const sel = parseSelector(s);
      byKey.set(selectorKey(sel), sel);
    }
    const keys = [...byKey.keys()].sort();
    const max = this.defaults.maxSvidTtlSeconds;
    const ttl = (v: number | undefined, fallback: number, field: string) => {
      if (v === undefined) return fallback;
      if (v > max) throw bad("identity.invalid_ttl", `${field} must be at most ${max} seconds (identity.maxSvidTtlSeconds)`);
      return v;
    };
    const now = this.clock();
    let expiresAt: number | null = null;
    if (req.expiresAt !== undefined) {
      expiresAt = Date.parse(req.expiresAt);
      if (expiresAt <= now) throw bad("identity.invalid_entry", "expiresAt must be in the future");
    }
    return {
      id: now.toString(16).padStart(12, "0").slice(-12) + this.random(10).toString("hex"),
      tenant,
      spiffe_id: id.toString(),
      selectors: JSON.stringify(keys),
      selectors_hash: createHash("sha256").update(keys.join("\n")).digest("hex"),
      x509_svid_ttl: ttl(req.x509SvidTtlSeconds, this.defaults.x509SvidTtlSeconds, "x509SvidTtlSeconds"),
      jwt_svid_ttl: ttl(req.jwtSvidTtlSeconds, this.defaults.jwtSvidTtlSeconds, "jwtSvidTtlSeconds"),
      created_by: req.createdBy ?? createdBy,
      created_at: now,
      expires_at: expiresAt,
    };
  }

  /** Creates an entry, or returns the identical one that exists (same SPIFFE ID and selectors). */
  async ensure(input: CreateEntryRequest, createdBy: string): Promise<{ entry: RegistrationEntry; created: boolean }> {
    const { row, created } = await this.store.insert(this.prepare(input, createdBy));
    const entry = toEntry(row);
    if (created) {
      this.index.add(entry);
      this.log?.info({ entry: entry.id, spiffeId: entry.spiffeId, tenant: entry.tenant }, "identity: registration entry created");
      this.emit();
    }
    return { entry, created };
  }

  /** Creates an entry; an identical one is a conflict (`identity.entry_exists`, with its id). */
  async create(input: CreateEntryRequest, createdBy: string): Promise<RegistrationEntry> {
    const { entry, created } = await this.ensure(input, createdBy);
    if (!created) {
      throw new HexrError("identity.entry_exists", `an identical entry exists already (${entry.id})`, {
        kind: "conflict",
        details: { id: entry.id },
      });
    }
    return entry;
  }

  async get(id: string): Promise<RegistrationEntry> {
    const row = ENTRY_ID.test(id) ? await this.store.byId(id) : undefined;
    if (!row) throw notFound(id);
    return toEntry(row);
  }

  async getForTenant(scope: TenantScope, id: string): Promise<RegistrationEntry> {
    const row = ENTRY_ID.test(id) ? await this.store.byIdForTenant(scope, id) : undefined;
    if (!row) throw notFound(id);
    return toEntry(row);
  }

  async list(filter: EntryFilter = {}, limit = 100, after?: string): Promise<RegistrationEntry[]> {
    return (await this.store.list(filter, limit, after)).map(toEntry);
  }

  async listForTenant(scope: TenantScope, limit = 100, after?: string): Promise<RegistrationEntry[]> {
    return (await this.store.listForTenant(scope, limit, after)).map(toEntry);
  }

  async delete(id: string): Promise<void> {
    if (!ENTRY_ID.test(id) || !(await this.store.delete(id))) throw notFound(id);
    this.index.remove(id);
    this.log?.info({ entry: id }, "identity: registration entry deleted");
    this.emit();
  }

  /** Deletes entries past their expiry; returns how many. */
  async purgeExpired(): Promise<number> {
    const n = await this.store.deleteExpired(this.clock());
    if (n > 0) await this.refresh();
    return n;
  }

  /**
   * The entries that apply to a caller with these (kernel-attested) selectors: those whose selectors
   * are all among them and that have not expired. Synchronous, from the in-memory index.
   */
  match(selectors: readonly Selector[]): RegistrationEntry[] {
    if (!this.loaded)
      throw new HexrError("identity.entries_not_ready", "registration entries are not loaded yet", { kind: "unavailable" });
    return this.index.match(selectors, this.clock());
  }

  /** Called after entries change (create, delete, expiry purge, refresh); returns an unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch (err) {
        this.log?.error({ err }, "identity: an entry change listener failed");
      }
    }
  }
}

function notFound(id: string): HexrError {
  return new HexrError("identity.entry_not_found", `registration entry '${id.slice(0, 64)}' does not exist`, {
    kind: "not_found",
  });
}
