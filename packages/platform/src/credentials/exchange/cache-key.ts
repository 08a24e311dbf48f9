import { hkdfSync } from "node:crypto";

/** Bumped when the derivation changes, so old L2 entries stop decrypting instead of misparsing. */
export const CACHE_KEY_ID = "v1";
const SALT = Buffer.from("hexr/credentials/l2-cache", "utf8");

/**
 * The AES-256 key an agent uses to seal its L2 (Valkey) cache entries: HKDF-SHA256 of the platform
 * master key with the caller's SPIFFE ID as info. Only a holder of that identity's SVID can obtain
 * it, so a dump of the shared cache yields nothing usable, and agents sharing a node cannot read
 * each other's entries.
 */
export function deriveCacheKey(masterKey: Buffer, spiffeId: string): Buffer {
  return Buffer.from(hkdfSync("sha256", masterKey, SALT, Buffer.from(`${CACHE_KEY_ID}\n${spiffeId}`, "utf8"), 32));
}
