import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Principal } from "../auth/principal.js";
import { PlatformConfig } from "../config/schema.js";
import { startTestPlatform } from "../test-support/platform.js";
import { CedarPolicyEngine } from "./cedar-engine.js";
import { compileDocument } from "./cedar.js";
import { OpaPolicyEngine } from "./opa-engine.js";
import { opaDouble } from "./test-support/opa-double.js";
import type { EnforcementMode, PolicyEngine } from "./types.js";

const agent = (tenant: string, name = "bot"): Principal => ({
  kind: "workload",
  spiffeId: `spiffe://hexr.local/agent/${tenant}/${name}/main`,
  trustDomain: "hexr.local",
  tenant,
  agent: name,
  role: "main",
  via: "jwt-svid",
});
const secret = (tenant: string, id: string) => ({ type: "Secret", id, tenant });

const PROD_GUARD = `forbid (principal is Hexr::Agent, action, resource is Hexr::Secret) when { resource.name like "prod/*" && principal.agent != "deployer" };`;

interface Impl {
  name: string;
  make(prodMode: EnforcementMode): Promise<{ engine: PolicyEngine; close(): Promise<void> }>;
}

const impls: Impl[] = [
  {
    name: "cedar",
    async make(prodMode) {
      const policies = [
        { name: "prod-guard", version: 1, mode: prodMode, policies: compileDocument("prod-guard", PROD_GUARD).policies },
      ];
      return {
        engine: new CedarPolicyEngine({ loadPolicies: async (t) => (t === "acme" ? policies : []) }),
        close: async () => undefined,
      };
    },
  },
  {
    name: "opa",
    async make(prodMode) {
      const { server } = opaDouble({ prod: prodMode });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      return { engine: new OpaPolicyEngine({ url }), close: () => new Promise<void>((r) => server.close(() => r())) };
    },
  },
];

// One contract, both engines: the platform must behave the same whichever decides.
for (const impl of impls) {
  describe(`PolicyEngine contract: ${impl.name}`, () => {
    it("same-tenant agent reads are allowed; writes are not", async () => {
      const { engine, close } = await impl.make("enforce");
      try {
        expect(
          (await engine.decide({ principal: agent("acme"), action: "vault:read", resource: secret("acme", "db") })).allowed,
        ).toBe(true);
        expect(
          (await engine.decide({ principal: agent("acme"), action: "vault:write", resource: secret("acme", "db") })).allowed,
        ).toBe(false);
      } finally {
        await close();
      }
    });

    it("cross-tenant access is denied, whatever the principal", async () => {
      const { engine, close } = await impl.make("enforce");
      try {
        for (const principal of [agent("acme"), { kind: "tenant-key", keyId: "k", tenant: "acme" } as Principal]) {
          const d = await engine.decide({ principal, action: "vault:read", resource: secret("globex", "db") });
          expect(d).toMatchObject({ allowed: false, effect: "deny" });
        }
      } finally {
        await close();
      }
    });

    it("enforce denies; audit and warn allow and flag", async () => {
      for (const mode of ["enforce", "warn", "audit"] as const) {
        const { engine, close } = await impl.make(mode);
        try {
          const d = await engine.decide({ principal: agent("acme"), action: "vault:read", resource: secret("acme", "prod/db") });
          expect(d, mode).toMatchObject({ allowed: mode !== "enforce", effect: "deny", mode, flagged: mode !== "enforce" });
          expect(d.policyIds.join(" ")).toContain("prod-guard");
          const deployer = await engine.decide({
            principal: agent("acme", "deployer"),
            action: "vault:read",
            resource: secret("acme", "prod/db"),
          });
          expect(deployer).toMatchObject({ allowed: true, flagged: false });
        } finally {
          await close();
        }
      }
    });

    it("unknown actions are refused before evaluation", async () => {
      const { engine, close } = await impl.make("enforce");
      try {
        await expect(
          engine.decide({ principal: agent("acme"), action: "vault:fly", resource: secret("acme", "x") }),
        ).rejects.toMatchObject({
          code: "policy.unknown_action",
        });
      } finally {
        await close();
      }
    });
  });
}

describe("OPA adapter wire behaviour", () => {
  const double = opaDouble({ prod: "enforce" });
  let url = "";
  beforeAll(async () => {
    await new Promise<void>((r) => double.server.listen(0, "127.0.0.1", () => r()));
    url = `http://127.0.0.1:${(double.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => double.server.close(() => r()));
  });

  it("sends {input} with the principal's attributes, the action, the resource and the context", async () => {
    await new OpaPolicyEngine({ url }).decide({
      principal: agent("acme"),
      action: "vault:read",
      resource: secret("acme", "db"),
      context: { version: 3 },
    });
    expect(double.queries.at(-1)).toEqual({
      input: {
        principal: {
          type: "Agent",
          id: "spiffe://hexr.local/agent/acme/bot/main",
          tenant: "acme",
          agent: "bot",
          role: "main",
          trustDomain: "hexr.local",
          spiffeId: "spiffe://hexr.local/agent/acme/bot/main",
        },
        action: "vault:read",
        resource: { type: "Secret", id: "db", tenant: "acme", name: "db" },
        context: { version: 3, via: "jwt-svid" },
      },
    });
  });

  it("an undefined document denies", async () => {
    const d = await new OpaPolicyEngine({ url, path: "hexr/nothing" }).decide({
      principal: agent("acme"),
      action: "vault:read",
      resource: secret("acme", "db"),
    });
    expect(d).toMatchObject({ allowed: false, effect: "deny" });
    expect(d.reasons[0]).toContain("data.hexr.nothing is undefined");
  });

  it("a server error fails closed with policy.engine_unavailable; an unreachable server too", async () => {
    await expect(
      new OpaPolicyEngine({ url, path: "hexr/broken" }).decide({
        principal: agent("acme"),
        action: "vault:read",
        resource: secret("acme", "db"),
      }),
    ).rejects.toMatchObject({ code: "policy.engine_unavailable", kind: "unavailable" });
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", () => r()));
    const deadUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((r) => closed.close(() => r()));
    await expect(
      new OpaPolicyEngine({ url: deadUrl }).decide({
        principal: agent("acme"),
        action: "vault:read",
        resource: secret("acme", "db"),
      }),
    ).rejects.toMatchObject({
      code: "policy.engine_unavailable",
    });
  });

  it("refuses rule paths that are not rule names", () => {
    expect(() => new OpaPolicyEngine({ url, path: "../v1/policies" })).toThrow(/rule names/);
  });
});

describe("platform configured with policy.engine = opa", () => {
  it("decides vault access through the OPA server and logs those decisions", async () => {
    const double = opaDouble({ prod: "warn" });
    await new Promise<void>((r) => double.server.listen(0, "127.0.0.1", () => r()));
    const url = `http://127.0.0.1:${(double.server.address() as AddressInfo).port}`;
    const p = await startTestPlatform({ config: { policy: { engine: "opa", opa: { url } } } });
    try {
      await p.api("/api/v1/tenants", { method: "POST", json: { name: "acme" } });
      const key = (
        (await (await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "acme" } })).json()) as {
          key: string;
        }
      ).key;
      for (const name of ["prod/db", "dev/db"]) {
        const put = await p.api(`/api/v1/tenants/acme/secrets/${encodeURIComponent(name)}`, {
          method: "PUT",
          json: { value: "v" },
          auth: key,
        });
        expect(put.status).toBe(201);
      }
      const token = (
        await p.identity.authority.mintJwtSvid("spiffe://hexr.local/agent/acme/bot/main", ["spiffe://hexr.local/system/vault"])
      ).token;
      const before = double.queries.length;
      const prod = await p.api(`/api/v1/tenants/acme/secrets/${encodeURIComponent("prod/db")}`, { auth: token });
      expect(prod.status).toBe(200);
      expect(prod.headers.get("hexr-policy-warning")).toContain("prod-guard");
      const write = await p.api(`/api/v1/tenants/acme/secrets/${encodeURIComponent("dev/db")}`, {
        method: "PUT",
        json: { value: "x" },
        auth: token,
      });
      expect(write.status).toBe(403);
      expect(double.queries.length - before).toBe(2);
      const log = (await (await p.api("/api/v1/tenants/acme/policies/decisions?limit=2", { auth: key })).json()) as {
        items: Array<Record<string, unknown>>;
      };
      expect(log.items.map((i) => [i["action"], i["allowed"], i["mode"]])).toEqual([
        ["vault:write", false, "enforce"],
        ["vault:read", true, "warn"],
      ]);
    } finally {
      await p.dispose();
      await new Promise<void>((r) => double.server.close(() => r()));
    }
  });

  it("refuses engine = opa without an OPA URL", () => {
    expect(PlatformConfig.safeParse({ dataDir: "/tmp/x", policy: { engine: "opa" } }).success).toBe(false);
    expect(
      PlatformConfig.safeParse({ dataDir: "/tmp/x", policy: { engine: "opa", opa: { url: "http://opa:8181", path: "../x" } } })
        .success,
    ).toBe(false);
  });
});
