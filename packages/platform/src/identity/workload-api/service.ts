import { HexrError, isHexrError, parseSpiffeId } from "@hexr/core";
import { X509Certificate } from "node:crypto";
import type { Logger } from "pino";
import type { Authority, RegistrationEntry, Selector, WorkloadAttestor, X509SvidMaterial } from "../types.js";
import {
  toProtoStruct,
  type JwtBundlesResponseMessage,
  type JwtSvidRequestMessage,
  type JwtSvidResponseMessage,
  type ValidateJwtSvidRequestMessage,
  type ValidateJwtSvidResponseMessage,
  type X509BundlesResponseMessage,
  type X509SvidResponseMessage,
} from "./proto.js";

/** Where registration entries come from (the entry service's in-memory index). */
export interface EntrySource {
  match(selectors: readonly Selector[]): RegistrationEntry[] | Promise<RegistrationEntry[]>;
  onChange?(listener: () => void): () => void;
}

/** A caller as the transport established it: a kernel-verified pid that can be re-checked. */
export interface AttestableCaller {
  readonly pid: number;
  /** Throws unless the process that connected is still the one at `pid`. */
  assertAlive(): void;
}

export interface WorkloadApiServiceOptions {
  authority: Authority;
  entries: EntrySource;
  attestor: WorkloadAttestor;
  clock?: () => number;
  log?: Logger;
  /** JWT-SVIDs kept per (SPIFFE ID, audience set); callers choose audiences, so the cache is bounded. */
  jwtCacheSize?: number;
  /** Serve bundles and ValidateJWTSVID to callers that have no identity (SPIRE's allow_unauthenticated_verifiers). */
  allowUnauthenticatedVerifiers?: boolean;
}

export interface X509SvidState {
  message: X509SvidResponseMessage;
  /** Epoch ms when the soonest SVID reaches half its life and is replaced. */
  refreshAt: number;
}

interface CachedX509 {
  material: X509SvidMaterial;
  ttlSeconds: number;
  rotateAt: number;
  /** Bundle generation at which the chain was last checked against the trust anchors. */
  checkedGeneration: number;
}

interface CachedJwt {
  token: string;
  refreshAt: number;
}

/** Renewal at half life (as SPIRE does), measured from when we minted: leaves are backdated. */
const halfLife = (mintedAt: number, expiresAt: number) => mintedAt + Math.max(0, expiresAt - mintedAt) / 2;

const noIdentity = () =>
  new HexrError("workload_api.no_identity", "no identity issued: no registration entry matches this process", {
    kind: "permission_denied",
  });
const invalid = (message: string) => new HexrError("workload_api.invalid_request", message, { kind: "invalid_argument" });

/**
 * The SPIFFE Workload API, free of gRPC: who the caller is (attestation → entries), the SVIDs and
 * bundles it may have, and when they change. The server turns these into streams and unary replies.
 */
export class WorkloadApiService {
  private readonly authority: Authority;
  private readonly entries: EntrySource;
  private readonly attestor: WorkloadAttestor;
  private readonly clock: () => number;
  private readonly log: Logger | undefined;
  private readonly jwtCacheSize: number;
  private readonly allowUnauthenticatedVerifiers: boolean;
  private readonly x509Cache = new Map<string, CachedX509>();
  private readonly minting = new Map<string, Promise<CachedX509>>();
  private readonly jwtCache = new Map<string, CachedJwt>();
  private readonly listeners = new Set<() => void>();
  private readonly unsubscribe: Array<() => void> = [];
  private bundleGeneration = 0;
  private lastSweep = 0;

  constructor(opts: WorkloadApiServiceOptions) {
    this.authority = opts.authority;
    this.entries = opts.entries;
    this.attestor = opts.attestor;
    this.clock = opts.clock ?? Date.now;
    this.log = opts.log;
    this.jwtCacheSize = opts.jwtCacheSize ?? 1000;
    this.allowUnauthenticatedVerifiers = opts.allowUnauthenticatedVerifiers ?? false;
    this.unsubscribe.push(
      this.authority.onBundleChange(() => {
        this.bundleGeneration++;
        // A token from a retired key must not be handed out again.
        this.jwtCache.clear();
        this.emit();
      }),
    );
    if (this.entries.onChange) this.unsubscribe.push(this.entries.onChange(() => this.emit()));
  }

  /** Called when anything a stream sends may have changed (bundle, entries). */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    for (const u of this.unsubscribe.splice(0)) u();
    this.listeners.clear();
  }

  /**
   * The entries that apply to the caller, most specific first (so an entry pinned to this very
   * process — `hexr run` — is the default identity), after re-checking that the pid was not reused.
   */
  async identities(caller: AttestableCaller): Promise<RegistrationEntry[]> {
    const selectors = await this.attestor.attest(caller.pid);
    const matched = await this.entries.match(selectors);
    caller.assertAlive();
    const now = this.clock();
    return matched
      .filter((e) => e.expiresAt === null || e.expiresAt > now)
      .map((e, i) => ({ e, i }))
      .sort((a, b) => b.e.selectors.length - a.e.selectors.length || a.i - b.i)
      .map(({ e }) => e);
  }

  async x509SvidState(caller: AttestableCaller): Promise<X509SvidState> {
    const entries = await this.identities(caller);
    if (entries.length === 0) throw noIdentity();
    const bundle = this.x509BundleDer();
    const cached = await Promise.all(entries.map((e) => this.x509For(e)));
    this.sweep();
    return {
      message: {
        svids: cached.map((c) => ({
          spiffe_id: c.material.spiffeId,
          x509_svid: Buffer.concat(c.material.certChainDer),
          x509_svid_key: c.material.privateKeyPkcs8Der,
          bundle,
          hint: "",
        })),
        crl: [],
        federated_bundles: {},
      },
      refreshAt: Math.min(...cached.map((c) => c.rotateAt)),
    };
  }

  async x509BundlesState(caller: AttestableCaller): Promise<X509BundlesResponseMessage> {
    await this.requireVerifier(caller);
    return { crl: [], bundles: { [this.trustDomainId()]: this.x509BundleDer() } };
  }

  async jwtBundlesState(caller: AttestableCaller): Promise<JwtBundlesResponseMessage> {
    await this.requireVerifier(caller);
    // Only keys for JWT-SVIDs: the spec forbids other uses in a JWT bundle.
    const keys = this.authority.bundle().keys.filter((k) => k.use === "jwt-svid");
    return { bundles: { [this.trustDomainId()]: Buffer.from(JSON.stringify({ keys }), "utf8") } };
  }

  async fetchJwtSvid(caller: AttestableCaller, req: JwtSvidRequestMessage): Promise<JwtSvidResponseMessage> {
    const audience = [...new Set(req.audience)];
    if (audience.length === 0) throw invalid("audience must be specified");
    if (audience.some((a) => a.length === 0 || a.length > 1024)) throw invalid("each audience must be 1-1024 characters");
    if (req.spiffe_id) {
      try {
        parseSpiffeId(req.spiffe_id);
      } catch (err) {
        throw invalid(isHexrError(err) ? err.message : "invalid spiffe_id");
      }
    }
    const entries = await this.identities(caller);
    const wanted = req.spiffe_id ? entries.filter((e) => e.spiffeId === req.spiffe_id) : entries;
    if (wanted.length === 0) {
      throw req.spiffe_id
        ? new HexrError("workload_api.no_identity", `this process is not entitled to ${req.spiffe_id}`, {
            kind: "permission_denied",
          })
        : noIdentity();
    }
    const seen = new Set<string>();
    const svids: JwtSvidResponseMessage["svids"] = [];
    for (const e of wanted) {
      if (seen.has(e.spiffeId)) continue;
      seen.add(e.spiffeId);
      svids.push({ spiffe_id: e.spiffeId, svid: await this.jwtFor(e, audience), hint: "" });
    }
    return { svids };
  }

  async validateJwtSvid(caller: AttestableCaller, req: ValidateJwtSvidRequestMessage): Promise<ValidateJwtSvidResponseMessage> {
    if (!req.audience) throw invalid("audience must be specified");
    if (!req.svid) throw invalid("svid must be specified");
    await this.requireVerifier(caller);
    let result;
    try {
      result = await this.authority.validateJwtSvid(req.svid, req.audience);
    } catch (err) {
      if (isHexrError(err) && err.kind !== "internal" && err.kind !== "unavailable") {
        throw new HexrError("workload_api.invalid_jwt_svid", err.message, { kind: "invalid_argument" });
      }
      throw err;
    }
    return { spiffe_id: result.spiffeId, claims: toProtoStruct(result.claims) };
  }

  private async requireVerifier(caller: AttestableCaller): Promise<void> {
    if (this.allowUnauthenticatedVerifiers) return;
    if ((await this.identities(caller)).length === 0) throw noIdentity();
  }

  private trustDomainId(): string {
    return `spiffe://${this.authority.trustDomain}`;
  }

  private x509BundleDer(): Buffer {
    return Buffer.concat(this.authority.x509Authorities());
  }

  private async x509For(entry: RegistrationEntry): Promise<CachedX509> {
    const now = this.clock();
    const hit = this.x509Cache.get(entry.id);
    if (hit && hit.material.spiffeId === entry.spiffeId && hit.ttlSeconds === entry.x509SvidTtlSeconds && now < hit.rotateAt) {
      if (hit.checkedGeneration === this.bundleGeneration) return hit;
      if (this.anchored(hit.material)) {
        hit.checkedGeneration = this.bundleGeneration;
        return hit;
      }
    }
    let pending = this.minting.get(entry.id);
    if (!pending) {
      pending = (async () => {
        const mintedAt = this.clock();
        const material = await this.authority.mintX509Svid(entry.spiffeId, { ttlSeconds: entry.x509SvidTtlSeconds });
        const fresh: CachedX509 = {
          material,
          ttlSeconds: entry.x509SvidTtlSeconds,
          rotateAt: halfLife(mintedAt, material.expiresAt),
          checkedGeneration: this.bundleGeneration,
        };
        this.x509Cache.set(entry.id, fresh);
        this.log?.debug(
          { entry: entry.id, spiffeId: entry.spiffeId, expiresAt: material.expiresAt },
          "workload api: X.509-SVID minted",
        );
        return fresh;
      })().finally(() => this.minting.delete(entry.id));
      this.minting.set(entry.id, pending);
    }
    return pending;
  }

  /** After a bundle change: does the SVID's chain still end at an authority of the bundle? */
  private anchored(material: X509SvidMaterial): boolean {
    const top = material.certChainDer[material.certChainDer.length - 1];
    if (!top) return false;
    const cert = new X509Certificate(top);
    return this.authority.x509Authorities().some((der) => {
      const anchor = new X509Certificate(der);
      return der.equals(top) || (cert.checkIssued(anchor) && cert.verify(anchor.publicKey));
    });
  }

  private async jwtFor(entry: RegistrationEntry, audience: string[]): Promise<string> {
    const key = `${entry.spiffeId}\n${entry.jwtSvidTtlSeconds}\n${[...audience].sort().join("\n")}`;
    const now = this.clock();
    const hit = this.jwtCache.get(key);
    if (hit && now < hit.refreshAt) {
      this.jwtCache.delete(key);
      this.jwtCache.set(key, hit);
      return hit.token;
    }
    const svid = await this.authority.mintJwtSvid(entry.spiffeId, audience, { ttlSeconds: entry.jwtSvidTtlSeconds });
    this.jwtCache.set(key, { token: svid.token, refreshAt: halfLife(now, svid.expiresAt) });
    while (this.jwtCache.size > this.jwtCacheSize) this.jwtCache.delete(this.jwtCache.keys().next().value as string);
    return svid.token;
  }

  /** Drops expired SVIDs at most once a minute, so entries that are gone do not pin keys in memory. */
  private sweep(): void {
    const now = this.clock();
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    for (const [id, c] of this.x509Cache) if (c.material.expiresAt <= now) this.x509Cache.delete(id);
    for (const [k, j] of this.jwtCache) if (j.refreshAt <= now) this.jwtCache.delete(k);
  }

  private emit(): void {
    for (const l of [...this.listeners]) {
      try {
        l();
      } catch (err) {
        this.log?.error({ err }, "workload api: change listener failed");
      }
    }
  }
}
