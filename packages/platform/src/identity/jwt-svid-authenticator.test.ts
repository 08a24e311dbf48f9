import { generateKeyPairSync, sign } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../test-support/platform.js";
import { authorityFixture, type AuthorityFixture } from "./authority/test-support/fixtures.js";
import { JwtSvidAuthenticator } from "./jwt-svid-authenticator.js";

// Identity tests do not exercise the code sandbox; its background probes only slow start and stop.
const NO_SANDBOX = { sandbox: { enabled: false } };

const PLATFORM_AUD = "spiffe://hexr.local/system/platform";
const ACME = "spiffe://hexr.local/agent/acme/researcher/main";

describe("JwtSvidAuthenticator", () => {
  let f: AuthorityFixture;
  let auth: JwtSvidAuthenticator;
  beforeAll(async () => {
    f = await authorityFixture();
    auth = new JwtSvidAuthenticator({ authority: f.authority, audiences: [PLATFORM_AUD] });
  });
  afterAll(() => f.dispose());

  const rejected = async (token: string) => {
    const err = (await auth.authenticate({}, token).then(
      () => undefined,
      (e: unknown) => e,
    )) as { code: string; kind: string; message: string; details: { reason: string } };
    expect(err).toMatchObject({ code: "auth.invalid_svid", kind: "unauthenticated" });
    expect(err.message).not.toContain(token);
    return err.details.reason;
  };

  it("turns a valid token into a workload principal with tenant, agent, role and audience", async () => {
    const { token } = await f.authority.mintJwtSvid(ACME, [PLATFORM_AUD, "other"]);
    expect(await auth.authenticate({}, token)).toEqual({
      kind: "workload",
      spiffeId: ACME,
      trustDomain: "hexr.local",
      tenant: "acme",
      agent: "researcher",
      role: "main",
      audience: [PLATFORM_AUD, "other"],
      via: "jwt-svid",
    });
    const sys = await f.authority.mintJwtSvid("spiffe://hexr.local/system/vault", [PLATFORM_AUD]);
    const p = await auth.authenticate({}, sys.token);
    expect(p).toMatchObject({ kind: "workload", spiffeId: "spiffe://hexr.local/system/vault" });
    expect(p).not.toHaveProperty("tenant");
  });

  it("leaves bearers that are not JWTs to other authenticators", async () => {
    expect(await auth.authenticate({}, undefined)).toBeNull();
    expect(await auth.authenticate({}, "hexr_abcdefabcdefabcd_secret")).toBeNull();
    expect(await auth.authenticate({}, "a.b")).toBeNull();
  });

  it("rejects tokens for another audience, expired, forged, alg none, or from another trust domain", async () => {
    expect(await rejected((await f.authority.mintJwtSvid(ACME, ["spiffe://hexr.local/system/vault"])).token)).toBe(
      "audience_mismatch",
    );
    const short = await f.authority.mintJwtSvid(ACME, [PLATFORM_AUD], { ttlSeconds: 5 });
    f.clock.advance(36_000);
    try {
      expect(await rejected(short.token)).toBe("expired");
    } finally {
      f.clock.advance(-36_000);
    }
    const [h, p] = (await f.authority.mintJwtSvid(ACME, [PLATFORM_AUD])).token.split(".");
    const key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    expect(
      await rejected(
        `${h}.${p}.${sign("sha256", Buffer.from(`${h}.${p}`), { key, dsaEncoding: "ieee-p1363" }).toString("base64url")}`,
      ),
    ).toBe("bad_signature");
    const none = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url");
    expect(await rejected(`${none}.${p}.AA`)).toBe("unsupported_alg");
    expect(await rejected("eyJ.eyJ.AA")).toBe("malformed");
    const other = await authorityFixture({ trustDomain: "other.example" });
    try {
      const foreign = await other.authority.mintJwtSvid("spiffe://other.example/agent/acme/researcher/main", [PLATFORM_AUD]);
      expect(await rejected(foreign.token)).toBe("unknown_kid");
    } finally {
      await other.dispose();
    }
  });

  it("accepts audiences added later (another service of this platform)", async () => {
    const { token } = await f.authority.mintJwtSvid(ACME, ["spiffe://hexr.local/system/vault"]);
    expect(await rejected(token)).toBe("audience_mismatch");
    auth.addAudience("spiffe://hexr.local/system/vault");
    expect(await auth.authenticate({}, token)).toMatchObject({ spiffeId: ACME });
  });
});

describe("JWT-SVID bearer on the REST API", () => {
  let p: TestPlatform;
  beforeAll(async () => {
    p = await startTestPlatform({ config: NO_SANDBOX });
    for (const name of ["acme", "globex"]) {
      const res = await p.api("/api/v1/tenants", { method: "POST", json: { name } });
      expect(res.status).toBe(201);
    }
  });
  afterAll(() => p.dispose());

  const call = async (path: string, token: string, init: RequestInit & { json?: unknown } = {}) => {
    const res = await p.api(path, { ...init, auth: token });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it("authenticates an agent into its own tenant only", async () => {
    const { token } = await p.identity.authority.mintJwtSvid(ACME, [PLATFORM_AUD]);
    expect(await call("/api/v1/tenants/acme", token)).toMatchObject({ status: 200, body: { name: "acme" } });
    expect(await call("/api/v1/tenants/globex", token)).toMatchObject({ status: 403, body: { code: "auth.forbidden" } });
    const list = await call("/api/v1/tenants", token);
    expect((list.body["items"] as Array<{ name: string }>).map((t) => t.name)).toEqual(["acme"]);
    expect(await call("/api/v1/tenants", token, { method: "POST", json: { name: "new-one" } })).toMatchObject({
      status: 403,
      body: { code: "auth.forbidden" },
    });
  });

  it("answers 401 auth.invalid_svid without echoing the token", async () => {
    const { token } = await p.identity.authority.mintJwtSvid(ACME, ["spiffe://hexr.local/system/elsewhere"]);
    const res = await p.api("/api/v1/tenants/acme", { auth: token });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    const text = await res.text();
    expect(text).not.toContain(token);
    expect(JSON.parse(text)).toMatchObject({ code: "auth.invalid_svid", reason: "audience_mismatch" });
    expect(await call("/api/v1/tenants/acme", "not-a-token")).toMatchObject({
      status: 401,
      body: { code: "auth.unauthenticated" },
    });
  });
});
