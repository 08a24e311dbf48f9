import { createCipheriv, createDecipheriv, randomBytes, type KeyObject } from "node:crypto";

/** Layout: version(1) ‖ iv(12) ‖ tag(16) ‖ ciphertext. */
const VERSION = 1;
const HEADER = 1 + 12 + 16;

export class TamperedEntry extends Error {
  constructor() {
    super("cache entry failed authentication");
    this.name = "TamperedEntry";
  }
}

/** AES-256-GCM; the AAD binds an entry to its cache key, identity and tool so entries cannot be swapped. */
export function sealEntry(key: Buffer | KeyObject, plaintext: Buffer, aad: string): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(Buffer.from(aad, "utf8"));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), ct]);
}

/** Throws `TamperedEntry` for any modification, a wrong key or a wrong AAD; never returns garbage. */
export function openEntry(key: Buffer | KeyObject, sealed: Buffer, aad: string): Buffer {
  if (sealed.length < HEADER || sealed[0] !== VERSION) throw new TamperedEntry();
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(1, 13));
    decipher.setAAD(Buffer.from(aad, "utf8"));
    decipher.setAuthTag(sealed.subarray(13, HEADER));
    return Buffer.concat([decipher.update(sealed.subarray(HEADER)), decipher.final()]);
  } catch {
    throw new TamperedEntry();
  }
}
