import { createHmac, randomBytes } from "node:crypto";
import { open, seal } from "../keys/master-key.js";

/**
 * Envelope encryption, three levels, all AES-256-GCM (`keys/master-key.ts` seal/open):
 *   master key ─wraps→ tenant key ─wraps→ data key (one per secret version) ─encrypts→ value.
 * Every AAD names where the blob belongs (tenant id, secret name, version), so a row moved or
 * swapped to another place fails authentication instead of decrypting to someone else's value.
 */

export const KEY_BYTES = 32;

/** JSON arrays keep the parts unambiguous whatever characters a name holds. */
export function tenantKeyAad(tenantId: string): string {
  return JSON.stringify(["hexr.vault.tenant-key.v1", tenantId]);
}

export function dataKeyAad(tenantId: string, name: string, version: number): string {
  return JSON.stringify(["hexr.vault.data-key.v1", tenantId, name, version]);
}

export function valueAad(tenantId: string, name: string, version: number): string {
  return JSON.stringify(["hexr.vault.value.v1", tenantId, name, version]);
}

/** A stable, non-secret fingerprint of a master key, stored beside what it wraps (rotation bookkeeping). */
export function masterKeyId(masterKey: Buffer): string {
  return createHmac("sha256", masterKey).update("hexr.vault.master-key-id.v1").digest("hex").slice(0, 16);
}

export function wrapTenantKey(masterKey: Buffer, tenantId: string, tenantKey: Buffer): Buffer {
  return seal(masterKey, tenantKey, tenantKeyAad(tenantId));
}

export function unwrapTenantKey(masterKey: Buffer, tenantId: string, wrapped: Buffer): Buffer {
  return open(masterKey, wrapped, tenantKeyAad(tenantId));
}

export interface SealedSecret {
  wrappedDataKey: Buffer;
  ciphertext: Buffer;
}

/** Encrypts one version of a secret under a fresh data key; the data key never leaves this function unwrapped. */
export function sealSecret(
  tenantKey: Buffer,
  tenantId: string,
  name: string,
  version: number,
  value: Buffer,
  random: (n: number) => Buffer = randomBytes,
): SealedSecret {
  const dataKey = random(KEY_BYTES);
  try {
    return {
      wrappedDataKey: seal(tenantKey, dataKey, dataKeyAad(tenantId, name, version)),
      ciphertext: seal(dataKey, value, valueAad(tenantId, name, version)),
    };
  } finally {
    dataKey.fill(0);
  }
}

/** Throws `keys.decrypt_failed` when anything was tampered with, moved or swapped. */
export function openSecret(tenantKey: Buffer, tenantId: string, name: string, version: number, sealed: SealedSecret): Buffer {
  const dataKey = open(tenantKey, sealed.wrappedDataKey, dataKeyAad(tenantId, name, version));
  try {
    return open(dataKey, sealed.ciphertext, valueAad(tenantId, name, version));
  } finally {
    dataKey.fill(0);
  }
}
