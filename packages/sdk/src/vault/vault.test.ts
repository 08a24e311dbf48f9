import { isHexrError } from "@hexr/core";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readBootId, readProcStat } from "../../../platform/src/identity/attestation/proc.js";
import { processSelectors } from "../../../platform/src/identity/attestation/unix-attestor.js";
import { startTestPlatform, type TestPlatform } from "../../../platform/src/test-support/platform.js";
import { defaultIdentity } from "../identity/default.js";
import { Identity } from "../identity/identity.js";
import { jwtSvidTokenProvider, vault, VaultClient, vaultAudience } from "./index.js";

const AGENT = "spiffe://hexr.local/agent/acme/analyst/main";

async function errorCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (isHexrError(err)) return err.code;
    throw err;
  }
  return "no error";
}

for (const storage of ["sqlite", "postgres"] as const) {
  describe(`vault (SDK, ${storage})`, () => {
    let p: TestPlatform;
    let identity: Identity;
    let acmeKey: string;
    let globexKey: string;

    beforeAll(async () => {
      p = await startTestPlatform({ storage });
      for (const name of ["acme", "globex"])
        expect((await p.api("/api/v1/tenants", { method: "POST", json: { name } })).status).toBe(201);
      const key = async (tenant: string) =>
        ((await (await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant } })).json()) as { key: string })
          .key;
      acmeKey = await key("acme");
      globexKey = await key("globex");
      // This test process is the agent: the platform attests it by its pid and hands it the SPIFFE ID.
      const { startTime } = await readProcStat(process.pid);
      const entry = await p.api("/api/v1/identity/entries", {
        method: "POST",
        json: { spiffeId: AGENT, selectors: processSelectors(process.pid, startTime, readBootId()), createdBy: "test" },
      });
      expect(entry.status).toBe(201);
      identity = new Identity({ address: `unix://${p.info.workloadSocket}` });
      await identity.ready();
      await new VaultClient({ platformUrl: p.url, token: async () => acmeKey, tenant: "acme" }).put(
        "db/password",
        "acme-db-pass",
      );
      await new VaultClient({ platformUrl: p.url, token: async () => globexKey, tenant: "globex" }).put(
        "db/password",
        "globex-db-pass",
      );
    });
    afterAll(async () => {
      identity?.close();
      await p?.dispose();
    });

    const agentClient = (opts: { tenant?: string } = {}) =>
      new VaultClient({ platformUrl: p.url, token: jwtSvidTokenProvider(identity, vaultAudience()), ...opts });

    it("an attested agent reads its tenant's secret with a JWT-SVID from the Workload API", async () => {
      const c = agentClient();
      expect(await c.get("db/password")).toBe("acme-db-pass");
      expect(await c.getSecret("db/password")).toMatchObject({ name: "db/password", version: 1, encoding: "utf8" });
      const listed = await c.list("db/");
      expect(listed.map((s) => s.name)).toEqual(["db/password"]);
      expect(JSON.stringify(listed)).not.toContain("acme-db-pass");
    });

    // The process-wide default identity binds to one Workload API socket, so this runs against one platform.
    if (storage === "sqlite")
      it("the default `vault` object works from the environment alone", async () => {
        const saved = { ...process.env };
        process.env["SPIFFE_ENDPOINT_SOCKET"] = `unix://${p.info.workloadSocket}`;
        process.env["HEXR_PLATFORM_URL"] = p.url;
        delete process.env["HEXR_API_KEY"];
        delete process.env["HEXR_TENANT"];
        delete process.env["HEXR_TRUST_DOMAIN"];
        try {
          vault.configure(new VaultClient());
          expect(await vault.get("db/password")).toBe("acme-db-pass");
        } finally {
          defaultIdentity().close();
          process.env = saved;
        }
      });

    it("tenant A's agent can never read tenant B's secret", async () => {
      expect(await errorCode(agentClient({ tenant: "globex" }).get("db/password"))).toBe("auth.forbidden");
      expect(await errorCode(agentClient({ tenant: "globex" }).list())).toBe("auth.forbidden");
      // A token for another audience is refused outright.
      const platformToken = jwtSvidTokenProvider(identity, "spiffe://hexr.local/system/platform");
      expect(await errorCode(new VaultClient({ platformUrl: p.url, token: platformToken }).get("db/password"))).toBe(
        "vault.wrong_audience",
      );
    });

    it("writes need a policy; with one the agent writes text and bytes", async () => {
      const c = agentClient();
      expect(await errorCode(c.put("agents/analyst/notes", "x"))).toBe("policy.denied");
      const applied = await p.api("/api/v1/tenants/acme/policies/analyst-writes", {
        method: "PUT",
        auth: acmeKey,
        json: {
          policy: `permit (principal is Hexr::Agent, action == Hexr::Action::"vault:write", resource) when { resource.name like "agents/analyst/*" && principal.agent == "analyst" };`,
        },
      });
      expect(applied.status).toBe(201);
      expect((await c.put("agents/analyst/notes", "remember this")).version).toBe(1);
      const bytes = randomBytes(48);
      await c.put("agents/analyst/blob", bytes);
      expect((await c.getBytes("agents/analyst/blob")).equals(bytes)).toBe(true);
      expect(await c.get("agents/analyst/notes")).toBe("remember this");
      expect(await errorCode(c.put("db/password", "overwrite"))).toBe("policy.denied");
      expect(await errorCode(c.put("agents/analyst/notes", "x", { expectedVersion: 5 }))).toBe("vault.version_mismatch");
    });

    it("a warn-mode policy lets the read through and reports the warning", async () => {
      await p.api("/api/v1/tenants/acme/policies/db-watch", {
        method: "PUT",
        auth: acmeKey,
        json: {
          policy: `forbid (principal is Hexr::Agent, action == Hexr::Action::"vault:read", resource is Hexr::Secret) when { resource.name like "db/*" };`,
          mode: "warn",
        },
      });
      const warnings: string[] = [];
      const c = new VaultClient({
        platformUrl: p.url,
        token: jwtSvidTokenProvider(identity, vaultAudience()),
        onPolicyWarning: (w) => warnings.push(w),
      });
      expect(await c.get("db/password")).toBe("acme-db-pass");
      expect(warnings).toEqual([expect.stringContaining("db-watch#0")]);
      await p.api("/api/v1/tenants/acme/policies/db-watch", { method: "DELETE", auth: acmeKey });
    });

    it("typed errors for missing secrets, bad names and a missing configuration", async () => {
      expect(await errorCode(agentClient().get("nope"))).toBe("vault.secret_not_found");
      expect(await errorCode(agentClient().get("../x"))).toBe("request.validation_failed");
      expect(await errorCode(new VaultClient({}, {}).get("x"))).toBe("vault.not_configured");
      expect(await errorCode(new VaultClient({ platformUrl: p.url }, {}).get("x"))).toBe("vault.not_configured");
    });
  });
}
