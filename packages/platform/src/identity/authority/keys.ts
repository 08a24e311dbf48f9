import { createECDH, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { bitString, explicit, octetString, oid, seq, smallInt } from "./der.js";

export const OID = {
  ecPublicKey: "1.2.840.10045.2.1",
  prime256v1: "1.2.840.10045.3.1.7",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
} as const;

const EC_ALGORITHM = seq(oid(OID.ecPublicKey), oid(OID.prime256v1));
const SPKI_PREFIX = (() => {
  // SubjectPublicKeyInfo of a P-256 key = constant prefix ‖ 65-byte uncompressed point.
  const full = seq(EC_ALGORITHM, bitString(Buffer.alloc(65)));
  return full.subarray(0, full.length - 65);
})();

/** A freshly generated P-256 key pair in the encodings a certificate and the Workload API need. */
export interface RawP256KeyPair {
  /** Uncompressed public point (0x04 ‖ X ‖ Y), 65 bytes. */
  publicPoint: Buffer;
  /** SubjectPublicKeyInfo DER. */
  spkiDer: Buffer;
  /** PKCS#8 DER of the private key (with the public key embedded, as OpenSSL writes it). */
  pkcs8Der: Buffer;
}

/** Wraps an uncompressed P-256 point as SubjectPublicKeyInfo DER. */
export function p256Spki(publicPoint: Buffer): Buffer {
  return Buffer.concat([SPKI_PREFIX, publicPoint]);
}

/** RFC 5915 ECPrivateKey inside RFC 5208 PKCS#8 PrivateKeyInfo. */
export function p256Pkcs8(privateScalar: Buffer, publicPoint: Buffer): Buffer {
  const d = privateScalar.length === 32 ? privateScalar : Buffer.concat([Buffer.alloc(32 - privateScalar.length), privateScalar]);
  const ecPrivateKey = seq(smallInt(1), octetString(d), explicit(1, bitString(publicPoint)));
  return seq(smallInt(0), EC_ALGORITHM, octetString(ecPrivateKey));
}

/**
 * Leaf keys come from `createECDH` and are encoded here: it yields the raw scalar and point in ~30 µs,
 * while `generateKeyPairSync` + SPKI/PKCS#8 export costs ~250 µs, most of a mint's budget.
 */
export function generateLeafKeyPair(): RawP256KeyPair {
  const ecdh = createECDH("prime256v1");
  const publicPoint = ecdh.generateKeys();
  return { publicPoint, spkiDer: p256Spki(publicPoint), pkcs8Der: p256Pkcs8(ecdh.getPrivateKey(), publicPoint) };
}

/** Signing keys (CA, JWT) are rare: the regular KeyObject path. */
export function generateSigningKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync("ec", { namedCurve: "P-256" });
}

export function privateKeyFromPkcs8(der: Buffer): KeyObject {
  return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
}

export function publicKeyFromSpki(der: Buffer): KeyObject {
  return createPublicKey({ key: der, format: "der", type: "spki" });
}

export function exportPkcs8(key: KeyObject): Buffer {
  return key.export({ format: "der", type: "pkcs8" });
}

export function exportSpki(key: KeyObject): Buffer {
  return key.export({ format: "der", type: "spki" });
}

/** The uncompressed point of a P-256 SPKI (its BIT STRING contents without the unused-bits byte). */
export function pointFromSpki(spki: Buffer): Buffer {
  if (spki.length !== SPKI_PREFIX.length + 65 || !spki.subarray(0, SPKI_PREFIX.length).equals(SPKI_PREFIX)) {
    throw new Error("not a P-256 SubjectPublicKeyInfo");
  }
  return spki.subarray(SPKI_PREFIX.length);
}

/** Public JWK members of a P-256 key (`kty`, `crv`, `x`, `y`). */
export function p256Jwk(spki: Buffer): { kty: "EC"; crv: "P-256"; x: string; y: string } {
  const point = pointFromSpki(spki);
  return {
    kty: "EC",
    crv: "P-256",
    x: point.subarray(1, 33).toString("base64url"),
    y: point.subarray(33, 65).toString("base64url"),
  };
}
