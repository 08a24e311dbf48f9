import { createHmac, createPublicKey, generateKeyPairSync, sign } from "node:crypto";
import { createLocalJWKSet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authorityFixture, type AuthorityFixture } from "./test-support/fixtures.js";

const ID = "spiffe://hexr.local/agent/acme-corp/researcher/main";
const AUD = "spiffe://hexr.local/system/vault";

const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

let f: AuthorityFixture;
beforeAll(async () => {
  f = await authorityFixture({ issuer: "https://hexr.example.com/" });
});
afterAll(() => f.dispose());

function parts(token: string) {
  const [h, p, s] = token.split(".");
  return {
    header: JSON.parse(Buffer.from(h!, "base64url").toString()) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>,
    h: h!,
    p: p!,
    s: s!,
  };
}

/** Signs header/claims with a key the authority does not know (its own keys never leave it). */
function forge(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
) {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" }).toString("base64url")}`;
}

async function reason(token: string, audience = AUD): Promise<string> {
  try {
    await f.authority.validateJwtSvid(token, audience);
  } catch (err) {
    const e = err as { code?: string; details?: { reason?: string }; message: string };
    expect(e.code).toBe("identity.jwt_svid_invalid");
    if (token.length > 8) expect(e.message).not.toContain(token);
    return e.details!.reason!;
  }
  throw new Error("token was accepted");
}

describe("JWT-SVID minting", () => {
  it("has only alg/kid/typ in the header and sub/aud/exp/iat/iss in the claims", async () => {
    const svid = await f.authority.mintJwtSvid(ID, [AUD]);
    const { header, claims } = parts(svid.token);
    expect(Object.keys(header).sort()).toEqual(["alg", "kid", "typ"]);
    expect(header["alg"]).toBe("ES256");
    expect(header["typ"]).toBe("JWT");
    expect(header["kid"]).toBe(f.authority.jwks().keys[0]!["kid"]);
    const now = Math.floor(f.clock.now / 1000);
    expect(claims).toEqual({ sub: ID, aud: AUD, exp: now + 300, iat: now, iss: "https://hexr.example.com" });
    expect(svid.expiresAt).toBe((now + 300) * 1000);
  });

  it("keeps several audiences as an array and never lets extra claims override registered ones", async () => {
    const svid = await f.authority.mintJwtSvid(ID, [AUD, "aws"], {
      ttlSeconds: 60,
      extraClaims: { sub: "spiffe://hexr.local/evil", aud: "x", exp: 9e9, iss: "https://evil", tenant: "acme-corp" },
    });
    const { claims } = parts(svid.token);
    expect(claims["sub"]).toBe(ID);
    expect(claims["aud"]).toEqual([AUD, "aws"]);
    expect(claims["exp"]).toBe(Math.floor(f.clock.now / 1000) + 60);
    expect(claims["iss"]).toBe("https://hexr.example.com");
    expect(claims["tenant"]).toBe("acme-corp");
  });

  it("rejects bad mint requests", async () => {
    await expect(f.authority.mintJwtSvid(ID, [])).rejects.toMatchObject({ code: "identity.invalid_audience" });
    await expect(f.authority.mintJwtSvid(ID, [""])).rejects.toMatchObject({ code: "identity.invalid_audience" });
    await expect(f.authority.mintJwtSvid("spiffe://other.org/x", [AUD])).rejects.toMatchObject({
      code: "identity.foreign_trust_domain",
    });
    await expect(f.authority.mintJwtSvid(ID, [AUD], { ttlSeconds: 0 })).rejects.toMatchObject({ code: "identity.invalid_ttl" });
  });

  it("verifies with jose against the JWKS the OIDC /keys endpoint serves", async () => {
    const svid = await f.authority.mintJwtSvid(ID, [AUD]);
    const { payload, protectedHeader } = await jwtVerify(svid.token, createLocalJWKSet(f.authority.jwks() as never), {
      audience: AUD,
      issuer: "https://hexr.example.com",
      algorithms: ["ES256"],
      currentDate: new Date(f.clock.now),
    });
    expect(payload.sub).toBe(ID);
    expect(protectedHeader.kid).toBe(parts(svid.token).header["kid"]);
  });
});

describe("JWT-SVID validation", () => {
  it("accepts a valid token and returns its SPIFFE ID and claims", async () => {
    const svid = await f.authority.mintJwtSvid(ID, [AUD, "other"]);
    const v = await f.authority.validateJwtSvid(svid.token, AUD);
    expect(v.spiffeId).toBe(ID);
    expect(v.claims["aud"]).toEqual([AUD, "other"]);
  });

  it("rejects alg none", async () => {
    const { claims, header } = parts((await f.authority.mintJwtSvid(ID, [AUD])).token);
    expect(await reason(`${b64({ ...header, alg: "none" })}.${b64(claims)}.`)).toBe("malformed");
    expect(await reason(`${b64({ ...header, alg: "none" })}.${b64(claims)}.AAAA`)).toBe("unsupported_alg");
    expect(await reason(`${b64({ ...header, alg: "None" })}.${b64(claims)}.AAAA`)).toBe("unsupported_alg");
  });

  it("rejects HS256 signed with the public key as the HMAC secret (key confusion)", async () => {
    const { claims, header } = parts((await f.authority.mintJwtSvid(ID, [AUD])).token);
    const jwk = f.authority.jwks().keys[0]!;
    const pub = createPublicKey({ key: { kty: "EC", crv: "P-256", x: jwk["x"], y: jwk["y"] } as never, format: "jwk" });
    for (const secret of [pub.export({ format: "pem", type: "spki" }), pub.export({ format: "der", type: "spki" })]) {
      const input = `${b64({ ...header, alg: "HS256" })}.${b64(claims)}`;
      const token = `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
      expect(await reason(token)).toBe("unsupported_alg");
    }
  });

  it("rejects other algorithms and algorithms that do not fit the key", async () => {
    const { claims, header } = parts((await f.authority.mintJwtSvid(ID, [AUD])).token);
    for (const alg of ["HS384", "HS512", "EdDSA", "ES256K", "RSA-OAEP", ""]) {
      expect(await reason(`${b64({ ...header, alg })}.${b64(claims)}.AAAA`)).toBe("unsupported_alg");
    }
    // Allowed by the spec, but our kid is a P-256 key: ES384 / RS256 / PS256 cannot use it.
    for (const alg of ["ES384", "RS256", "PS256"])
      expect(await reason(`${b64({ ...header, alg })}.${b64(claims)}.AAAA`)).toBe("key_mismatch");
  });

  it("rejects a wrong audience (missing and empty ones: see the claim checks below)", async () => {
    const svid = await f.authority.mintJwtSvid(ID, [AUD]);
    expect(await reason(svid.token, "spiffe://hexr.local/system/other")).toBe("audience_mismatch");
    expect(await reason(svid.token, "")).toBe("audience_mismatch");
  });

  it("rejects expired tokens after the leeway, and accepts them within it", async () => {
    const svid = await f.authority.mintJwtSvid(ID, [AUD], { ttlSeconds: 60 });
    f.clock.advance(60_000 + 20_000); // past exp, within the 30 s leeway
    try {
      await expect(f.authority.validateJwtSvid(svid.token, AUD)).resolves.toMatchObject({ spiffeId: ID });
      f.clock.advance(11_000);
      expect(await reason(svid.token)).toBe("expired");
    } finally {
      f.clock.advance(-91_000);
    }
  });

  it("accepts identity.jwtLeewaySeconds: 0 (valid config) and then allows no skew at all", async () => {
    const { PlatformConfig } = await import("../../config/schema.js");
    const leeway = PlatformConfig.parse({ dataDir: "/unused", identity: { jwtLeewaySeconds: 0 } }).identity.jwtLeewaySeconds;
    expect(leeway).toBe(0);
    const strict = await authorityFixture({ config: { jwtLeewaySeconds: leeway } });
    try {
      const svid = await strict.authority.mintJwtSvid(ID, [AUD], { ttlSeconds: 60 });
      strict.clock.advance(59_000);
      await expect(strict.authority.validateJwtSvid(svid.token, AUD)).resolves.toMatchObject({ spiffeId: ID });
      strict.clock.advance(1_000);
      await expect(strict.authority.validateJwtSvid(svid.token, AUD)).rejects.toMatchObject({
        details: { reason: "expired" },
      });
    } finally {
      await strict.dispose();
    }
  });

  it("still refuses a negative or fractional leeway", async () => {
    const { LocalAuthority } = await import("./authority.js");
    for (const jwtLeewaySeconds of [-1, 0.5]) {
      expect(
        () =>
          new LocalAuthority({
            storage: f.storage,
            trustDomain: "hexr.local",
            masterKey: f.masterKey,
            config: { jwtLeewaySeconds },
          }),
      ).toThrow(/jwtLeewaySeconds/);
    }
  });

  it("rejects an unknown kid and a missing kid", async () => {
    const { header, claims } = parts((await f.authority.mintJwtSvid(ID, [AUD])).token);
    expect(await reason(forge({ ...header, kid: "not-a-known-key" }, claims))).toBe("unknown_kid");
    const { kid: _kid, ...noKid } = header;
    expect(await reason(forge(noKid, claims))).toBe("unknown_kid");
  });

  it("rejects a token signed by another authority's key under our kid", async () => {
    const { header, claims } = parts((await f.authority.mintJwtSvid(ID, [AUD])).token);
    expect(await reason(forge(header, claims))).toBe("bad_signature");
  });

  it("rejects tampered claims and tampered signatures", async () => {
    const t = parts((await f.authority.mintJwtSvid(ID, [AUD])).token);
    const otherClaims = b64({ ...t.claims, sub: "spiffe://hexr.local/agent/acme-corp/admin/main" });
    expect(await reason(`${t.h}.${otherClaims}.${t.s}`)).toBe("bad_signature");
    const sig = Buffer.from(t.s, "base64url");
    sig[10] = sig[10]! ^ 0x01;
    expect(await reason(`${t.h}.${t.p}.${sig.toString("base64url")}`)).toBe("bad_signature");
    expect(await reason(`${t.h}.${t.p}.${sig.subarray(0, 63).toString("base64url")}`)).toBe("bad_signature");
    // DER-encoded ECDSA signatures are not JWS signatures.
    expect(await reason(`${t.h}.${t.p}.${Buffer.alloc(70, 1).toString("base64url")}`)).toBe("bad_signature");
  });

  it("rejects extra header parameters and a bad typ", async () => {
    const { header, claims } = parts((await f.authority.mintJwtSvid(ID, [AUD])).token);
    expect(await reason(`${b64({ ...header, jku: "https://evil/keys" })}.${b64(claims)}.AAAA`)).toBe("bad_header");
    expect(await reason(`${b64({ ...header, typ: "at+jwt" })}.${b64(claims)}.AAAA`)).toBe("bad_header");
  });

  it("rejects malformed tokens", async () => {
    for (const bad of [
      "",
      "a.b",
      "a.b.c.d",
      "####.a.b",
      "e30.e30.e30",
      "bm90IGpzb24.e30.AAAA",
      "W10.e30.AAAA",
      "x".repeat(17_000),
    ]) {
      expect(["malformed", "unsupported_alg"]).toContain(await reason(bad));
    }
  });
});

describe("JWT-SVID claim checks (tokens signed by a key the authority trusts)", () => {
  // Claims are checked after the signature, so these run the same validator with a key it trusts.
  it("rejects a subject from another trust domain, a non-SPIFFE subject, and missing exp", async () => {
    const { validateJwt, JwtVerificationKey, JwtSigner } = await import("./jwt.js");
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const signer = new JwtSigner("k1", privateKey);
    const keys = new Map([["k1", new JwtVerificationKey("k1", publicKey)]]);
    const now = Date.now();
    const exp = Math.floor(now / 1000) + 60;
    const check = (claims: Record<string, unknown>, audience = AUD) => {
      try {
        validateJwt(signer.sign(claims), { keys, trustDomain: "hexr.local", audience, now, leewaySeconds: 0 });
        return "ok";
      } catch (err) {
        return (err as { details: { reason: string } }).details.reason;
      }
    };
    expect(check({ sub: ID, aud: AUD, exp })).toBe("ok");
    expect(check({ sub: "spiffe://other.example/agent/a/b/c", aud: AUD, exp })).toBe("foreign_trust_domain");
    expect(check({ sub: "user@example.com", aud: AUD, exp })).toBe("invalid_subject");
    expect(check({ sub: "spiffe://hexr.local", aud: AUD, exp })).toBe("invalid_subject");
    expect(check({ aud: AUD, exp })).toBe("invalid_subject");
    expect(check({ sub: ID, exp })).toBe("missing_audience");
    expect(check({ sub: ID, aud: [], exp })).toBe("missing_audience");
    expect(check({ sub: ID, aud: [AUD, 7], exp })).toBe("missing_audience");
    expect(check({ sub: ID, aud: ["x"], exp })).toBe("audience_mismatch");
    expect(check({ sub: ID, aud: AUD })).toBe("missing_exp");
    expect(check({ sub: ID, aud: AUD, exp: "9999999999" })).toBe("missing_exp");
    expect(check({ sub: ID, aud: AUD, exp: exp - 120 })).toBe("expired");
    expect(check({ sub: ID, aud: AUD, exp, nbf: exp })).toBe("not_yet_valid");
    expect(check({ sub: ID, aud: AUD, exp, iat: exp + 10 })).toBe("not_yet_valid");
    // A set of acceptable audiences (the platform's system IDs): one match is enough.
    expect(check({ sub: ID, aud: ["a", AUD], exp }, new Set(["b", AUD]) as never)).toBe("ok");
  });
});
