import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Principal } from "../auth/principal.js";
import { CedarPolicyEngine } from "./cedar-engine.js";
import { compileDocument } from "./cedar.js";
import { OpaPolicyEngine, type OpaInput } from "./opa-engine.js";
import type { EnforcementMode, PolicyEngine } from "./types.js";

/**
 * A stand-in for an OPA server (OPA cannot run here) that speaks the Data API wire format
 * (https://www.openpolicyagent.org/docs/rest-api#data-api): `POST /v1/data/<path>` with
 * `{"input": ...}` → `200 {"result": ...}`, `200 {}` when the document is undefined, and
 * `400 {"code", "message"}` for a malformed body. It evaluates this rule, written here in Rego for
 * reference and implemented below on the input it receives:
 *
 *   package hexr.authz
 *   same_tenant if input.principal.tenant == input.resource.tenant
 *   allow if input.principal.type == "ApiKey"; same_tenant
 *   allow if input.principal.type == "Agent"; same_tenant; input.action in {"vault:read", "vault:list"}; not prod_denied
 *   prod_denied if startswith(input.resource.name, "prod/"); input.principal.agent != "deployer"
 *   decision := {"allow": allow, "mode": data.modes.prod, "policy_ids": ["prod-guard"]} if prod_denied
 *   decision := {"allow": allow} otherwise
 */
function opaDouble(modes: { prod: EnforcementMode }) {
  const queries: unknown[] = [];
  const evaluate = (input: OpaInput) => {
    const sameTenant = input.principal["tenant"] !== undefined && input.principal["tenant"] === input.resource.tenant;
    const prodDenied = String(input.resource["name"] ?? "").startsWith("prod/") && input.principal["agent"] !== "deployer";
    let allow = false;
    if (input.principal.type === "ApiKey" && sameTenant) allow = true;
    if (input.principal.type === "Agent" && sameTenant && ["vault:read", "vault:list"].includes(input.action) && !prodDenied)
      allow = true;
    if (input.principal.type === "Agent" && sameTenant && prodDenied) {
      // the allow that would hold without the prod rule decides what audit/warn let through
      return { allow: false, mode: modes.prod, policy_ids: ["prod-guard"] };
    }
    return { allow };
  };
  const readBody = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (req.method !== "POST" || !req.url?.startsWith("/v1/data/"))
        return send(404, { code: "resource_not_found", message: "not found" });
      let body: { input?: OpaInput };
      try {
        body = JSON.parse(await readBody(req)) as { input?: OpaInput };
      } catch (err) {
        return send(400, {
          code: "invalid_parameter",
          message: `body contains malformed input document: ${(err as Error).message}`,
        });
      }
      queries.push(body);
      const path = req.url.slice("/v1/data/".length).split("?")[0];
      if (path === "hexr/broken")
        return send(500, { code: "internal_error", message: "eval_conflict_error: functions must not produce multiple outputs" });
      if (path !== "hexr/authz" || body.input === undefined) return send(200, {});
      send(200, { result: evaluate(body.input) });
    })();
  });
  return { server, queries };
}

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
