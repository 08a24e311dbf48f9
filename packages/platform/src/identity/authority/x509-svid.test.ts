import { execFileSync } from "node:child_process";
import { createPrivateKey, createPublicKey, sign, verify, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authorityFixture, type AuthorityFixture } from "./test-support/fixtures.js";
import {
  KEY_USAGE,
  parseCertificate,
  readBasicConstraints,
  readExtKeyUsage,
  readKeyIdentifier,
  readKeyUsage,
  readSubjectAltNames,
  X509_OID,
} from "./x509.js";

const ID = "spiffe://hexr.local/agent/acme-corp/researcher/main";
const pem = (der: Buffer) => new X509Certificate(der).toString();

let f: AuthorityFixture;
let dir: string;

beforeAll(async () => {
  f = await authorityFixture();
  dir = mkdtempSync(join(tmpdir(), "hexr-x509-"));
});
afterAll(async () => {
  await f.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe("X.509-SVID leaf", () => {
  it("follows every rule of the X.509-SVID spec", async () => {
    const svid = await f.authority.mintX509Svid(ID);
    expect(svid.spiffeId).toBe(ID);
    expect(svid.certChainDer).toHaveLength(2);
    const leaf = parseCertificate(svid.certChainDer[0]!);
    const node = new X509Certificate(svid.certChainDer[0]!);

    expect(leaf.version).toBe(3);
    expect(node.ca).toBe(false);
    expect(leaf.signatureAlgorithm).toBe("1.2.840.10045.4.3.2");

    // Exactly one URI SAN, and it is the SPIFFE ID.
    const sans = readSubjectAltNames(leaf.extensions.get(X509_OID.subjectAltName)!);
    expect(sans.filter((s) => s.type === "uri")).toEqual([{ type: "uri", value: ID }]);
    expect(node.subjectAltName).toBe(`URI:${ID}`);

    // cA=false, basic constraints critical.
    const bc = leaf.extensions.get(X509_OID.basicConstraints)!;
    expect(bc.critical).toBe(true);
    expect(readBasicConstraints(bc)).toEqual({ ca: false, pathLen: undefined });

    // KeyUsage critical, digitalSignature only.
    const ku = leaf.extensions.get(X509_OID.keyUsage)!;
    expect(ku.critical).toBe(true);
    expect([...readKeyUsage(ku)]).toEqual([KEY_USAGE.digitalSignature]);

    // EKU serverAuth + clientAuth.
    expect(readExtKeyUsage(leaf.extensions.get(X509_OID.extKeyUsage)!).sort()).toEqual(
      [X509_OID.serverAuth, X509_OID.clientAuth].sort(),
    );
    expect(node.keyUsage?.sort()).toEqual([X509_OID.serverAuth, X509_OID.clientAuth].sort());

    // SKI present; AKI = the intermediate's SKI.
    const inter = parseCertificate(svid.certChainDer[1]!);
    expect(readKeyIdentifier(leaf.extensions.get(X509_OID.subjectKeyIdentifier)!, "subject")).toHaveLength(20);
    expect(readKeyIdentifier(leaf.extensions.get(X509_OID.authorityKeyIdentifier)!, "authority")).toEqual(
      readKeyIdentifier(inter.extensions.get(X509_OID.subjectKeyIdentifier)!, "subject"),
    );
    // No extension appears twice.
    expect(new Set(leaf.extensionOrder).size).toBe(leaf.extensionOrder.length);

    // ECDSA P-256 key.
    expect(node.publicKey.asymmetricKeyType).toBe("ec");
    expect(node.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
  });

  it("has a default TTL of one hour, times consistent with the material", async () => {
    const svid = await f.authority.mintX509Svid(ID);
    const leaf = parseCertificate(svid.certChainDer[0]!);
    expect(leaf.notAfter).toBe(svid.expiresAt);
    expect(leaf.notBefore).toBe(svid.issuedAt);
    expect(svid.expiresAt).toBe(Math.floor((f.clock.now + 3600_000) / 1000) * 1000);
    expect(svid.issuedAt).toBeLessThanOrEqual(f.clock.now);
  });

  it("honours a requested TTL and rejects bad ones", async () => {
    const svid = await f.authority.mintX509Svid(ID, { ttlSeconds: 120 });
    expect(svid.expiresAt).toBe(Math.floor((f.clock.now + 120_000) / 1000) * 1000);
    for (const ttl of [0, -5, 1.5, 86_401]) {
      await expect(f.authority.mintX509Svid(ID, { ttlSeconds: ttl })).rejects.toMatchObject({ code: "identity.invalid_ttl" });
    }
  });

  it("gives each SVID a fresh key pair and a distinct random serial", async () => {
    const a = await f.authority.mintX509Svid(ID);
    const b = await f.authority.mintX509Svid(ID);
    expect(parseCertificate(a.certChainDer[0]!).serialHex).not.toBe(parseCertificate(b.certChainDer[0]!).serialHex);
    expect(a.privateKeyPkcs8Der.equals(b.privateKeyPkcs8Der)).toBe(false);
    expect(parseCertificate(a.certChainDer[0]!).serialHex).toHaveLength(32);
  });

  it("hands out a PKCS#8 private key that belongs to the certificate", async () => {
    const svid = await f.authority.mintX509Svid(ID);
    const key = createPrivateKey({ key: svid.privateKeyPkcs8Der, format: "der", type: "pkcs8" });
    expect(key.asymmetricKeyType).toBe("ec");
    const cert = new X509Certificate(svid.certChainDer[0]!);
    expect(cert.checkPrivateKey(key)).toBe(true);
    const msg = Buffer.from("hello");
    expect(verify("sha256", msg, cert.publicKey, sign("sha256", msg, key))).toBe(true);
    expect(
      createPublicKey(key).export({ format: "der", type: "spki" }).equals(parseCertificate(svid.certChainDer[0]!).spkiDer),
    ).toBe(true);
  });

  it("adds DNS SANs besides the single URI SAN and rejects invalid DNS names", async () => {
    const svid = await f.authority.mintX509Svid("spiffe://hexr.local/system/platform", {
      dnsNames: ["localhost", "hexr.example.com"],
    });
    const sans = readSubjectAltNames(parseCertificate(svid.certChainDer[0]!).extensions.get(X509_OID.subjectAltName)!);
    expect(sans).toEqual([
      { type: "uri", value: "spiffe://hexr.local/system/platform" },
      { type: "dns", value: "localhost" },
      { type: "dns", value: "hexr.example.com" },
    ]);
    for (const bad of ["", "-bad.example", "a..b", "spaces here", "x".repeat(64)]) {
      await expect(f.authority.mintX509Svid(ID, { dnsNames: [bad] })).rejects.toMatchObject({
        code: "identity.invalid_dns_name",
      });
    }
  });

  it("refuses IDs that are invalid, have no path, or belong to another trust domain", async () => {
    await expect(f.authority.mintX509Svid("spiffe://hexr.local")).rejects.toMatchObject({ code: "identity.invalid_spiffe_id" });
    await expect(f.authority.mintX509Svid("spiffe://other.example/agent/a/b/c")).rejects.toMatchObject({
      code: "identity.foreign_trust_domain",
    });
    for (const bad of [
      "spiffe://hexr.local/a//b",
      "https://hexr.local/x",
      "spiffe://hexr.local/x/",
      "spiffe://HEXR.local/x",
      "spiffe://hexr.local/a?b",
    ]) {
      await expect(f.authority.mintX509Svid(bad)).rejects.toMatchObject({ code: "spiffe.invalid_id" });
    }
  });
});

describe("signing certificates and the chain", () => {
  it("root and intermediate are CA certificates with keyCertSign and a trust-domain URI SAN", async () => {
    const svid = await f.authority.mintX509Svid(ID);
    const [rootDer] = f.authority.x509Authorities();
    for (const [der, pathLen] of [
      [rootDer!, undefined],
      [svid.certChainDer[1]!, 0],
    ] as const) {
      const c = parseCertificate(der);
      const bc = c.extensions.get(X509_OID.basicConstraints)!;
      expect(bc.critical).toBe(true);
      expect(readBasicConstraints(bc)).toEqual({ ca: true, pathLen });
      const ku = c.extensions.get(X509_OID.keyUsage)!;
      expect(ku.critical).toBe(true);
      expect([...readKeyUsage(ku)].sort()).toEqual([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign]);
      expect(readSubjectAltNames(c.extensions.get(X509_OID.subjectAltName)!)).toEqual([
        { type: "uri", value: "spiffe://hexr.local" },
      ]);
      expect(new X509Certificate(der).ca).toBe(true);
    }
    const root = new X509Certificate(rootDer!);
    expect(root.checkIssued(root) && root.verify(root.publicKey)).toBe(true);
  });

  it("verifies leaf → intermediate → root with node:crypto", async () => {
    const svid = await f.authority.mintX509Svid(ID);
    const leaf = new X509Certificate(svid.certChainDer[0]!);
    const inter = new X509Certificate(svid.certChainDer[1]!);
    const root = new X509Certificate(f.authority.x509Authorities()[0]!);
    expect(leaf.checkIssued(inter)).toBe(true);
    expect(leaf.verify(inter.publicKey)).toBe(true);
    expect(inter.checkIssued(root)).toBe(true);
    expect(inter.verify(root.publicKey)).toBe(true);
    expect(leaf.verify(root.publicKey)).toBe(false);
  });

  it("passes `openssl verify` with the bundle root as CA file, for client and server purposes", async () => {
    const svid = await f.authority.mintX509Svid(ID, { dnsNames: ["localhost"] });
    const rootPath = join(dir, "root.pem");
    const interPath = join(dir, "intermediate.pem");
    const leafPath = join(dir, "leaf.pem");
    writeFileSync(rootPath, f.authority.x509Authorities().map(pem).join(""));
    writeFileSync(interPath, pem(svid.certChainDer[1]!));
    writeFileSync(leafPath, pem(svid.certChainDer[0]!));
    for (const purpose of ["sslclient", "sslserver"]) {
      const out = execFileSync(
        "openssl",
        ["verify", "-x509_strict", "-purpose", purpose, "-CAfile", rootPath, "-untrusted", interPath, leafPath],
        {
          encoding: "utf8",
        },
      );
      expect(out.trim()).toBe(`${leafPath}: OK`);
    }
    // Without the intermediate the chain cannot be built: openssl fails (exit code != 0).
    expect(() => execFileSync("openssl", ["verify", "-CAfile", rootPath, leafPath], { stdio: "pipe" })).toThrow();
    // And openssl's own reading of the extensions agrees with ours.
    const text = execFileSync("openssl", ["x509", "-in", leafPath, "-noout", "-text"], { encoding: "utf8" });
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\s*\n/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).toContain(`URI:${ID}, DNS:localhost`);
  });

  it("verifyX509Svid accepts minted SVIDs and rejects broken or foreign chains", async () => {
    const svid = await f.authority.mintX509Svid(ID);
    expect(f.authority.verifyX509Svid(svid.certChainDer)).toEqual({ spiffeId: ID, expiresAt: svid.expiresAt });
    // The intermediate alone is no SVID (it is a CA).
    expect(() => f.authority.verifyX509Svid([svid.certChainDer[1]!])).toThrow(/CA certificate/);
    // Leaf without its intermediate does not chain to the bundle.
    expect(() => f.authority.verifyX509Svid([svid.certChainDer[0]!])).toThrow(/trust bundle/);
    // A chain from another authority (same trust domain name, other keys) is rejected.
    const other = await authorityFixture();
    try {
      const foreign = await other.authority.mintX509Svid(ID);
      expect(() => f.authority.verifyX509Svid(foreign.certChainDer)).toThrow(/trust bundle/);
      // Mixing: our leaf with their intermediate.
      expect(() => f.authority.verifyX509Svid([svid.certChainDer[0]!, foreign.certChainDer[1]!])).toThrow(/chain is broken/);
    } finally {
      await other.dispose();
    }
    // Garbage bytes.
    expect(() => f.authority.verifyX509Svid([Buffer.from("not a cert")])).toThrow(/cannot be parsed/);
    // Expired: the clock moves past the leaf's notAfter.
    const short = await f.authority.mintX509Svid(ID, { ttlSeconds: 60 });
    f.clock.advance(61_000);
    try {
      expect(() => f.authority.verifyX509Svid(short.certChainDer)).toThrow(/expired/);
    } finally {
      f.clock.advance(-61_000);
    }
  });
});
