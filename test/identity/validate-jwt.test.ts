import { generateKeyPairSync } from "node:crypto";
import { SignJWT, UnsecuredJWT, decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startIdentityPlatform, type IdentityPlatform } from "./helpers.js";
import { createReferenceClient, status, type ReferenceClient, type ServiceError } from "./reference-client.js";

// ValidateJWTSVID through the Workload API, with tokens an attacker could craft.
let p: IdentityPlatform;
let client: ReferenceClient;
let good: string;
let kid: string;
const ME = "spiffe://hexr.local/agent/acme-corp/researcher/main";
const AUD = "spiffe://hexr.local/system/platform";
const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  // The smallest leeway the authority takes, so a token with a 1 s lifetime is expired ~2 s later.
  p = await startIdentityPlatform({ jwtLeewaySeconds: 1 });
  await p.registerProcess(process.pid, ME, { jwtSvidTtlSeconds: 1 });
  client = createReferenceClient(p.socketPath);
  good = (await client.fetchJwtSvid({ audience: [AUD] })).svids[0]!.svid;
  kid = decodeProtectedHeader(good).kid!;
});
afterAll(async () => {
  client.close();
  await p.dispose();
});

const rejected = async (svid: string, audience = AUD) => {
  const err = await client.validateJwtSvid({ audience, svid }).then(
    () => undefined,
    (e: ServiceError) => e,
  );
  expect(err?.code).toBe(status.INVALID_ARGUMENT);
  return err!.details;
};
const claims = () => ({ sub: ME, aud: [AUD], exp: now() + 300, iat: now() });

describe("ValidateJWTSVID", () => {
  it("accepts the platform's own token and returns its claims", async () => {
    const v = await client.validateJwtSvid({ audience: AUD, svid: good });
    expect(v.spiffe_id).toBe(ME);
    expect(Object.keys(v.claims.fields)).toEqual(expect.arrayContaining(["sub", "aud", "exp", "iat"]));
  });

  it("rejects alg none", async () => {
    await rejected(new UnsecuredJWT(claims()).encode());
  });

  it("rejects HS256, even naming the real kid", async () => {
    const t = await new SignJWT(claims())
      .setProtectedHeader({ alg: "HS256", kid })
      .sign(new TextEncoder().encode("x".repeat(64)));
    await rejected(t);
  });

  it("rejects the wrong audience", async () => {
    await rejected(good, "spiffe://hexr.local/system/other");
  });

  it("rejects an unknown kid", async () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    await rejected(await new SignJWT(claims()).setProtectedHeader({ alg: "ES256", kid: "not-a-known-kid" }).sign(privateKey));
  });

  it("rejects another trust domain's subject", async () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    await rejected(
      await new SignJWT({ ...claims(), sub: "spiffe://evil.example/agent/acme-corp/x/main" })
        .setProtectedHeader({ alg: "ES256", kid })
        .sign(privateKey),
    );
  });

  it("rejects a forged signature over changed claims", async () => {
    const [h, , s] = good.split(".");
    const body = Buffer.from(JSON.stringify({ ...claims(), sub: "spiffe://hexr.local/agent/acme-corp/admin/main" })).toString(
      "base64url",
    );
    await rejected(`${h}.${body}.${s}`);
  });

  it("rejects an expired token", async () => {
    const short = (await client.fetchJwtSvid({ audience: [AUD, "expiry-test"] })).svids[0]!.svid;
    const { exp } = JSON.parse(Buffer.from(short.split(".")[1]!, "base64url").toString()) as { exp: number };
    expect(await client.validateJwtSvid({ audience: AUD, svid: short })).toMatchObject({ spiffe_id: ME });
    while (Date.now() < exp * 1000 + 2100) await new Promise((r) => setTimeout(r, 100));
    await rejected(short);
  });

  it("requires both fields", async () => {
    await rejected(good, "");
    await rejected("");
  });
});
