import { HexrError } from "@hexr/core";
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "../util/fs.js";

export const MASTER_KEY_FILE = "master.key";
const KEY_BYTES = 32;

/**
 * The platform's master key (AES-256): from `HEXR_MASTER_KEY` (base64 or hex of 32 bytes), or from
 * `<dataDir>/master.key` (mode 0600), created on first start. It wraps the CA keys and the vault's
 * tenant keys; it never leaves the process and is never logged.
 */
export function loadMasterKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  const fromEnv = env["HEXR_MASTER_KEY"];
  if (fromEnv) return decodeKey(fromEnv, "HEXR_MASTER_KEY");
  const file = join(dataDir, MASTER_KEY_FILE);
  if (existsSync(file)) return decodeKey(readFileSync(file, "utf8").trim(), file);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const key = randomBytes(KEY_BYTES);
  writeFileAtomic(file, key.toString("base64") + "\n", 0o600);
  return key;
}

function decodeKey(text: string, where: string): Buffer {
  const t = text.trim();
  const buf = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : Buffer.from(t, "base64");
  if (buf.length !== KEY_BYTES) {
    throw new HexrError("keys.invalid_master_key", `${where} must hold 32 bytes as base64 or hex (got ${buf.length} bytes)`, {
      kind: "invalid_argument",
    });
  }
  return buf;
}

/** Sealed blob layout: version(1) ‖ iv(12) ‖ tag(16) ‖ ciphertext. */
const SEAL_VERSION = 1;

/** AES-256-GCM with associated data; the AAD binds the ciphertext to where it is stored. */
export function seal(key: Buffer, plaintext: Buffer, aad: string): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(Buffer.from(aad, "utf8"));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([SEAL_VERSION]), iv, cipher.getAuthTag(), ct]);
}

/** Opens a sealed blob; any tampering, wrong key or wrong AAD throws `keys.decrypt_failed` (never garbage). */
export function open(key: Buffer, sealed: Buffer, aad: string): Buffer {
  if (sealed.length < 29 || sealed[0] !== SEAL_VERSION) throw decryptFailed();
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(1, 13));
    decipher.setAAD(Buffer.from(aad, "utf8"));
    decipher.setAuthTag(sealed.subarray(13, 29));
    return Buffer.concat([decipher.update(sealed.subarray(29)), decipher.final()]);
  } catch {
    throw decryptFailed();
  }
}

function decryptFailed(): HexrError {
  return new HexrError("keys.decrypt_failed", "stored ciphertext failed authentication (tampered, moved, or wrong key)", {
    kind: "internal",
  });
}
