import { X509Certificate } from "node:crypto";
import { createLocalJWKSet, jwtVerify } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import type { SpiffeBundleDocument, X509SvidMaterial } from "../types.js";
import type { LocalAuthority } from "./authority.js";
import { authorityFixture, type AuthorityFixture } from "./test-support/fixtures.js";

const ID = "spiffe://hexr.local/agent/acme-corp/researcher/main";
const AUD = "spiffe://hexr.local/system/platform";
const HOUR = 3600_000;
const CONFIG = { caTtlSeconds: 6 * 3600, rootCaTtlSeconds: 24 * 3600, maxSvidTtlSeconds: 3600, jwtSvidTtlSeconds: 1800 };

/**
 * A relying party that is not the authority: it holds a copy of the bundle, picks up a changed bundle
 * only `lagMs` after the change (as a real peer polling at the refresh hint would), and verifies
 * SVIDs with node:crypto and jose.
 */
class BundleVerifier {
  private roots: X509Certificate[] = [];
  private jwks: ReturnType<typeof createLocalJWKSet> | undefined;
  private pending: Array<{ at: number; bundle: SpiffeBundleDocument }> = [];
  constructor(
    private readonly now: () => number,
    bundle: SpiffeBundleDocument,
    private readonly lagMs: number,
  ) {
    this.apply(bundle);
  }

  changed(bundle: SpiffeBundleDocument): void {
    this.pending.push({ at: this.now() + this.lagMs, bundle });
  }

  /** Applies the bundle updates whose lag has passed. */
  catchUp(): void {
    while (this.pending.length && this.pending[0]!.at <= this.now()) this.apply(this.pending.shift()!.bundle);
  }

  private apply(bundle: SpiffeBundleDocument): void {
    this.roots = bundle.keys
      .filter((k) => k.use === "x509-svid")
      .map((k) => new X509Certificate(Buffer.from((k["x5c"] as string[])[0]!, "base64")));
    const keys = bundle.keys.filter((k) => k.use === "jwt-svid").map(({ use: _use, ...k }) => k);
    this.jwks = createLocalJWKSet({ keys } as never);
  }

  x509(svid: X509SvidMaterial): boolean {
    const [leaf, inter] = svid.certChainDer.map((d) => new X509Certificate(d));
    const now = this.now();
    for (const c of [leaf!, inter!]) if (now < Date.parse(c.validFrom) || now > Date.parse(c.validTo)) return false;
    if (!leaf!.checkIssued(inter!) || !leaf!.verify(inter!.publicKey)) return false;
    return this.roots.some((r) => inter!.checkIssued(r) && inter!.verify(r.publicKey) && now <= Date.parse(r.validTo));
  }

  async jwt(token: string): Promise<boolean> {
    try {
      await jwtVerify(token, this.jwks!, { audience: AUD, algorithms: ["ES256"], currentDate: new Date(this.now()) });
      return true;
    } catch {
      return false;
    }
  }
}

let f: AuthorityFixture | undefined;
afterEach(async () => {
  await f?.dispose();
  f = undefined;
});

function kid(a: LocalAuthority): string {
  return a.status().slots.find((s) => s.state === "active")!.jwtKeyId;
}

describe("CA rotation", () => {
  it("prepare publishes, activate switches signers, retire removes only when safe", async () => {
    f = await authorityFixture({ config: CONFIG });
    const a = f.authority;
    const bundleChanges: number[] = [];
    const activations: string[] = [];
    a.onBundleChange(() => bundleChanges.push(a.bundle().spiffe_sequence));
    a.onActivation(() => activations.push(kid(a)));
    const seq0 = a.bundle().spiffe_sequence;
    const kid0 = kid(a);
    const oldJwt = await a.mintJwtSvid(ID, [AUD]);
    const oldX509 = await a.mintX509Svid(ID);

    await expect(a.activate()).rejects.toMatchObject({ code: "identity.nothing_prepared" });
    await a.prepare();
    await expect(a.prepare()).rejects.toMatchObject({ code: "identity.rotation_in_progress" });
    let b = a.bundle();
    expect(b.spiffe_sequence).toBe(seq0 + 1);
    expect(b.keys.filter((k) => k.use === "jwt-svid")).toHaveLength(2);
    expect(b.keys.filter((k) => k.use === "x509-svid")).toHaveLength(1); // the root is reused
    expect(a.jwks().keys).toHaveLength(2);
    expect(bundleChanges).toEqual([seq0 + 1]);
    expect(kid(a)).toBe(kid0); // prepared keys do not sign yet

    await a.activate();
    const kid1 = kid(a);
    expect(kid1).not.toBe(kid0);
    expect(activations).toEqual([kid1]);
    expect(a.bundle()).toEqual(b); // activation does not change the bundle
    const newJwt = await a.mintJwtSvid(ID, [AUD]);
    expect(JSON.parse(Buffer.from(newJwt.token.split(".")[0]!, "base64url").toString())["kid"]).toBe(kid1);
    const newX509 = await a.mintX509Svid(ID);
    expect(newX509.certChainDer[1]!.equals(oldX509.certChainDer[1]!)).toBe(false);
    // Both generations verify during the overlap.
    await expect(a.validateJwtSvid(oldJwt.token, AUD)).resolves.toBeDefined();
    expect(a.verifyX509Svid(oldX509.certChainDer).spiffeId).toBe(ID);
    expect(a.verifyX509Svid(newX509.certChainDer).spiffeId).toBe(ID);

    // Too early: old SVIDs may still be live.
    await expect(a.retire()).rejects.toMatchObject({ code: "identity.rotation_not_safe", kind: "failed_precondition" });
    f.clock.advance(HOUR + 31_000);
    expect(await a.retire()).toHaveLength(1);
    b = a.bundle();
    expect(b.spiffe_sequence).toBe(seq0 + 2);
    expect(b.keys.filter((k) => k.use === "jwt-svid").map((k) => k["kid"])).toEqual([kid1]);
    expect(bundleChanges).toEqual([seq0 + 1, seq0 + 2]);
    expect(await a.retire()).toEqual([]);
    // The retired key's private material is gone from storage.
    const rows = await f.storage.all<{ state: string; jwt_sealed_key: string | null }>(
      "SELECT state, jwt_sealed_key FROM identity_slots",
    );
    expect(rows.find((r) => r.state === "retired")!.jwt_sealed_key).toBeNull();
  });

  it("rotates the root too: both roots are in the bundle until the old one is retired", async () => {
    f = await authorityFixture({ config: CONFIG });
    const a = f.authority;
    const oldRoot = a.x509Authorities()[0]!;
    const old = await a.mintX509Svid(ID);
    await a.prepare({ newRoot: true });
    expect(a.x509Authorities()).toHaveLength(2);
    await a.activate();
    const fresh = await a.mintX509Svid(ID);
    expect(a.verifyX509Svid(old.certChainDer).spiffeId).toBe(ID);
    expect(a.verifyX509Svid(fresh.certChainDer).spiffeId).toBe(ID);
    const freshInter = new X509Certificate(fresh.certChainDer[1]!);
    expect(freshInter.checkIssued(new X509Certificate(oldRoot))).toBe(false);
    f.clock.advance(HOUR + 31_000);
    await a.retire();
    expect(a.x509Authorities()).toHaveLength(1);
    expect(a.x509Authorities()[0]!.equals(oldRoot)).toBe(false);
    // The old root's key is dropped once nothing uses it.
    const roots = await f.storage.all<{ sealed_key: string | null }>("SELECT sealed_key FROM identity_roots ORDER BY created_at");
    expect(roots.map((r) => r.sealed_key === null)).toEqual([true, false]);
  });

  it("force-retires at once (compromise), revoking the old key's tokens", async () => {
    f = await authorityFixture({ config: CONFIG });
    const a = f.authority;
    const old = await a.mintJwtSvid(ID, [AUD]);
    await a.prepare();
    await a.activate();
    expect(await a.retire({ force: true })).toHaveLength(1);
    await expect(a.validateJwtSvid(old.token, AUD)).rejects.toMatchObject({ details: { reason: "unknown_kid" } });
  });

  it("survives a restart in the middle of a rotation", async () => {
    f = await authorityFixture({ config: CONFIG });
    await f.authority.prepare();
    const again = await f.reopen();
    expect(again.bundle()).toEqual(f.authority.bundle());
    await again.activate();
    expect(kid(again)).not.toBe(kid(f.authority));
    // The first instance picks the change up at its next tick.
    await f.authority.tick();
    expect(kid(f.authority)).toBe(kid(again));
  });

  it("refuses to mint with an expired CA until the rotation job has run", async () => {
    f = await authorityFixture({ config: CONFIG });
    f.clock.advance(6 * HOUR);
    await expect(f.authority.mintX509Svid(ID)).rejects.toMatchObject({ code: "identity.ca_expired", kind: "unavailable" });
    await expect(f.authority.mintJwtSvid(ID, [AUD])).rejects.toMatchObject({ code: "identity.ca_expired" });
    expect(await f.authority.tick()).toEqual(["prepare", "activate"]);
    const svid = await f.authority.mintX509Svid(ID);
    expect(f.authority.verifyX509Svid(svid.certChainDer).spiffeId).toBe(ID);
  });

  it("replaces a CA that expired while the platform was down", async () => {
    f = await authorityFixture({ config: CONFIG });
    const before = kid(f.authority);
    f.clock.advance(7 * HOUR);
    const again = await f.reopen();
    expect(kid(again)).not.toBe(before);
    const svid = await again.mintX509Svid(ID);
    expect(svid.expiresAt).toBeGreaterThan(f.clock.now);
    expect(again.verifyX509Svid(svid.certChainDer).spiffeId).toBe(ID);
  });

  it("causes zero validation failures under continuous minting and validation", async () => {
    f = await authorityFixture({ config: CONFIG });
    const a = f.authority;
    // Peers see a new bundle 15 minutes late; activation comes hours after prepare, so they are ready.
    const verifier = new BundleVerifier(f.clock.fn, a.bundle(), 15 * 60_000);
    a.onBundleChange(() => verifier.changed(a.bundle()));
    const pool: Array<{ x509: X509SvidMaterial; jwt: string; expiresAt: number }> = [];
    const phases: string[] = [];
    const roots = new Set<string>();
    const kids = new Set<string>();
    let checks = 0;
    const failures: string[] = [];
    const step = 5 * 60_000;
    for (let t = 0; t < 3 * 6 * HOUR; t += step) {
      f.clock.advance(step);
      phases.push(...(await a.tick()));
      if (t === 8 * HOUR) {
        // An operator-driven root rotation in the middle of the automatic schedule.
        if (!a.status().slots.some((s) => s.state === "prepared")) {
          await a.prepare({ newRoot: true });
          phases.push("prepare-root");
        }
      }
      const x509 = await a.mintX509Svid(ID);
      const jwt = await a.mintJwtSvid(ID, [AUD], { ttlSeconds: 1800 });
      pool.push({ x509, jwt: jwt.token, expiresAt: Math.min(x509.expiresAt, jwt.expiresAt) });
      for (const r of a.x509Authorities()) roots.add(r.toString("base64"));
      kids.add(kid(a));
      const now = f.clock.now;
      verifier.catchUp();
      for (const item of pool.filter((p) => p.expiresAt > now)) {
        checks++;
        if (!verifier.x509(item.x509)) failures.push(`x509 (independent) at t=${t}`);
        if (!(await verifier.jwt(item.jwt))) failures.push(`jwt (independent) at t=${t}`);
        try {
          a.verifyX509Svid(item.x509.certChainDer);
          await a.validateJwtSvid(item.jwt, AUD);
        } catch (err) {
          failures.push(`authority at t=${t}: ${(err as Error).message}`);
        }
      }
    }
    expect(failures).toEqual([]);
    expect(checks).toBeGreaterThan(1000);
    expect(phases.filter((p) => p === "prepare").length).toBeGreaterThanOrEqual(3);
    expect(phases.filter((p) => p === "activate").length).toBeGreaterThanOrEqual(3);
    expect(phases.filter((p) => p === "retire").length).toBeGreaterThanOrEqual(2);
    expect(phases).toContain("prepare-root");
    expect(roots.size).toBeGreaterThanOrEqual(2);
    expect(kids.size).toBeGreaterThanOrEqual(4);
    // Retired keys really leave the bundle: at most the active, one old and one prepared slot remain.
    expect(a.bundle().keys.filter((k) => k.use === "jwt-svid").length).toBeLessThanOrEqual(3);
  });
});
