import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { splitDerCertificates } from "../../packages/sdk/src/identity/svid.js";
import { startIdentityPlatform, type IdentityPlatform } from "./helpers.js";
import {
  createReferenceClient,
  type BundlesResponseMsg,
  type ReferenceClient,
  type X509SvidResponseMsg,
} from "./reference-client.js";

// The platform's Workload API seen by a client generated from the spec's proto (grpc-js), with the
// SVIDs checked by OpenSSL and jose, independent verifiers.
let p: IdentityPlatform;
let client: ReferenceClient;
let tmp: string;
let res: X509SvidResponseMsg;
const ME = "spiffe://hexr.local/agent/acme-corp/researcher/main";

const pem = (c: X509Certificate) => c.toString();
function opensslText(cert: X509Certificate): string {
  const f = join(tmp, `c-${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(f, pem(cert));
  return execFileSync("openssl", ["x509", "-in", f, "-noout", "-text"], { encoding: "utf8" });
}
/** The value lines of one extension in `openssl x509 -text`, and whether it is critical. */
function extension(text: string, name: string): { critical: boolean; value: string } | undefined {
  const m = new RegExp(`X509v3 ${name}:( critical)?[ \\t]*\\n\\s+(.+)`).exec(text);
  return m ? { critical: Boolean(m[1]), value: m[2]!.trim() } : undefined;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "hexr-ref-"));
  p = await startIdentityPlatform();
  await p.registerProcess(process.pid, ME);
  client = createReferenceClient(p.socketPath);
  res = await client.fetchX509Svid();
});
afterAll(async () => {
  client.close();
  await p.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

describe("X.509-SVID (spec rules, checked by OpenSSL)", () => {
  it("the leaf has exactly one URI SAN, the SPIFFE ID, and no other SANs", () => {
    const [leaf] = splitDerCertificates(res.svids[0]!.x509_svid);
    const san = extension(opensslText(leaf!), "Subject Alternative Name");
    expect(san?.value).toBe(`URI:${ME}`);
    expect(res.svids[0]!.spiffe_id).toBe(ME);
  });

  it("the leaf is cA=false, KeyUsage critical digitalSignature only, EKU serverAuth + clientAuth", () => {
    const [leaf] = splitDerCertificates(res.svids[0]!.x509_svid);
    const text = opensslText(leaf!);
    expect(extension(text, "Basic Constraints")).toEqual({ critical: true, value: "CA:FALSE" });
    expect(extension(text, "Key Usage")).toEqual({ critical: true, value: "Digital Signature" });
    expect(extension(text, "Extended Key Usage")?.value).toBe("TLS Web Server Authentication, TLS Web Client Authentication");
    expect(text).toMatch(/Public Key Algorithm: id-ecPublicKey[\s\S]*NIST CURVE: P-256/);
  });

  it("the signing certificates are CAs with keyCertSign", () => {
    const [, ...intermediates] = splitDerCertificates(res.svids[0]!.x509_svid);
    const roots = splitDerCertificates(res.svids[0]!.bundle);
    for (const ca of [...intermediates, ...roots]) {
      const text = opensslText(ca);
      expect(extension(text, "Basic Constraints")?.value).toMatch(/^CA:TRUE/);
      expect(extension(text, "Key Usage")?.value).toMatch(/Certificate Sign/);
    }
  });

  it("the chain verifies against the bundle (node:crypto and openssl verify, as client and as server)", () => {
    const chain = splitDerCertificates(res.svids[0]!.x509_svid);
    const roots = splitDerCertificates(res.svids[0]!.bundle);
    for (let i = 0; i < chain.length - 1; i++) expect(chain[i]!.verify(chain[i + 1]!.publicKey)).toBe(true);
    const top = chain[chain.length - 1]!;
    expect(roots.some((r) => top.checkIssued(r) && top.verify(r.publicKey))).toBe(true);
    writeFileSync(join(tmp, "leaf.pem"), pem(chain[0]!));
    writeFileSync(join(tmp, "untrusted.pem"), chain.slice(1).map(pem).join(""));
    writeFileSync(join(tmp, "bundle.pem"), roots.map(pem).join(""));
    for (const purpose of ["sslclient", "sslserver"]) {
      const out = execFileSync(
        "openssl",
        [
          "verify",
          "-purpose",
          purpose,
          "-CAfile",
          join(tmp, "bundle.pem"),
          "-untrusted",
          join(tmp, "untrusted.pem"),
          join(tmp, "leaf.pem"),
        ],
        { encoding: "utf8" },
      );
      expect(out.trim()).toBe(`${join(tmp, "leaf.pem")}: OK`);
    }
    // And not against an unrelated CA.
    const other = execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-subj",
        "/CN=other",
        "-days",
        "1",
      ],
      {
        encoding: "utf8",
      },
    );
    writeFileSync(join(tmp, "other.pem"), other);
    expect(() =>
      execFileSync(
        "openssl",
        ["verify", "-CAfile", join(tmp, "other.pem"), "-untrusted", join(tmp, "untrusted.pem"), join(tmp, "leaf.pem")],
        { stdio: "pipe" },
      ),
    ).toThrow();
  });

  it("the bundle in the SVID message equals FetchX509Bundles and the SPIFFE bundle's x509-svid keys", async () => {
    const [b] = await client.collect<BundlesResponseMsg>("FetchX509Bundles", 1);
    expect(b!.bundles["spiffe://hexr.local"]).toEqual(res.svids[0]!.bundle);
    const doc = (await (await p.api("/api/v1/identity/bundle")).json()) as { keys: Array<{ use: string; x5c?: string[] }> };
    const x5c = doc.keys.filter((k) => k.use === "x509-svid").map((k) => Buffer.from(k.x5c![0]!, "base64"));
    expect(Buffer.concat(x5c)).toEqual(res.svids[0]!.bundle);
  });
});

describe("JWT-SVID (verified with jose against the platform's OIDC discovery and /keys)", () => {
  it("FetchJWTSVID tokens verify against /keys with the discovered issuer", async () => {
    const { svids } = await client.fetchJwtSvid({ audience: ["https://sts.example.com"] });
    const token = svids[0]!.svid;
    const discovery = (await (await fetch(`${p.url}/.well-known/openid-configuration`)).json()) as {
      issuer: string;
      jwks_uri: string;
    };
    expect(discovery.jwks_uri).toBe(`${discovery.issuer}/keys`);
    const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      audience: "https://sts.example.com",
      issuer: discovery.issuer,
      algorithms: ["ES256"],
    });
    expect(payload.sub).toBe(ME);
    expect(typeof payload.exp).toBe("number");
    expect(Object.keys(protectedHeader).sort()).toEqual(expect.arrayContaining(["alg", "kid"]));
    expect(Object.keys(decodeProtectedHeader(token)).every((k) => ["alg", "kid", "typ"].includes(k))).toBe(true);
    await expect(jwtVerify(token, jwks, { audience: "someone-else" })).rejects.toThrow();
  });

  it("FetchJWTBundles carries the same keys as /keys", async () => {
    const [b] = await client.collect<BundlesResponseMsg>("FetchJWTBundles", 1);
    const fromApi = JSON.parse(b!.bundles["spiffe://hexr.local"]!.toString("utf8")) as {
      keys: Array<{ kid: string; x: string }>;
    };
    const fromKeys = (await (await fetch(`${p.url}/keys`)).json()) as { keys: Array<{ kid: string; x: string }> };
    expect(fromApi.keys.map((k) => [k.kid, k.x]).sort()).toEqual(fromKeys.keys.map((k) => [k.kid, k.x]).sort());
  });
});
