import { HexrError } from "@hexr/core";
import { randomBytes } from "node:crypto";
import type { TenantScope } from "../auth/principal.js";
import { KEY_BYTES, masterKeyId, unwrapTenantKey, wrapTenantKey } from "./envelope.js";
import type { TenantKeyRow, VaultStore } from "./store.js";

export interface KeyringOptions {
  store: VaultStore;
  masterKey: Buffer;
  /** Master keys that may still wrap some tenant keys (after an operator rotated the master key). */
  previousMasterKeys?: Buffer[];
  clock?: () => number;
  random?: (n: number) => Buffer;
}

/** Per-tenant keys, created on first use, wrapped by the master key, cached unwrapped in memory. */
export class TenantKeyring {
  private readonly store: VaultStore;
  private masterKey: Buffer;
  private readonly previous = new Map<string, Buffer>();
  private readonly clock: () => number;
  private readonly random: (n: number) => Buffer;
  private readonly cache = new Map<string, Buffer>();

  constructor({ store, masterKey, previousMasterKeys = [], clock = Date.now, random = randomBytes }: KeyringOptions) {
    if (masterKey.length !== KEY_BYTES)
      throw new HexrError("keys.invalid_master_key", "the master key must be 32 bytes", { kind: "invalid_argument" });
    this.store = store;
    this.masterKey = masterKey;
    for (const k of previousMasterKeys) this.previous.set(masterKeyId(k), k);
    this.clock = clock;
    this.random = random;
  }

  get currentMasterKeyId(): string {
    return masterKeyId(this.masterKey);
  }

  /** The tenant's key, creating it on first use. */
  async key(scope: TenantScope): Promise<Buffer> {
    const cached = this.cache.get(scope.tenantId);
    if (cached) return cached;
    let row = await this.store.tenantKey(scope);
    if (!row) {
      const fresh = this.random(KEY_BYTES);
      const wrapped = wrapTenantKey(this.masterKey, scope.tenantId, fresh).toString("base64");
      if (await this.store.insertTenantKey(scope, wrapped, this.currentMasterKeyId, this.clock())) {
        this.cache.set(scope.tenantId, fresh);
        return fresh;
      }
      row = await this.store.tenantKey(scope);
      if (!row)
        throw new HexrError("vault.tenant_key_missing", "the tenant key vanished while it was created", { kind: "internal" });
    }
    const key = this.unwrap(row);
    this.cache.set(scope.tenantId, key);
    return key;
  }

  private wrappingKey(row: TenantKeyRow): Buffer {
    if (row.master_key_id === this.currentMasterKeyId) return this.masterKey;
    const prev = this.previous.get(row.master_key_id);
    if (prev) return prev;
    throw new HexrError(
      "vault.master_key_mismatch",
      `the vault key of tenant '${row.tenant}' is wrapped by master key ${row.master_key_id}, but the platform runs with ${this.currentMasterKeyId}; start it with the master key this data was created with`,
      { kind: "failed_precondition" },
    );
  }

  private unwrap(row: TenantKeyRow): Buffer {
    return unwrapTenantKey(this.wrappingKey(row), row.tenant_id, Buffer.from(row.wrapped_key, "base64"));
  }

  /**
   * Re-wraps every tenant key under `newKey` in one transaction (secrets are not touched: their
   * data keys are wrapped by the tenant keys, which do not change). All or nothing.
   */
  async rotateMasterKey(newKey: Buffer): Promise<number> {
    if (newKey.length !== KEY_BYTES)
      throw new HexrError("keys.invalid_master_key", "the master key must be 32 bytes", { kind: "invalid_argument" });
    const newId = masterKeyId(newKey);
    const count = await this.store.rewrapTenantKeys((row) => {
      const tenantKey = this.unwrap(row);
      try {
        return { wrapped: wrapTenantKey(newKey, row.tenant_id, tenantKey).toString("base64"), masterKeyId: newId };
      } finally {
        tenantKey.fill(0);
      }
    }, this.clock());
    this.previous.set(this.currentMasterKeyId, this.masterKey);
    this.masterKey = newKey;
    return count;
  }

  /** Re-wraps tenant keys still under a previous master key (after a restart with a new key). */
  async adoptPreviousKeys(): Promise<number> {
    if (this.previous.size === 0) return 0;
    return this.rotateMasterKey(this.masterKey);
  }

  forgetAll(): void {
    for (const k of this.cache.values()) k.fill(0);
    this.cache.clear();
  }
}
