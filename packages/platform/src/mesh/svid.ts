import { X509Certificate } from "node:crypto";

/** What a proxy needs to speak mTLS as one workload: its SVID and the trust bundle, PEM-encoded. */
export interface TlsIdentity {
  spiffeId: string;
  /** Leaf first, then intermediates. */
  certChainPem: string;
  keyPem: string;
  /** X.509 authorities of the trust domain (roots; intermediates are sent by peers). */
  bundlePem: string;
  /** Epoch ms of the leaf's notAfter. */
  expiresAt: number;
}

/** Supplies the current identity and announces rotations (backed by the Workload API stream). */
export interface TlsIdentitySource {
  current(): TlsIdentity;
  onUpdate(listener: (id: TlsIdentity) => void): () => void;
}

export function derToPem(der: Buffer, label = "CERTIFICATE"): string {
  const b64 = der
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** A source whose identity changes only when `set` is called (tests, and the sidecar's stream adapter). */
export function createStaticIdentitySource(initial: TlsIdentity): TlsIdentitySource & { set(id: TlsIdentity): void } {
  let cur = initial;
  const listeners = new Set<(id: TlsIdentity) => void>();
  return {
    current: () => cur,
    onUpdate(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    set(id) {
      cur = id;
      for (const l of listeners) l(id);
    },
  };
}

/** The SPIFFE ID in a certificate's URI SAN, if it has exactly one. */
export function spiffeIdOfCert(cert: { subjectaltname?: string } | X509Certificate | undefined): string | undefined {
  const san = cert instanceof X509Certificate ? cert.subjectAltName : cert?.subjectaltname;
  if (!san) return undefined;
  const uris = san
    .split(/,\s*/)
    .filter((s) => s.startsWith("URI:"))
    .map((s) => s.slice(4));
  return uris.length === 1 && uris[0]!.startsWith("spiffe://") ? uris[0] : undefined;
}
