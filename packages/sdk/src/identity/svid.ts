import { parseSpiffeId } from "@hexr/core";
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from "node:crypto";
import { GrpcCode, WorkloadApiError } from "./errors.js";
import type { BundlesResponse, X509SvidMessage, X509SvidResponse } from "./wire.js";

/** An X.509-SVID as the workload holds it: the chain (leaf first), its key, and when it expires. */
export interface X509Svid {
  spiffeId: string;
  /** Leaf first, then intermediates. */
  certificates: X509Certificate[];
  privateKey: KeyObject;
  /** PKCS#8 DER of the private key. */
  privateKeyDer: Buffer;
  /** Epoch ms of the leaf's notAfter. */
  expiresAt: number;
  hint: string;
}

/** The X.509 authorities of one trust domain. */
export interface X509Bundle {
  trustDomain: string;
  authorities: X509Certificate[];
}

/** One FetchX509SVID message: every SVID (the first is the default) and the bundles to verify peers. */
export interface X509Context {
  svids: X509Svid[];
  /** Keyed by trust domain name (not `spiffe://`): the own bundle and any federated ones. */
  bundles: Map<string, X509Bundle>;
}

const malformed = (message: string) => new WorkloadApiError(GrpcCode.INTERNAL, `the Workload API sent ${message}`);

/** Splits concatenated DER certificates (each a SEQUENCE that carries its own length). */
export function splitDerCertificates(buf: Buffer): X509Certificate[] {
  const out: X509Certificate[] = [];
  let off = 0;
  while (off < buf.length) {
    if (buf[off] !== 0x30 || off + 2 > buf.length) throw malformed("a certificate that is not DER");
    const first = buf[off + 1]!;
    let len = first;
    let header = 2;
    if (first & 0x80) {
      const n = first & 0x7f;
      if (n === 0 || n > 4 || off + 2 + n > buf.length) throw malformed("a DER length it cannot read");
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i]!;
      header = 2 + n;
    }
    const end = off + header + len;
    if (end > buf.length) throw malformed("a truncated certificate");
    try {
      out.push(new X509Certificate(buf.subarray(off, end)));
    } catch {
      throw malformed("an unparseable certificate");
    }
    off = end;
  }
  return out;
}

/** The SPIFFE ID of a certificate: its one URI SAN (X.509-SVID spec: exactly one). */
export function spiffeIdOfCertificate(cert: X509Certificate | { subjectaltname?: string }): string {
  const san = cert instanceof X509Certificate ? cert.subjectAltName : cert.subjectaltname;
  const uris = (san ?? "")
    .split(/,\s*/)
    .filter((s) => s.startsWith("URI:"))
    .map((s) => s.slice(4));
  if (uris.length !== 1) throw new Error(`an X.509-SVID has exactly one URI SAN, this certificate has ${uris.length}`);
  return parseSpiffeId(uris[0]!).toString();
}

function toSvid(m: X509SvidMessage): X509Svid {
  if (!m.spiffeId || !m.x509Svid.length || !m.x509SvidKey.length || !m.bundle.length)
    throw malformed("an X509SVID with an empty mandatory field");
  const certificates = splitDerCertificates(m.x509Svid);
  const leaf = certificates[0];
  if (!leaf) throw malformed("an empty certificate chain");
  if (spiffeIdOfCertificate(leaf) !== m.spiffeId) throw malformed(`an SVID whose certificate does not name ${m.spiffeId}`);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: m.x509SvidKey, format: "der", type: "pkcs8" });
  } catch {
    throw malformed("a private key that is not PKCS#8 DER");
  }
  const spki = (k: KeyObject) => k.export({ format: "der", type: "spki" });
  if (!spki(createPublicKey(privateKey)).equals(spki(leaf.publicKey)))
    throw malformed("a private key that does not match its certificate");
  return {
    spiffeId: m.spiffeId,
    certificates,
    privateKey,
    privateKeyDer: m.x509SvidKey,
    expiresAt: Date.parse(leaf.validTo),
    hint: m.hint,
  };
}

const trustDomainOfKey = (key: string) => parseSpiffeId(key).trustDomain;

export function toX509Context(res: X509SvidResponse): X509Context {
  if (res.svids.length === 0) throw malformed("an X509SVIDResponse without SVIDs");
  const svids = res.svids.map(toSvid);
  const bundles = new Map<string, X509Bundle>();
  for (const m of res.svids) {
    const td = parseSpiffeId(m.spiffeId).trustDomain;
    if (!bundles.has(td)) bundles.set(td, { trustDomain: td, authorities: splitDerCertificates(m.bundle) });
  }
  for (const [key, der] of res.federatedBundles) {
    const td = trustDomainOfKey(key);
    if (!bundles.has(td)) bundles.set(td, { trustDomain: td, authorities: splitDerCertificates(der) });
  }
  return { svids, bundles };
}

export function toX509Bundles(res: BundlesResponse): Map<string, X509Bundle> {
  const out = new Map<string, X509Bundle>();
  for (const [key, der] of res.bundles) {
    const td = trustDomainOfKey(key);
    out.set(td, { trustDomain: td, authorities: splitDerCertificates(der) });
  }
  return out;
}
