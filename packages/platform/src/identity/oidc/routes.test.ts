import { X509Certificate } from "node:crypto";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../../test-support/platform.js";
import type { SpiffeBundleDocument } from "../types.js";
import type { OpenIdConfiguration } from "./routes.js";

// Identity tests do not exercise the code sandbox; its background probes only slow start and stop.
const NO_SANDBOX = { sandbox: { enabled: false } };

const ID = "spiffe://hexr.local/agent/acme/bot/main";

let p: TestPlatform;
beforeAll(async () => {
  p = await startTestPlatform({ config: NO_SANDBOX });
});
afterAll(() => p.dispose());

async function get<T>(path: string, status = 200): Promise<T> {
  const res = await fetch(p.url + path);
  const text = await res.text();
  expect(res.status, text).toBe(status);
  return JSON.parse(text) as T;
}

describe("OIDC discovery", () => {
  it("serves the discovery document with the platform URL as issuer (known after listening on port 0)", async () => {
    const doc = await get<OpenIdConfiguration>("/.well-known/openid-configuration");
    expect(doc).toEqual({
      issuer: p.url,
      jwks_uri: `${p.url}/keys`,
      authorization_endpoint: "",
      response_types_supported: ["id_token"],
      subject_types_supported: ["public"],
      id_token_signing_alg_values_supported: ["ES256"],
    });
  });

  it("serves the JWT signing keys at /keys with kid, alg and use, never private members", async () => {
    const { keys } = await get<{ keys: Array<Record<string, unknown>> }>("/keys");
    expect(keys).toHaveLength(1);
    expect(keys[0]).toEqual({
      kty: "EC",
      crv: "P-256",
      x: expect.any(String),
      y: expect.any(String),
      kid: expect.any(String),
      alg: "ES256",
      use: "sig",
    });
    const res = await fetch(`${p.url}/keys`, { method: "POST" });
    expect(res.status).toBe(405);
  });

  it("lets a relying party verify a JWT-SVID the way a cloud STS does: discovery → jwks_uri → signature, iss, aud", async () => {
    const svid = await p.identity.authority.mintJwtSvid(ID, ["sts.amazonaws.com"]);
    const doc = await get<OpenIdConfiguration>("/.well-known/openid-configuration");
    const { payload } = await jwtVerify(svid.token, createRemoteJWKSet(new URL(doc.jwks_uri)), {
      issuer: doc.issuer,
      audience: "sts.amazonaws.com",
      algorithms: doc.id_token_signing_alg_values_supported,
    });
    expect(payload.sub).toBe(ID);
    expect(payload.iss).toBe(p.url);
  });

  it("uses publicUrl as issuer when configured", async () => {
    const other = await startTestPlatform({ config: { ...NO_SANDBOX, publicUrl: "https://hexr.example.com/" } });
    try {
      const res = await fetch(`${other.url}/.well-known/openid-configuration`);
      const doc = (await res.json()) as OpenIdConfiguration;
      expect(doc.issuer).toBe("https://hexr.example.com");
      expect(doc.jwks_uri).toBe("https://hexr.example.com/keys");
      const svid = await other.identity.authority.mintJwtSvid(ID, ["x"]);
      expect(JSON.parse(Buffer.from(svid.token.split(".")[1]!, "base64url").toString())["iss"]).toBe("https://hexr.example.com");
    } finally {
      await other.dispose();
    }
  });
});

describe("SPIFFE bundle endpoint", () => {
  it("is public and holds the X.509 root (x5c, no kid) and the JWT key (kid)", async () => {
    const b = await get<SpiffeBundleDocument>("/api/v1/identity/bundle");
    expect(b.spiffe_sequence).toBeGreaterThanOrEqual(1);
    expect(b.spiffe_refresh_hint).toBe(300);
    const x509 = b.keys.filter((k) => k.use === "x509-svid");
    const jwt = b.keys.filter((k) => k.use === "jwt-svid");
    expect(x509).toHaveLength(1);
    expect(x509[0]).not.toHaveProperty("kid");
    const root = new X509Certificate(Buffer.from((x509[0]!["x5c"] as string[])[0]!, "base64"));
    expect(root.ca).toBe(true);
    expect(root.checkIssued(root)).toBe(true);
    expect(jwt).toHaveLength(1);
    expect(jwt[0]!["kid"]).toEqual(expect.any(String));
    expect(JSON.stringify(b)).not.toMatch(/"d"/);
    expect(b).toEqual(p.identity.authority.bundle());
  });
});

describe("CA rotation endpoint", () => {
  it("runs rotation steps for admins only and reports typed errors", async () => {
    const seq = (await get<SpiffeBundleDocument>("/api/v1/identity/bundle")).spiffe_sequence;
    const status = async (res: Response, code: number) => {
      const text = await res.text();
      expect(res.status, text).toBe(code);
      return JSON.parse(text) as Record<string, unknown>;
    };
    await status(await p.api("/api/v1/identity/authority", { auth: null }), 401);
    const st = await status(await p.api("/api/v1/identity/authority"), 200);
    expect((st["slots"] as unknown[]).length).toBe(1);
    expect(
      (await status(await p.api("/api/v1/identity/authority/rotate", { method: "POST", json: { step: "activate" } }), 422))[
        "code"
      ],
    ).toBe("identity.nothing_prepared");
    expect(
      (await status(await p.api("/api/v1/identity/authority/rotate", { method: "POST", json: { step: "explode" } }), 400))[
        "code"
      ],
    ).toBe("request.validation_failed");
    const prepared = await status(
      await p.api("/api/v1/identity/authority/rotate", { method: "POST", json: { step: "prepare" } }),
      200,
    );
    expect((prepared["slots"] as Array<{ state: string }>).map((s) => s.state).sort()).toEqual(["active", "prepared"]);
    expect((await get<{ keys: unknown[] }>("/keys")).keys).toHaveLength(2);
    expect((await get<SpiffeBundleDocument>("/api/v1/identity/bundle")).spiffe_sequence).toBe(seq + 1);
    await status(await p.api("/api/v1/identity/authority/rotate", { method: "POST", json: { step: "activate" } }), 200);
    const early = await status(
      await p.api("/api/v1/identity/authority/rotate", { method: "POST", json: { step: "retire" } }),
      422,
    );
    expect(early["code"]).toBe("identity.rotation_not_safe");
    expect(early["retirableAt"]).toEqual(expect.any(String));
    expect((await get<{ keys: unknown[] }>("/keys")).keys).toHaveLength(2);
  });
});
