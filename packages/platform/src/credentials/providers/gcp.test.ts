import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listen, parseParams, sendJson, type RunningDouble } from "../../cloud-doubles/http.js";
import { GcpToolConfig } from "../tools/schema.js";
import { createGcpProvider } from "./gcp.js";

/** An STS that answers 200 with whatever body the test sets: for the provider's handling of odd answers. */
let sts: RunningDouble;
let answer: Record<string, unknown> = {};
const seen: Array<Record<string, string>> = [];
const POOL = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/hexr-pool/providers/hexr-oidc";

beforeAll(async () => {
  sts = await listen(async (req, body, res) => {
    seen.push(parseParams(req, body));
    sendJson(res, 200, answer);
  });
});
afterAll(() => sts.close());

const NOW = 1_700_000_000_000;
const provider = createGcpProvider({ clock: () => NOW });
const exchange = () =>
  provider.exchange(GcpToolConfig.parse({ audience: POOL, tokenUrl: `${sts.url}/v1/token` }), "header.payload.signature", {
    spiffeId: "spiffe://hexr.local/agent/acme-corp/research/main",
    sessionName: "research.main",
  });

describe("GCP provider: the STS answer decides the expiry", () => {
  it("takes the lifetime from expires_in", async () => {
    answer = { access_token: "ya29.federated", token_type: "Bearer", expires_in: 1800 };
    await expect(exchange()).resolves.toMatchObject({
      provider: "gcp",
      accessToken: "ya29.federated",
      expiresAt: NOW + 1_800_000,
    });
    expect(seen.at(-1)).toMatchObject({ audience: POOL, subject_token: "header.payload.signature" });
  });

  it.each([
    ["missing", {}],
    ["zero", { expires_in: 0 }],
    ["not a number", { expires_in: "soon" }],
  ])("refuses a token whose expires_in is %s instead of assuming a lifetime", async (_label, extra) => {
    answer = { access_token: "ya29.federated", token_type: "Bearer", ...extra };
    await expect(exchange()).rejects.toMatchObject({ code: "credentials.cloud_error", details: { provider: "gcp" } });
  });
});
