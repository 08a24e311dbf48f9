import { HexrError } from "@hexr/core";
import { describe, expect, it } from "vitest";
import type { Principal } from "../auth/principal.js";
import { CedarPolicyEngine, type ActivePolicy } from "./cedar-engine.js";
import { compileDocument } from "./cedar.js";
import { CEDAR_SCHEMA } from "./schema.js";
import type { EnforcementMode, PolicyRequest } from "./types.js";

const agent = (tenant: string, name = "bot", role = "main"): Principal => ({
  kind: "workload",
  spiffeId: `spiffe://hexr.local/agent/${tenant}/${name}/${role}`,
  trustDomain: "hexr.local",
  tenant,
  agent: name,
  role,
  via: "jwt-svid",
});
const secret = (tenant: string, id: string) => ({ type: "Secret", id, tenant });
const doc = (name: string, text: string, mode: EnforcementMode = "enforce", version = 1): ActivePolicy => ({
  name,
  version,
  mode,
  policies: compileDocument(name, text).policies,
});

function engineWith(byTenant: Record<string, ActivePolicy[]>, opts: { memoSize?: number } = {}) {
  let loads = 0;
  const engine = new CedarPolicyEngine({
    loadPolicies: async (t) => {
      loads++;
      return byTenant[t] ?? [];
    },
    ...opts,
  });
  return { engine, loads: () => loads };
}

describe("Cedar policy engine", () => {
  it("the schema parses and declares every action", () => {
    expect(CEDAR_SCHEMA).toContain('action "vault:read"');
    expect(CEDAR_SCHEMA).toContain("entity Agent in [Tenant]");
  });

  it("baseline: agents read their own tenant's secrets, never another tenant's", async () => {
    const { engine } = engineWith({});
    const same = await engine.decide({ principal: agent("acme"), action: "vault:read", resource: secret("acme", "db/password") });
    expect(same).toMatchObject({
      allowed: true,
      effect: "allow",
      mode: "enforce",
      flagged: false,
      policyIds: ["baseline:agent-secrets-read"],
    });
    const cross = await engine.decide({
      principal: agent("acme"),
      action: "vault:read",
      resource: secret("globex", "db/password"),
    });
    expect(cross).toMatchObject({ allowed: false, effect: "deny", policyIds: ["baseline:tenant-isolation"] });
    expect(cross.reasons[0]).toContain("forbidden by baseline:tenant-isolation");
  });

  it("baseline: agents may not write without a policy; tenant keys and admins may", async () => {
    const { engine } = engineWith({});
    const write = (principal: Principal) => engine.decide({ principal, action: "vault:write", resource: secret("acme", "x") });
    expect((await write(agent("acme"))).allowed).toBe(false);
    expect((await write({ kind: "tenant-key", keyId: "k1", tenant: "acme" })).allowed).toBe(true);
    expect((await write({ kind: "tenant-key", keyId: "k2", tenant: "globex" })).allowed).toBe(false);
    expect((await write({ kind: "admin", keyId: "a" })).allowed).toBe(true);
  });

  it("a tenant permit can never open another tenant (the isolation forbid wins)", async () => {
    const { engine } = engineWith({ globex: [doc("open-all", "permit (principal, action, resource);")] });
    const d = await engine.decide({ principal: agent("acme"), action: "vault:read", resource: secret("globex", "db") });
    expect(d.allowed).toBe(false);
    // ... while inside globex, the permit does apply.
    expect(
      (await engine.decide({ principal: agent("globex"), action: "vault:write", resource: secret("globex", "db") })).allowed,
    ).toBe(true);
  });

  it("non-agent SPIFFE IDs have no tenant and get nothing", async () => {
    const { engine } = engineWith({});
    const svc: Principal = {
      kind: "workload",
      spiffeId: "spiffe://hexr.local/system/gateway",
      trustDomain: "hexr.local",
      via: "x509-svid",
    };
    expect((await engine.decide({ principal: svc, action: "vault:read", resource: secret("acme", "db") })).allowed).toBe(false);
  });

  const forbidProd = `@id("no-prod")
forbid (principal is Hexr::Agent, action == Hexr::Action::"vault:read", resource is Hexr::Secret)
when { resource.name like "prod/*" && principal.role != "deployer" };`;

  it("enforce mode denies", async () => {
    const { engine } = engineWith({ acme: [doc("prod-guard", forbidProd, "enforce")] });
    const d = await engine.decide({ principal: agent("acme"), action: "vault:read", resource: secret("acme", "prod/db") });
    expect(d).toMatchObject({
      allowed: false,
      effect: "deny",
      mode: "enforce",
      flagged: false,
      policyIds: ["prod-guard#no-prod"],
    });
    const deployer = await engine.decide({
      principal: agent("acme", "ci", "deployer"),
      action: "vault:read",
      resource: secret("acme", "prod/db"),
    });
    expect(deployer.allowed).toBe(true);
  });

  it("audit mode allows, flags and names the policy", async () => {
    const { engine } = engineWith({ acme: [doc("prod-guard", forbidProd, "audit")] });
    const d = await engine.decide({ principal: agent("acme"), action: "vault:read", resource: secret("acme", "prod/db") });
    expect(d).toMatchObject({ allowed: true, effect: "deny", mode: "audit", flagged: true, policyIds: ["prod-guard#no-prod"] });
    const other = await engine.decide({ principal: agent("acme"), action: "vault:read", resource: secret("acme", "dev/db") });
    expect(other).toMatchObject({ allowed: true, effect: "allow", flagged: false });
  });

  it("warn mode allows and flags as warn, even when an audit policy also denies", async () => {
    const { engine } = engineWith({
      acme: [
        doc("prod-guard", forbidProd, "warn"),
        doc("no-db", `forbid (principal, action, resource) when { resource has name && resource.name like "*db*" };`, "audit"),
      ],
    });
    const d = await engine.decide({ principal: agent("acme"), action: "vault:read", resource: secret("acme", "prod/db") });
    expect(d).toMatchObject({ allowed: true, effect: "deny", mode: "warn", flagged: true });
    expect(d.policyIds.sort()).toEqual(["no-db#0", "prod-guard#no-prod"]);
  });

  it("a permit in audit mode does not grant, and says it would", async () => {
    const { engine } = engineWith({
      acme: [doc("writers", `permit (principal is Hexr::Agent, action == Hexr::Action::"vault:write", resource);`, "audit")],
    });
    const d = await engine.decide({ principal: agent("acme"), action: "vault:write", resource: secret("acme", "x") });
    expect(d).toMatchObject({ allowed: false, effect: "allow", mode: "enforce", flagged: false });
    expect(d.reasons.join(" ")).toContain("would be permitted by writers#0");
  });

  it("action groups and context attributes work in policies", async () => {
    const { engine } = engineWith({
      acme: [
        doc(
          "vault-all",
          `permit (principal is Hexr::Agent, action in Hexr::Action::"vault", resource) when { context.via == "x509-svid" };`,
        ),
      ],
    });
    const mtls: Principal = { ...(agent("acme") as Extract<Principal, { kind: "workload" }>), via: "x509-svid" };
    expect((await engine.decide({ principal: mtls, action: "vault:delete", resource: secret("acme", "a") })).allowed).toBe(true);
    expect(
      (await engine.decide({ principal: agent("acme"), action: "vault:delete", resource: secret("acme", "a") })).allowed,
    ).toBe(false);
  });

  it("a2a to an agent of the same tenant is allowed by the baseline; the resource is the target's SPIFFE ID", async () => {
    const { engine } = engineWith({});
    const target = "spiffe://hexr.local/agent/acme/planner/main";
    expect(
      (
        await engine.decide({
          principal: agent("acme"),
          action: "a2a:send",
          resource: { type: "Agent", id: target, tenant: "acme" },
        })
      ).allowed,
    ).toBe(true);
    // to itself: principal and resource are the same entity
    const self = agent("acme");
    const selfId = (self as { spiffeId: string }).spiffeId;
    expect(
      (await engine.decide({ principal: self, action: "a2a:send", resource: { type: "Agent", id: selfId, tenant: "acme" } }))
        .allowed,
    ).toBe(true);
    await expect(
      engine.decide({ principal: self, action: "a2a:send", resource: { type: "Agent", id: target, tenant: "globex" } }),
    ).rejects.toMatchObject({
      code: "policy.invalid_resource",
    });
  });

  it("rejects unknown actions, resource types and anonymous principals with typed errors", async () => {
    const { engine } = engineWith({});
    await expect(
      engine.decide({ principal: agent("acme"), action: "vault:steal", resource: secret("acme", "a") }),
    ).rejects.toMatchObject({
      code: "policy.unknown_action",
      kind: "invalid_argument",
    });
    await expect(
      engine.decide({ principal: agent("acme"), action: "vault:read", resource: { type: "Rocket", id: "a", tenant: "acme" } }),
    ).rejects.toMatchObject({
      code: "policy.unknown_resource_type",
    });
    await expect(
      engine.decide({ principal: { kind: "anonymous" }, action: "vault:read", resource: secret("acme", "a") }),
    ).rejects.toBeInstanceOf(HexrError);
  });

  it("caches the compiled set per tenant and reloads after invalidate", async () => {
    const byTenant: Record<string, ActivePolicy[]> = {};
    const { engine, loads } = engineWith(byTenant);
    const req: PolicyRequest = { principal: agent("acme"), action: "vault:read", resource: secret("acme", "prod/db") };
    expect((await engine.decide(req)).allowed).toBe(true);
    await engine.decide(req);
    await engine.decide({ ...req, resource: secret("acme", "other") });
    expect(loads()).toBe(1);
    byTenant["acme"] = [doc("prod-guard", forbidProd)];
    expect((await engine.decide(req)).allowed).toBe(true); // still the cached set
    engine.invalidate("acme");
    expect((await engine.decide(req)).allowed).toBe(false);
    expect(loads()).toBe(2);
  });

  it("refreshes a tenant's set in the background after refreshMs", async () => {
    let now = 1_000;
    const byTenant: Record<string, ActivePolicy[]> = {};
    const engine = new CedarPolicyEngine({ loadPolicies: async (t) => byTenant[t] ?? [], refreshMs: 100, clock: () => now });
    const req: PolicyRequest = { principal: agent("acme"), action: "vault:read", resource: secret("acme", "prod/db") };
    expect((await engine.decide(req)).allowed).toBe(true);
    byTenant["acme"] = [doc("prod-guard", forbidProd)];
    now += 500;
    // This decision still uses the old set and starts a refresh; the next one sees the change.
    expect((await engine.decide(req)).allowed).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect((await engine.decide(req)).allowed).toBe(false);
  });

  it("a load that started before an invalidate never installs stale policies", async () => {
    const byTenant: Record<string, ActivePolicy[]> = { acme: [] };
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let first = true;
    const engine = new CedarPolicyEngine({
      loadPolicies: async (t) => {
        const snapshot = byTenant[t] ?? [];
        if (first) {
          first = false;
          await gate;
        }
        return snapshot;
      },
    });
    const req: PolicyRequest = { principal: agent("acme"), action: "vault:read", resource: secret("acme", "prod/db") };
    const slow = engine.decide(req);
    byTenant["acme"] = [doc("prod-guard", forbidProd)];
    engine.invalidate("acme");
    release();
    expect((await slow).allowed).toBe(false);
    expect((await engine.decide(req)).allowed).toBe(false);
  });

  it("memoized and fresh evaluations agree", async () => {
    const policies = { acme: [doc("prod-guard", forbidProd, "warn")] };
    const memo = engineWith(policies).engine;
    const fresh = engineWith(policies, { memoSize: 0 }).engine;
    for (const id of ["prod/a", "dev/b", "prod/a", "dev/b"]) {
      const req: PolicyRequest = { principal: agent("acme"), action: "vault:read", resource: secret("acme", id) };
      const a = await memo.decide(req);
      const b = await fresh.decide(req);
      expect({ ...a, evaluationMicros: 0 }).toEqual({ ...b, evaluationMicros: 0 });
    }
  });
});

describe("policy documents", () => {
  it("splits documents into ids, honouring @id", () => {
    const c = compileDocument(
      "p",
      `permit (principal, action, resource);\n@id("two") forbid (principal, action, resource) when { false };`,
    );
    expect(Object.keys(c.policies)).toEqual(["p#0", "p#two"]);
  });

  it("returns Cedar's syntax error with a position", () => {
    try {
      compileDocument("p", "permit (principal, action, resource)\nwhen { principal.tenant == };");
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ code: "policy.invalid_syntax", kind: "invalid_argument" });
      expect((err as HexrError).details?.["errors"]).toEqual([
        expect.objectContaining({ path: expect.stringMatching(/^2:\d+$/) }),
      ]);
    }
  });

  it("returns the validator's text for schema violations", () => {
    try {
      compileDocument(
        "p",
        `permit (principal is Hexr::Agent, action == Hexr::Action::"vault:read", resource) when { principal.team == "x" };`,
      );
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ code: "policy.schema_violation", kind: "failed_precondition" });
      expect((err as HexrError).message).toContain("team");
    }
    expect(() => compileDocument("p", `permit (principal, action == Hexr::Action::"vault:fly", resource);`)).toThrow(/vault:fly/);
  });

  it("refuses templates, empty documents and duplicate ids", () => {
    expect(() => compileDocument("p", "permit (principal == ?principal, action, resource);")).toThrow(/templates/);
    expect(() => compileDocument("p", "// nothing here\n")).toThrow(/no policy/);
    expect(() =>
      compileDocument("p", `@id("a") permit (principal, action, resource);\n@id("a") permit (principal, action, resource);`),
    ).toThrow(/duplicate/);
  });
});
