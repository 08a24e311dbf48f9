import { HexrError, TenantName } from "@hexr/core";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import type { Authenticator } from "../auth/authenticator.js";
import type { Principal } from "../auth/principal.js";
import type { TenantService } from "../tenants/service.js";
import type { ApiKeyRow, ApiKeyStore } from "./store.js";

export const ApiKey = z.object({
  id: z.string(),
  name: z.string(),
  scope: z.enum(["admin", "tenant"]),
  tenant: z.string().nullable(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});
export type ApiKey = z.infer<typeof ApiKey>;

export const CreateApiKeyRequest = z
  .strictObject({
    name: z.string().min(1).max(100).default("unnamed"),
    scope: z.enum(["admin", "tenant"]),
    tenant: TenantName.optional(),
    expiresInSeconds: z
      .number()
      .int()
      .min(60)
      .max(10 * 365 * 86400)
      .optional(),
  })
  .superRefine((v, ctx) => {
    if (v.scope === "tenant" && !v.tenant)
      ctx.addIssue({ code: "custom", path: ["tenant"], message: "required when scope is 'tenant'" });
    if (v.scope === "admin" && v.tenant)
      ctx.addIssue({ code: "custom", path: ["tenant"], message: "must be absent when scope is 'admin'" });
  });
export type CreateApiKeyRequest = z.input<typeof CreateApiKeyRequest>;

/** The only time the secret is ever returned. */
export const CreatedApiKey = ApiKey.extend({ key: z.string().describe("the API key; shown once, store it now") });
export type CreatedApiKey = z.infer<typeof CreatedApiKey>;

const KEY_FORMAT = /^hexr_([a-z0-9]{16})_([A-Za-z0-9_-]{43})$/;
const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
const TOUCH_INTERVAL_MS = 60_000;

function newId(): string {
  const bytes = randomBytes(16);
  let id = "";
  for (const b of bytes) id += ID_ALPHABET[b % ID_ALPHABET.length];
  return id;
}

function hashSecret(salt: Buffer, secret: string): Buffer {
  return createHash("sha256").update(salt).update(secret).digest();
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function toApiKey(r: ApiKeyRow): ApiKey {
  return {
    id: r.id,
    name: r.name,
    scope: r.scope,
    tenant: r.tenant,
    createdAt: new Date(r.created_at).toISOString(),
    expiresAt: iso(r.expires_at),
    lastUsedAt: iso(r.last_used_at),
    revokedAt: iso(r.revoked_at),
  };
}

export interface ApiKeyServiceOptions {
  store: ApiKeyStore;
  tenants: TenantService;
  clock?: () => number;
}

/**
 * API keys: `hexr_<id>_<secret>`. Only a salted SHA-256 of the 256-bit secret is stored (a slow KDF
 * adds nothing for random secrets of that size), and it is compared in constant time.
 */
export class ApiKeyService {
  private readonly store: ApiKeyStore;
  private readonly tenants: TenantService;
  private readonly clock: () => number;
  private readonly lastTouched = new Map<string, number>();

  constructor({ store, tenants, clock = Date.now }: ApiKeyServiceOptions) {
    this.store = store;
    this.tenants = tenants;
    this.clock = clock;
  }

  async create(input: CreateApiKeyRequest, by: Principal): Promise<CreatedApiKey> {
    const req = CreateApiKeyRequest.parse(input);
    if (by.kind !== "admin" && !(by.kind === "tenant-key" && req.scope === "tenant" && req.tenant === by.tenant)) {
      throw new HexrError("auth.forbidden", "only admin keys may create admin keys or keys of other tenants", {
        kind: "permission_denied",
      });
    }
    if (req.tenant) await this.tenants.get(req.tenant);
    const id = newId();
    const secret = randomBytes(32).toString("base64url");
    const salt = randomBytes(16);
    const now = this.clock();
    const row: ApiKeyRow = {
      id,
      name: req.name,
      scope: req.scope,
      tenant: req.tenant ?? null,
      salt: salt.toString("base64"),
      hash: hashSecret(salt, secret).toString("base64"),
      created_at: now,
      expires_at: req.expiresInSeconds ? now + req.expiresInSeconds * 1000 : null,
      last_used_at: null,
      revoked_at: null,
    };
    await this.store.insert(row);
    return { ...toApiKey(row), key: `hexr_${id}_${secret}` };
  }

  async list(by: Principal, includeRevoked = false): Promise<ApiKey[]> {
    if (by.kind === "admin") return (await this.store.list(undefined, includeRevoked)).map(toApiKey);
    if (by.kind === "tenant-key") return (await this.store.list(by.tenant, includeRevoked)).map(toApiKey);
    throw new HexrError("auth.forbidden", "listing API keys needs an API key", { kind: "permission_denied" });
  }

  async revoke(id: string, by: Principal): Promise<void> {
    const row = await this.store.byId(id);
    const visible = row && (by.kind === "admin" || (by.kind === "tenant-key" && row.tenant === by.tenant));
    if (!row || !visible) throw new HexrError("apikey.not_found", `API key '${id}' does not exist`, { kind: "not_found" });
    if (row.revoked_at !== null)
      throw new HexrError("apikey.already_revoked", `API key '${id}' is already revoked`, { kind: "conflict" });
    await this.store.revoke(id, this.clock());
  }

  /** Returns the principal for a valid, unexpired, unrevoked key, or null. */
  async verify(key: string): Promise<Principal | null> {
    const m = KEY_FORMAT.exec(key);
    if (!m) return null;
    const row = await this.store.byId(m[1]!);
    if (!row || row.revoked_at !== null) return null;
    const now = this.clock();
    if (row.expires_at !== null && row.expires_at <= now) return null;
    const expected = Buffer.from(row.hash, "base64");
    const actual = hashSecret(Buffer.from(row.salt, "base64"), m[2]!);
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return null;
    if (now - (this.lastTouched.get(row.id) ?? 0) > TOUCH_INTERVAL_MS) {
      this.lastTouched.set(row.id, now);
      // Usage tracking must not fail or slow the request.
      this.store.touch(row.id, now).catch(() => undefined);
    }
    return row.scope === "admin" ? { kind: "admin", keyId: row.id } : { kind: "tenant-key", keyId: row.id, tenant: row.tenant! };
  }

  /** Makes sure the admin key file holds a working admin key; creates one on first start. */
  async ensureAdminKey(existing: string | undefined): Promise<{ key: string; created: boolean }> {
    if (existing) {
      const p = await this.verify(existing.trim());
      if (p?.kind === "admin") return { key: existing.trim(), created: false };
    }
    const created = await this.create({ name: "bootstrap-admin", scope: "admin" }, { kind: "admin", keyId: "bootstrap" });
    return { key: created.key, created: true };
  }

  authenticator(): Authenticator {
    return {
      name: "api-key",
      authenticate: async (_req, bearer) => {
        if (!bearer || !bearer.startsWith("hexr_")) return null;
        const p = await this.verify(bearer);
        if (!p) {
          throw new HexrError(
            "auth.invalid_api_key",
            "the API key is unknown, revoked or expired; create one with 'hexr keys create'",
            {
              kind: "unauthenticated",
            },
          );
        }
        return p;
      },
    };
  }
}
