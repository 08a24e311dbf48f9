import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { SignJWT, UnsecuredJWT, exportJWK } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { parseJwtBundle, validateJwtSvid, type JwtBundle } from "./jwt.js";

const TD = "example.org";
const SUB = `spiffe://${TD}/agent/acme-corp/researcher/main`;
const NOW = 1_800_000_000_000;
const keys: Record<string, { priv: KeyObject; pub: KeyObject }> = {};
let bundles: Map<string, JwtBundle>;

beforeAll(async () => {
  const pair = (k: { privateKey: KeyObject; publicKey: KeyObject }) => ({ priv: k.privateKey, pub: k.publicKey });
  keys["es256"] = pair(generateKeyPairSync("ec", { namedCurve: "P-256" }));
  keys["es384"] = pair(generateKeyPairSync("ec", { namedCurve: "P-384" }));
  keys["rsa"] = pair(generateKeyPairSync("rsa", { modulusLength: 2048 }));
  keys["rsa1024"] = pair(generateKeyPairSync("rsa", { modulusLength: 1024 }));
  const jwk = async (kid: string, k: KeyObject, extra: Record<string, unknown> = {}) => ({
    ...(await exportJWK(k)),
    kid,
    use: "jwt-svid",
    ...extra,
  });
  const jwks = {
    keys: [
      await jwk("es256", keys["es256"].pub),
      await jwk("es384", keys["es384"].pub),
      await jwk("rsa", keys["rsa"].pub),
      await jwk("rsa1024", keys["rsa1024"].pub),
      await jwk("x509", keys["es256"].pub, { use: "x509-svid" }),
      { kty: "EC", crv: "P-256", x: "bad", y: "bad", kid: "broken" },
      { ...(await exportJWK(keys["es256"].pub)), use: "jwt-svid" },
    ],
  };
  bundles = new Map([[TD, parseJwtBundle(TD, JSON.stringify(jwks))]]);
});

async function token(
  opts: { alg?: string; kid?: string; key?: string; claims?: Record<string, unknown>; header?: Record<string, unknown> } = {},
) {
  const alg = opts.alg ?? "ES256";
  const claims = { sub: SUB, aud: ["svc"], exp: NOW / 1000 + 300, iat: NOW / 1000, ...opts.claims };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k as keyof typeof claims];
  return new SignJWT(claims)
    .setProtectedHeader({ alg, kid: opts.kid ?? "es256", typ: "JWT", ...opts.header })
    .sign(keys[opts.key ?? "es256"]!.priv);
}

const check = (t: string, aud = "svc") => validateJwtSvid(t, aud, bundles, { now: NOW, leewaySeconds: 0 });

describe("local JWT-SVID validation", () => {
  it("accepts a well-formed token and returns its subject and claims", async () => {
    const v = check(await token());
    expect(v.spiffeId).toBe(SUB);
    expect(v.claims["aud"]).toEqual(["svc"]);
    expect(v.expiresAt).toBe(NOW + 300_000);
  });

  it("accepts RS256 and PS256 with an RSA key, ES384 with P-384, a string aud", async () => {
    expect(check(await token({ alg: "RS256", kid: "rsa", key: "rsa" })).spiffeId).toBe(SUB);
    expect(check(await token({ alg: "PS256", kid: "rsa", key: "rsa" })).spiffeId).toBe(SUB);
    expect(check(await token({ alg: "ES384", kid: "es384", key: "es384" })).spiffeId).toBe(SUB);
    expect(check(await token({ claims: { aud: "svc" } })).spiffeId).toBe(SUB);
  });

  it("ignores keys with another use, without kid, or unusable", () => {
    const b = bundles.get(TD)!;
    expect([...b.keys.keys()].sort()).toEqual(["es256", "es384", "rsa", "rsa1024"]);
  });

  const reject = async (t: string | Promise<string>, re: RegExp, aud = "svc") => {
    const tok = await t;
    expect(() => check(tok, aud)).toThrow(expect.objectContaining({ code: "identity.invalid_jwt_svid" }));
    expect(() => check(tok, aud)).toThrow(re);
  };

  it("rejects alg none and HS256", async () => {
    const none = new UnsecuredJWT({ sub: SUB, aud: ["svc"], exp: NOW / 1000 + 300 }).encode();
    await reject(none, /algorithm 'none'/);
    const hs = await new SignJWT({ sub: SUB, aud: ["svc"], exp: NOW / 1000 + 300 })
      .setProtectedHeader({ alg: "HS256", kid: "es256" })
      .sign(new TextEncoder().encode("a-shared-secret-that-is-long-enough-for-hs256"));
    await reject(hs, /algorithm 'HS256'/);
  });

  it("rejects wrong audience, expiry, missing exp/aud/sub, not-yet-valid", async () => {
    await reject(token(), /audience does not include/, "other");
    await reject(token({ claims: { exp: NOW / 1000 - 1 } }), /expired/);
    await reject(token({ claims: { exp: undefined } }), /no expiry/);
    await reject(token({ claims: { aud: undefined } }), /no audience/);
    await reject(token({ claims: { aud: [] } }), /no audience/);
    await reject(token({ claims: { sub: undefined } }), /no subject/);
    await reject(token({ claims: { sub: "not-a-spiffe-id" } }), /not a SPIFFE ID/);
    await reject(token({ claims: { nbf: NOW / 1000 + 60 } }), /not valid yet/);
  });

  it("rejects an unknown kid, a missing kid, another trust domain, a bad signature", async () => {
    await reject(token({ kid: "nope" }), /unknown key id/);
    await reject(
      new SignJWT({ sub: SUB, aud: ["svc"], exp: NOW / 1000 + 300 })
        .setProtectedHeader({ alg: "ES256" })
        .sign(keys["es256"]!.priv),
      /no key id/,
    );
    await reject(token({ claims: { sub: "spiffe://other.org/x" } }), /no bundle for trust domain other.org/);
    const t = await token();
    const [h, p] = t.split(".");
    const forged = `${h}.${Buffer.from(JSON.stringify({ sub: SUB, aud: ["svc"], exp: NOW / 1000 + 9999 })).toString("base64url")}.${t.split(".")[2]}`;
    await reject(forged, /bad signature/);
    await reject(`${h}.${p}.`, /no signature/);
  });

  it("rejects a key that does not fit the algorithm, short RSA keys, extra header parameters, bad typ", async () => {
    await reject(token({ alg: "ES384", kid: "es256", key: "es384" }), /does not fit/);
    await reject(token({ alg: "ES256", kid: "rsa", key: "es256" }), /does not fit/);
    // jose refuses short RSA keys, so this one is signed by hand.
    const head = Buffer.from(JSON.stringify({ alg: "RS256", kid: "rsa1024" })).toString("base64url");
    const body = Buffer.from(JSON.stringify({ sub: SUB, aud: ["svc"], exp: NOW / 1000 + 300 })).toString("base64url");
    const sig = sign("sha256", Buffer.from(`${head}.${body}`), keys["rsa1024"]!.priv).toString("base64url");
    await reject(`${head}.${body}.${sig}`, /shorter than 2048/);
    await reject(token({ header: { jku: "https://evil.example/keys" } }), /'jku' is not allowed/);
    await reject(token({ header: { typ: "at+jwt" } }), /typ must be/);
  });

  it("rejects garbage", async () => {
    await reject("a.b", /not a JWS/);
    await reject("!!!.e30.sig", /not base64url/);
    await reject(`${Buffer.from("[1]").toString("base64url")}.e30.c2ln`, /not a JSON object/);
  });
});
