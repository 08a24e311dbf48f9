/**
 * Contracts between the identity pieces: the authority (CA + JWT signer), registration entries,
 * attestation and the Workload API. Implementations live in the folders beside this file.
 */

/** A minted X.509-SVID as the Workload API hands it out. */
export interface X509SvidMaterial {
  spiffeId: string;
  /** DER certificates, leaf first, then intermediates up to (not including) the root. */
  certChainDer: Buffer[];
  /** The leaf's private key, PKCS#8 DER. */
  privateKeyPkcs8Der: Buffer;
  /** Epoch ms of the leaf's notAfter. */
  expiresAt: number;
  /** Epoch ms of the leaf's notBefore. */
  issuedAt: number;
}

export interface JwtSvid {
  spiffeId: string;
  token: string;
  expiresAt: number;
}

export interface ValidatedJwtSvid {
  spiffeId: string;
  claims: Record<string, unknown>;
}

/** A JWK as it appears in a SPIFFE bundle (`use` = `x509-svid` or `jwt-svid`). */
export type BundleJwk = Record<string, unknown> & { use: "x509-svid" | "jwt-svid"; kty: string };

export interface SpiffeBundleDocument {
  keys: BundleJwk[];
  spiffe_sequence: number;
  spiffe_refresh_hint: number;
}

export interface MintX509Options {
  ttlSeconds?: number;
  /** DNS SANs to add besides the SPIFFE ID URI SAN (e.g. `localhost` for a platform service). */
  dnsNames?: string[];
}

export interface MintJwtOptions {
  ttlSeconds?: number;
  /** Extra claims (never overriding sub/aud/exp/iat/iss). */
  extraClaims?: Record<string, unknown>;
}

export interface Authority {
  readonly trustDomain: string;
  mintX509Svid(spiffeId: string, opts?: MintX509Options): Promise<X509SvidMaterial>;
  mintJwtSvid(spiffeId: string, audience: readonly string[], opts?: MintJwtOptions): Promise<JwtSvid>;
  /** Strict validation: alg allow-list, kid known, signature, sub in this trust domain, aud contains `audience`, exp. */
  validateJwtSvid(token: string, audience: string): Promise<ValidatedJwtSvid>;
  /** DER of every X.509 authority a verifier should trust now (during CA rotation: old and new). */
  x509Authorities(): Buffer[];
  /** The SPIFFE bundle (JWKS) with X.509 authorities and JWT keys. */
  bundle(): SpiffeBundleDocument;
  /** JWT signing keys as a plain JWKS (for OIDC `/keys`). */
  jwks(): { keys: Array<Record<string, unknown>> };
  /** Called whenever the bundle changes (CA rotation); returns an unsubscribe function. */
  onBundleChange(listener: () => void): () => void;
}

/** A selector as SPIRE writes it: `type:value`, e.g. `unix:uid:1000`, `hexr:tenant:acme-corp`. */
export interface Selector {
  type: string;
  value: string;
}

export interface RegistrationEntry {
  id: string;
  spiffeId: string;
  /** All must match the caller's selectors for the entry to apply. */
  selectors: Selector[];
  tenant: string | null;
  x509SvidTtlSeconds: number;
  jwtSvidTtlSeconds: number;
  /** Entries created by `hexr run` / the Auto-Registrar, as opposed to operators. */
  createdBy: string;
  createdAt: number;
  /** Epoch ms after which the entry no longer applies; null = never. */
  expiresAt: number | null;
}

/** Attestation: what the kernel tells us about a caller, as selectors. */
export interface WorkloadAttestor {
  readonly name: string;
  attest(pid: number): Promise<Selector[]>;
}
