import { HexrError, parseSpiffeId, validateTrustDomain, type SpiffeId } from "@hexr/core";
import { randomBytes, X509Certificate, type KeyObject } from "node:crypto";
import type { Logger } from "pino";
import { open, seal } from "../../keys/master-key.js";
import type { Storage } from "../../storage/types.js";
import { isUniqueViolation } from "../../storage/types.js";
import type {
  Authority,
  BundleJwk,
  JwtSvid,
  MintJwtOptions,
  MintX509Options,
  SpiffeBundleDocument,
  ValidatedJwtSvid,
  X509SvidMaterial,
} from "../types.js";
import { JwtSigner, JwtVerificationKey, validateJwt, type ValidatedJwt } from "./jwt.js";
import {
  exportPkcs8,
  exportSpki,
  generateLeafKeyPair,
  generateSigningKey,
  p256Jwk,
  privateKeyFromPkcs8,
  publicKeyFromSpki,
} from "./keys.js";
import { AuthorityStore, type AuthorityTx, type RootRow, type SlotRow } from "./store.js";
import {
  buildCaCertificate,
  LeafMinter,
  parseCertificate,
  randomSerial,
  readBasicConstraints,
  readKeyUsage,
  readSubjectAltNames,
  subjectKeyId,
  KEY_USAGE,
  X509_OID,
  x500Name,
  type ParsedCertificate,
} from "./x509.js";

export interface AuthorityConfig {
  /** Default X.509-SVID lifetime. */
  x509SvidTtlSeconds: number;
  /** Default JWT-SVID lifetime. */
  jwtSvidTtlSeconds: number;
  /** Upper bound for any SVID TTL a caller may ask for (also bounds how long a retired key must stay published). */
  maxSvidTtlSeconds: number;
  /** Lifetime of one slot: the intermediate CA and the JWT signing key. */
  caTtlSeconds: number;
  /** Lifetime of a root CA (the trust anchor published in the bundle). */
  rootCaTtlSeconds: number;
  bundleRefreshHintSeconds: number;
  /** Clock skew tolerated when checking `exp`/`nbf`/`iat` of JWT-SVIDs. */
  jwtLeewaySeconds: number;
}

export const DEFAULT_AUTHORITY_CONFIG: Readonly<AuthorityConfig> = Object.freeze({
  x509SvidTtlSeconds: 3600,
  jwtSvidTtlSeconds: 300,
  maxSvidTtlSeconds: 86_400,
  caTtlSeconds: 7 * 86_400,
  rootCaTtlSeconds: 365 * 86_400,
  bundleRefreshHintSeconds: 300,
  jwtLeewaySeconds: 30,
});

export interface LocalAuthorityOptions {
  storage: Storage;
  trustDomain: string;
  /** The master key that seals the CA keys, or a function that loads it (called once, at init). */
  masterKey: Buffer | (() => Buffer);
  /** OIDC issuer put in JWT-SVIDs as `iss`; may be set later with `setIssuer`. */
  issuer?: string;
  config?: Partial<AuthorityConfig>;
  clock?: () => number;
  random?: (n: number) => Buffer;
  log?: Logger;
}

export type RotationPhase = "prepare" | "activate" | "retire";

export interface SlotStatus {
  id: string;
  state: "prepared" | "active" | "old";
  rootId: string;
  jwtKeyId: string;
  notBefore: string;
  notAfter: string;
  activatedAt: string | null;
  deactivatedAt: string | null;
  /** For old slots: when it becomes safe to retire (its last SVID has expired). */
  retirableAt: string | null;
}

export interface AuthorityStatus {
  trustDomain: string;
  sequence: number;
  roots: Array<{ id: string; notBefore: string; notAfter: string }>;
  slots: SlotStatus[];
}

interface LoadedRoot {
  row: RootRow;
  der: Buffer;
  spki: Buffer;
}

interface LoadedSlot {
  row: SlotRow;
  intermediateDer: Buffer;
  root: LoadedRoot;
  jwtKey: JwtVerificationKey;
  jwtSpki: Buffer;
  /** Present for prepared and active slots only: old slots never sign again. */
  minter?: LeafMinter;
  signer?: JwtSigner;
}

interface State {
  slots: LoadedSlot[];
  active: LoadedSlot;
  sequence: number;
  jwtKeys: Map<string, JwtVerificationKey>;
  x509Authorities: Buffer[];
  rootCerts: X509Certificate[];
  bundle: SpiffeBundleDocument;
  jwks: { keys: Array<Record<string, unknown>> };
}

const ca = (code: string, message: string, kind: HexrError["kind"] = "invalid_argument", details?: Record<string, unknown>) =>
  new HexrError(code, message, { kind, ...(details ? { details } : {}) });

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** Leaves are backdated a little so a peer whose clock lags does not see them as not-yet-valid. */
const LEAF_BACKDATE_MS = 10_000;
const CA_BACKDATE_MS = 60_000;
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/**
 * The embedded SPIFFE authority: a root CA and an intermediate (per slot) for X.509-SVIDs, an ES256
 * key (per slot) for JWT-SVIDs, the SPIFFE bundle, and SPIRE-style rotation (prepare → activate →
 * retire) so that every SVID verifies until it expires.
 */
export class LocalAuthority implements Authority {
  readonly trustDomain: string;
  readonly config: Readonly<AuthorityConfig>;
  private readonly store: AuthorityStore;
  private readonly clock: () => number;
  private readonly random: (n: number) => Buffer;
  private readonly log: Logger | undefined;
  private masterKeySource: Buffer | (() => Buffer);
  private masterKey: Buffer | undefined;
  private issuerUrl: string | undefined;
  private state: State | undefined;
  /** Every live slot as last loaded, also while none is active yet (between first prepare and activate). */
  private slots: LoadedSlot[] = [];
  private readonly loadedSlots = new Map<string, LoadedSlot>();
  private readonly bundleListeners = new Set<() => void>();
  private readonly activationListeners = new Set<() => void>();
  private mutex: Promise<unknown> = Promise.resolve();

  constructor(opts: LocalAuthorityOptions) {
    this.trustDomain = validateTrustDomain(opts.trustDomain);
    this.config = Object.freeze({ ...DEFAULT_AUTHORITY_CONFIG, ...(opts.config ?? {}) });
    checkConfig(this.config);
    this.store = new AuthorityStore(opts.storage, this.trustDomain);
    this.clock = opts.clock ?? Date.now;
    this.random = opts.random ?? randomBytes;
    this.log = opts.log;
    this.masterKeySource = opts.masterKey;
    this.issuerUrl = opts.issuer === undefined ? undefined : normalizeIssuer(opts.issuer);
  }

  /** Loads the CA from storage, creating it on first start (or replacing a CA that expired while we were down). */
  async init(): Promise<void> {
    await this.serialized(async () => {
      await this.reloadLocked();
      const now = this.clock();
      const active = this.state?.active;
      if (!active || active.row.not_after <= now) {
        if (active) this.log?.warn({ slot: active.row.id }, "the active CA expired while the platform was down; replacing it");
        // A prepared slot may exist already (left by a crash between prepare and activate): activate that one.
        const prepared = this.slots.find((s) => s.row.state === "prepared");
        if (!prepared || prepared.row.not_after <= now) {
          if (prepared) await this.mutate(async (tx) => tx.discardPrepared(prepared.row.id));
          await this.prepareLocked({});
        }
        await this.activateLocked();
      }
    });
  }

  get ready(): boolean {
    return this.state !== undefined;
  }

  get issuer(): string | undefined {
    return this.issuerUrl;
  }

  /** Sets the OIDC issuer once the platform's URL is known (e.g. after listening on port 0). */
  setIssuer(url: string): void {
    this.issuerUrl = normalizeIssuer(url);
  }

  // -------------------------------------------------------------------------------------------
  // Minting

  async mintX509Svid(spiffeId: string, opts: MintX509Options = {}): Promise<X509SvidMaterial> {
    const st = this.current();
    this.workloadId(spiffeId);
    const ttl = this.ttl(opts.ttlSeconds, this.config.x509SvidTtlSeconds, "ttlSeconds");
    for (const d of opts.dnsNames ?? []) {
      if (typeof d !== "string" || !DNS_NAME.test(d))
        throw ca("identity.invalid_dns_name", `invalid DNS name ${JSON.stringify(String(d).slice(0, 80))}`);
    }
    const slot = st.active;
    const minter = slot.minter!;
    const now = this.clock();
    this.checkUsable(slot, now);
    const notBefore = Math.max(now - LEAF_BACKDATE_MS, minter.issuer.notBefore);
    const notAfter = Math.min(now + ttl * 1000, minter.issuer.notAfter);
    const keys = generateLeafKeyPair();
    const leaf = minter.mint({
      spiffeId,
      ...(opts.dnsNames ? { dnsNames: opts.dnsNames } : {}),
      spkiDer: keys.spkiDer,
      serial: randomSerial(this.random),
      notBefore,
      notAfter,
    });
    return {
      spiffeId,
      certChainDer: [leaf, slot.intermediateDer],
      privateKeyPkcs8Der: keys.pkcs8Der,
      // DER times have whole seconds.
      expiresAt: Math.floor(notAfter / 1000) * 1000,
      issuedAt: Math.floor(notBefore / 1000) * 1000,
    };
  }

  async mintJwtSvid(spiffeId: string, audience: readonly string[], opts: MintJwtOptions = {}): Promise<JwtSvid> {
    const st = this.current();
    this.workloadId(spiffeId);
    if (!Array.isArray(audience) || audience.length === 0)
      throw ca("identity.invalid_audience", "a JWT-SVID needs at least one audience");
    for (const a of audience) {
      if (typeof a !== "string" || a.length === 0 || a.length > 2048)
        throw ca("identity.invalid_audience", "each audience must be a non-empty string of at most 2048 characters");
    }
    const ttl = this.ttl(opts.ttlSeconds, this.config.jwtSvidTtlSeconds, "ttlSeconds");
    const slot = st.active;
    const now = this.clock();
    this.checkUsable(slot, now);
    const iat = Math.floor(now / 1000);
    const exp = Math.min(iat + ttl, Math.floor(slot.row.not_after / 1000));
    const claims: Record<string, unknown> = { ...(opts.extraClaims ?? {}) };
    claims["sub"] = spiffeId;
    claims["aud"] = audience.length === 1 ? audience[0] : [...audience];
    claims["exp"] = exp;
    claims["iat"] = iat;
    if (this.issuerUrl) claims["iss"] = this.issuerUrl;
    else delete claims["iss"];
    return { spiffeId, token: slot.signer!.sign(claims), expiresAt: exp * 1000 };
  }

  // -------------------------------------------------------------------------------------------
  // Validation

  async validateJwtSvid(token: string, audience: string): Promise<ValidatedJwtSvid> {
    const v = this.validateJwtSvidSync(token, audience);
    return { spiffeId: v.spiffeId, claims: v.claims };
  }

  /** Synchronous validation; `audience` may be a set of which the token must name one (e.g. the platform's system IDs). */
  validateJwtSvidSync(token: string, audience: string | ReadonlySet<string>): ValidatedJwt {
    const st = this.current();
    return validateJwt(token, {
      keys: st.jwtKeys,
      trustDomain: this.trustDomain,
      audience,
      now: this.clock(),
      leewaySeconds: this.config.jwtLeewaySeconds,
    });
  }

  /**
   * Verifies an X.509-SVID chain (leaf first) against the current bundle and the X.509-SVID leaf
   * rules; returns the SPIFFE ID. Used for mTLS callers and by tests.
   */
  verifyX509Svid(chainDer: readonly Buffer[]): { spiffeId: string; expiresAt: number } {
    const st = this.current();
    const bad = (reason: string) =>
      ca("identity.x509_svid_invalid", `X.509-SVID rejected: ${reason}`, "unauthenticated", { reason });
    if (chainDer.length === 0) throw bad("empty certificate chain");
    let parsed: ParsedCertificate[];
    let certs: X509Certificate[];
    try {
      parsed = chainDer.map((d) => parseCertificate(d));
      certs = chainDer.map((d) => new X509Certificate(d));
    } catch {
      throw bad("a certificate cannot be parsed");
    }
    const now = this.clock();
    const leaf = parsed[0]!;
    const bc = leaf.extensions.get(X509_OID.basicConstraints);
    if (bc && readBasicConstraints(bc).ca) throw bad("the leaf is a CA certificate");
    const ku = leaf.extensions.get(X509_OID.keyUsage);
    if (!ku || !ku.critical) throw bad("the leaf has no critical key usage");
    const bits = readKeyUsage(ku);
    if (!bits.has(KEY_USAGE.digitalSignature) || bits.has(KEY_USAGE.keyCertSign) || bits.has(KEY_USAGE.cRLSign))
      throw bad("the leaf's key usage is not that of an SVID");
    const san = leaf.extensions.get(X509_OID.subjectAltName);
    const uris = san ? readSubjectAltNames(san).filter((n) => n.type === "uri") : [];
    if (uris.length !== 1) throw bad("the leaf must have exactly one URI SAN");
    let id: SpiffeId;
    try {
      id = parseSpiffeId(uris[0]!.value);
    } catch {
      throw bad("the URI SAN is not a SPIFFE ID");
    }
    if (id.path === "") throw bad("the SPIFFE ID has no path");
    if (id.trustDomain !== this.trustDomain) throw bad("the SPIFFE ID is not in this trust domain");
    for (const p of parsed)
      if (now < p.notBefore || now > p.notAfter) throw bad("a certificate in the chain is expired or not yet valid");
    for (let i = 1; i < parsed.length; i++) {
      const b = parsed[i]!.extensions.get(X509_OID.basicConstraints);
      const k = parsed[i]!.extensions.get(X509_OID.keyUsage);
      if (!b || !readBasicConstraints(b).ca || !k || !readKeyUsage(k).has(KEY_USAGE.keyCertSign))
        throw bad("an intermediate is not a signing certificate");
      if (!certs[i - 1]!.checkIssued(certs[i]!) || !certs[i - 1]!.verify(certs[i]!.publicKey)) throw bad("the chain is broken");
    }
    const last = certs[certs.length - 1]!;
    const anchored = st.rootCerts.some(
      (root) => last.raw.equals(root.raw) || (last.checkIssued(root) && last.verify(root.publicKey)),
    );
    if (!anchored) throw bad("the chain does not lead to an authority of the trust bundle");
    return { spiffeId: id.toString(), expiresAt: leaf.notAfter };
  }

  // -------------------------------------------------------------------------------------------
  // Bundle

  x509Authorities(): Buffer[] {
    return [...this.current().x509Authorities];
  }

  bundle(): SpiffeBundleDocument {
    return structuredClone(this.current().bundle);
  }

  jwks(): { keys: Array<Record<string, unknown>> } {
    return structuredClone(this.current().jwks);
  }

  onBundleChange(listener: () => void): () => void {
    this.bundleListeners.add(listener);
    return () => this.bundleListeners.delete(listener);
  }

  /** Called when a new slot becomes active (new SVIDs chain to a new intermediate); returns an unsubscribe function. */
  onActivation(listener: () => void): () => void {
    this.activationListeners.add(listener);
    return () => this.activationListeners.delete(listener);
  }

  // -------------------------------------------------------------------------------------------
  // Rotation

  /** Creates the next slot and publishes its keys (and its root, when a new one is needed). */
  prepare(opts: { newRoot?: boolean } = {}): Promise<SlotStatus> {
    return this.serialized(() => this.prepareLocked(opts));
  }

  /** The prepared slot starts signing; the previous one becomes old but stays published. */
  activate(): Promise<SlotStatus> {
    return this.serialized(() => this.activateLocked());
  }

  /**
   * Removes old slots from the bundle once every SVID they signed has expired. With `force`, removes
   * them now (for a compromised key: their SVIDs stop verifying at once).
   */
  retire(opts: { force?: boolean } = {}): Promise<string[]> {
    return this.serialized(() => this.retireLocked(opts.force ?? false));
  }

  /**
   * One step of automatic rotation, as SPIRE schedules it: prepare at half of the active slot's life,
   * activate at five sixths, retire old slots when safe. Also picks up changes made by other replicas.
   */
  tick(): Promise<RotationPhase[]> {
    return this.serialized(async () => {
      await this.reloadLocked();
      const done: RotationPhase[] = [];
      const now = this.clock();
      const st = this.current();
      const a = st.active.row;
      const life = a.not_after - a.not_before;
      const prepared = st.slots.find((s) => s.row.state === "prepared");
      if (!prepared && (now >= a.not_before + life / 2 || now >= a.not_after)) {
        await this.prepareLocked({});
        done.push("prepare");
      }
      if (now >= a.not_before + (life * 5) / 6 || now >= a.not_after) {
        await this.activateLocked();
        done.push("activate");
      }
      if (this.current().slots.some((s) => s.row.state === "old" && this.retirableAt(s.row) <= now)) {
        await this.retireLocked(false);
        done.push("retire");
      }
      return done;
    });
  }

  status(): AuthorityStatus {
    const st = this.current();
    const roots = new Map(st.slots.map((s) => [s.root.row.id, s.root.row]));
    return {
      trustDomain: this.trustDomain,
      sequence: st.sequence,
      roots: [...roots.values()].map((r) => ({ id: r.id, notBefore: iso(r.not_before)!, notAfter: iso(r.not_after)! })),
      slots: st.slots.map((s) => this.slotStatus(s.row)),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  private current(): State {
    if (!this.state) throw ca("identity.authority_not_ready", "the identity authority is not initialised yet", "unavailable");
    return this.state;
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.mutex.then(fn, fn);
    this.mutex = run.catch(() => undefined);
    return run;
  }

  /** The rotation job replaces a slot long before it expires; if it could not (platform suspended), refuse rather than mint dead SVIDs. */
  private checkUsable(slot: LoadedSlot, now: number): void {
    if (slot.row.not_after - now < 60_000) {
      throw ca(
        "identity.ca_expired",
        "the active CA is expired or about to expire and has not been rotated yet; retry shortly",
        "unavailable",
      );
    }
  }

  private workloadId(spiffeId: string): SpiffeId {
    const id = parseSpiffeId(spiffeId);
    if (id.trustDomain !== this.trustDomain) {
      throw ca("identity.foreign_trust_domain", `${spiffeId} is not in trust domain ${this.trustDomain}`);
    }
    if (id.path === "") throw ca("identity.invalid_spiffe_id", `an SVID needs a SPIFFE ID with a path (got ${spiffeId})`);
    return id;
  }

  private ttl(requested: number | undefined, fallback: number, field: string): number {
    if (requested === undefined) return fallback;
    if (!Number.isInteger(requested) || requested < 1 || requested > this.config.maxSvidTtlSeconds) {
      throw ca("identity.invalid_ttl", `${field} must be an integer between 1 and ${this.config.maxSvidTtlSeconds} seconds`);
    }
    return requested;
  }

  private key(): Buffer {
    if (!this.masterKey) {
      this.masterKey = typeof this.masterKeySource === "function" ? this.masterKeySource() : this.masterKeySource;
      this.masterKeySource = Buffer.alloc(0);
    }
    return this.masterKey;
  }

  private unseal(sealed: string | null, aad: string): KeyObject {
    if (!sealed) throw ca("identity.ca_key_missing", `the CA private key ${aad} is no longer stored`, "internal");
    try {
      return privateKeyFromPkcs8(open(this.key(), Buffer.from(sealed, "base64"), aad));
    } catch (err) {
      throw ca(
        "identity.ca_keys_unreadable",
        "the CA private keys in the database cannot be decrypted with this master key: HEXR_MASTER_KEY or <data-dir>/master.key is not the key they were sealed with (restore the original key; a new one cannot read them)",
        "failed_precondition",
        { cause: err instanceof HexrError ? err.code : "invalid_key" },
      );
    }
  }

  private sealKey(key: KeyObject, aad: string): string {
    return seal(this.key(), exportPkcs8(key), aad).toString("base64");
  }

  private retirableAt(row: SlotRow): number {
    const lastSvid =
      (row.deactivated_at ?? row.not_after) + (this.config.maxSvidTtlSeconds + this.config.jwtLeewaySeconds) * 1000;
    return Math.min(row.not_after + this.config.jwtLeewaySeconds * 1000, lastSvid);
  }

  private slotStatus(row: SlotRow): SlotStatus {
    return {
      id: row.id,
      state: row.state as SlotStatus["state"],
      rootId: row.root_id,
      jwtKeyId: row.jwt_kid,
      notBefore: iso(row.not_before)!,
      notAfter: iso(row.not_after)!,
      activatedAt: iso(row.activated_at),
      deactivatedAt: iso(row.deactivated_at),
      retirableAt: row.state === "old" ? iso(this.retirableAt(row)) : null,
    };
  }

  private newId(): string {
    return this.random(12).toString("hex");
  }

  private async prepareLocked(opts: { newRoot?: boolean }): Promise<SlotStatus> {
    const now = this.clock();
    const st = this.state;
    if (this.slots.some((s) => s.row.state === "prepared")) {
      throw ca("identity.rotation_in_progress", "a prepared CA slot exists already: activate it first", "conflict");
    }
    const caTtl = this.config.caTtlSeconds * 1000;
    // Reuse the active root while it outlives two more slots; otherwise publish a new one.
    const activeRoot = st?.active.root;
    let root: { row: RootRow; key: KeyObject; der: Buffer; isNew: boolean };
    if (!opts.newRoot && activeRoot && activeRoot.row.sealed_key && activeRoot.row.not_after - now >= 2 * caTtl) {
      root = {
        row: activeRoot.row,
        der: activeRoot.der,
        key: this.unseal(activeRoot.row.sealed_key, `hexr/identity/root/${activeRoot.row.id}`),
        isNew: false,
      };
    } else {
      const id = this.newId();
      const k = generateSigningKey();
      const notBefore = now - CA_BACKDATE_MS;
      const notAfter = now + this.config.rootCaTtlSeconds * 1000;
      const der = buildCaCertificate({
        subject: x500Name([
          [X509_OID.organizationName, "Hexr"],
          [X509_OID.commonName, `Hexr root CA ${this.trustDomain}`],
          [X509_OID.serialNumber, id],
        ]),
        spkiDer: exportSpki(k.publicKey),
        serial: randomSerial(this.random),
        notBefore,
        notAfter,
        trustDomainId: `spiffe://${this.trustDomain}`,
        selfKey: k.privateKey,
      });
      root = {
        row: {
          id,
          trust_domain: this.trustDomain,
          cert_der: der.toString("base64"),
          sealed_key: this.sealKey(k.privateKey, `hexr/identity/root/${id}`),
          not_before: notBefore,
          not_after: notAfter,
          created_at: now,
        },
        key: k.privateKey,
        der,
        isNew: true,
      };
    }
    const rootCert = parseCertificate(root.der);
    const id = this.newId();
    const ik = generateSigningKey();
    const ispki = exportSpki(ik.publicKey);
    const notBefore = Math.max(now - CA_BACKDATE_MS, root.row.not_before);
    const notAfter = Math.min(now + caTtl, root.row.not_after);
    const intermediateDer = buildCaCertificate({
      subject: x500Name([
        [X509_OID.organizationName, "Hexr"],
        [X509_OID.commonName, `Hexr intermediate CA ${this.trustDomain}`],
        [X509_OID.serialNumber, id],
      ]),
      spkiDer: ispki,
      serial: randomSerial(this.random),
      notBefore,
      notAfter,
      trustDomainId: `spiffe://${this.trustDomain}`,
      issuer: {
        subjectDer: rootCert.subjectDer,
        subjectKeyId: subjectKeyId(rootCert.spkiDer),
        privateKey: root.key,
        notBefore: root.row.not_before,
        notAfter: root.row.not_after,
      },
      pathLen: 0,
    });
    const jk = generateSigningKey();
    const row: SlotRow = {
      id,
      trust_domain: this.trustDomain,
      state: "prepared",
      root_id: root.row.id,
      x509_cert_der: intermediateDer.toString("base64"),
      x509_sealed_key: this.sealKey(ik.privateKey, `hexr/identity/slot/${id}/x509`),
      jwt_kid: this.random(24).toString("base64url"),
      jwt_public_der: exportSpki(jk.publicKey).toString("base64"),
      jwt_sealed_key: this.sealKey(jk.privateKey, `hexr/identity/slot/${id}/jwt`),
      not_before: notBefore,
      not_after: notAfter,
      created_at: now,
      activated_at: null,
      deactivated_at: null,
      retired_at: null,
    };
    await this.mutate(async (tx) => {
      if (root.isNew) await tx.insertRoot(root.row);
      await tx.insertSlot(row);
      return true;
    });
    this.log?.info(
      { slot: id, root: root.row.id, newRoot: root.isNew, jwtKid: row.jwt_kid },
      "identity: prepared the next CA slot",
    );
    return this.slotStatus(row);
  }

  private async activateLocked(): Promise<SlotStatus> {
    const prepared = this.slots.find((s) => s.row.state === "prepared");
    if (!prepared)
      throw ca("identity.nothing_prepared", "no prepared CA slot to activate: run prepare first", "failed_precondition");
    const now = this.clock();
    await this.mutate((tx) => tx.activate(prepared.row.id, now), { bump: false });
    this.log?.info({ slot: prepared.row.id }, "identity: activated CA slot");
    return this.slotStatus(this.current().active.row);
  }

  private async retireLocked(force: boolean): Promise<string[]> {
    const now = this.clock();
    const old = this.current().slots.filter((s) => s.row.state === "old");
    const due = force ? old : old.filter((s) => this.retirableAt(s.row) <= now);
    if (due.length === 0) {
      if (old.length === 0) return [];
      const at = Math.min(...old.map((s) => this.retirableAt(s.row)));
      throw ca(
        "identity.rotation_not_safe",
        `old CA slots still back unexpired SVIDs; they can be retired at ${new Date(at).toISOString()} (or force it to revoke them now)`,
        "failed_precondition",
        { retirableAt: new Date(at).toISOString() },
      );
    }
    await this.mutate(async (tx) => {
      for (const s of due) await tx.retire(s.row.id, now);
      await tx.dropUnusedRootKeys();
      return true;
    });
    for (const s of due) this.loadedSlots.delete(s.row.id);
    this.log?.info({ slots: due.map((s) => s.row.id), force }, "identity: retired old CA slots");
    return due.map((s) => s.row.id);
  }

  /** Runs a state change in a transaction (bumping the bundle sequence unless told not to), then reloads. */
  private async mutate(fn: (tx: AuthorityTx) => Promise<boolean>, opts: { bump?: boolean } = {}): Promise<void> {
    const now = this.clock();
    try {
      await this.store.transaction(async (tx) => {
        const changed = await fn(tx);
        if (changed && opts.bump !== false) await tx.bumpSequence(now);
      });
    } catch (err) {
      // Another replica made the same change first: take its state.
      if (!isUniqueViolation(err)) throw err;
      this.log?.info("identity: another replica changed the CA concurrently; reloading");
    }
    await this.reloadLocked();
  }

  private async reloadLocked(): Promise<void> {
    const { slots: rows, roots: rootRows, sequence } = await this.store.load();
    const before = this.state;
    const roots = new Map<string, LoadedRoot>();
    for (const r of rootRows) {
      const der = Buffer.from(r.cert_der, "base64");
      roots.set(r.id, { row: r, der, spki: parseCertificate(der).spkiDer });
    }
    const slots: LoadedSlot[] = [];
    for (const row of rows) {
      const root = roots.get(row.root_id);
      if (!root) throw ca("identity.ca_corrupt", `CA slot ${row.id} references a missing root ${row.root_id}`, "internal");
      const cached = this.loadedSlots.get(row.id);
      let slot: LoadedSlot;
      if (cached && cached.row.state === row.state) slot = { ...cached, row, root };
      else {
        const intermediateDer = Buffer.from(row.x509_cert_der, "base64");
        const jwtSpki = Buffer.from(row.jwt_public_der, "base64");
        slot = { row, root, intermediateDer, jwtSpki, jwtKey: new JwtVerificationKey(row.jwt_kid, publicKeyFromSpki(jwtSpki)) };
        if (row.state === "prepared" || row.state === "active") {
          const cert = parseCertificate(intermediateDer);
          slot.minter = new LeafMinter({
            subjectDer: cert.subjectDer,
            subjectKeyId: subjectKeyId(cert.spkiDer),
            privateKey: this.unseal(row.x509_sealed_key, `hexr/identity/slot/${row.id}/x509`),
            notBefore: cert.notBefore,
            notAfter: cert.notAfter,
          });
          slot.signer = new JwtSigner(row.jwt_kid, this.unseal(row.jwt_sealed_key, `hexr/identity/slot/${row.id}/jwt`));
        }
      }
      this.loadedSlots.set(row.id, slot);
      slots.push(slot);
    }
    for (const id of [...this.loadedSlots.keys()]) if (!rows.some((r) => r.id === id)) this.loadedSlots.delete(id);
    this.slots = slots;
    const active = slots.find((s) => s.row.state === "active");
    // No active slot only before the first activation; init() finishes that job.
    if (!active) return;
    this.state = buildState(slots, active, sequence, [...roots.values()], this.config.bundleRefreshHintSeconds);
    if (before && before.sequence !== sequence) this.emit(this.bundleListeners, "bundle");
    if (before && before.active.row.id !== active.row.id) this.emit(this.activationListeners, "activation");
  }

  private emit(listeners: Set<() => void>, what: string): void {
    for (const l of listeners) {
      try {
        l();
      } catch (err) {
        this.log?.error({ err, what }, "identity: a change listener failed");
      }
    }
  }
}

function buildState(slots: LoadedSlot[], active: LoadedSlot, sequence: number, roots: LoadedRoot[], refreshHint: number): State {
  const jwtKeys = new Map(slots.map((s) => [s.row.jwt_kid, s.jwtKey]));
  const keys: BundleJwk[] = [
    ...roots.map((r) => ({ ...p256Jwk(r.spki), use: "x509-svid" as const, x5c: [r.der.toString("base64")] })),
    ...slots.map((s) => ({ ...p256Jwk(s.jwtSpki), use: "jwt-svid" as const, kid: s.row.jwt_kid })),
  ];
  return {
    slots,
    active,
    sequence,
    jwtKeys,
    x509Authorities: roots.map((r) => r.der),
    rootCerts: roots.map((r) => new X509Certificate(r.der)),
    bundle: { keys, spiffe_sequence: sequence, spiffe_refresh_hint: refreshHint },
    jwks: { keys: slots.map((s) => ({ ...p256Jwk(s.jwtSpki), kid: s.row.jwt_kid, alg: "ES256", use: "sig" })) },
  };
}

function checkConfig(c: AuthorityConfig): void {
  // Zero leeway is legitimate (strict clocks) and the config schema allows it; every other setting is a duration > 0.
  if (!Number.isInteger(c.jwtLeewaySeconds) || c.jwtLeewaySeconds < 0)
    throw ca("config.invalid", "identity.jwtLeewaySeconds must be a non-negative integer");
  const positive = Object.entries(c).filter(([k, v]) => k !== "jwtLeewaySeconds" && (!Number.isInteger(v) || v < 1));
  if (positive.length) throw ca("config.invalid", `identity.${positive[0]![0]} must be a positive integer`);
  if (c.x509SvidTtlSeconds > c.maxSvidTtlSeconds || c.jwtSvidTtlSeconds > c.maxSvidTtlSeconds) {
    throw ca(
      "config.invalid",
      "identity.x509SvidTtlSeconds and identity.jwtSvidTtlSeconds must not exceed identity.maxSvidTtlSeconds",
    );
  }
  if (c.caTtlSeconds < 2 * Math.max(c.x509SvidTtlSeconds, c.jwtSvidTtlSeconds)) {
    throw ca("config.invalid", "identity.caTtlSeconds must be at least twice the default SVID TTLs");
  }
  if (c.rootCaTtlSeconds < 2 * c.caTtlSeconds)
    throw ca("config.invalid", "identity.rootCaTtlSeconds must be at least twice identity.caTtlSeconds");
}

function normalizeIssuer(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw ca("config.invalid", `the OIDC issuer must be an absolute URL (got ${JSON.stringify(url)})`);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") throw ca("config.invalid", "the OIDC issuer must be an http(s) URL");
  if (u.search || u.hash) throw ca("config.invalid", "the OIDC issuer must not have a query or fragment");
  return u.toString().replace(/\/+$/, "");
}

/** Loads or creates the authority for a trust domain. */
export async function createAuthority(opts: LocalAuthorityOptions): Promise<LocalAuthority> {
  const a = new LocalAuthority(opts);
  await a.init();
  return a;
}
