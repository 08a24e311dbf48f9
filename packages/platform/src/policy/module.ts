import type { Logger } from "pino";
import type { PlatformModule } from "../module.js";
import type { Storage } from "../storage/types.js";
import type { TenantService } from "../tenants/service.js";
import { CedarPolicyEngine } from "./cedar-engine.js";
import { compileDocument } from "./cedar.js";
import { DecisionLog } from "./decision-log.js";
import { OpaPolicyEngine } from "./opa-engine.js";
import { policyRoutes } from "./routes.js";
import { PolicyService } from "./service.js";
import { PolicyStore, policyMigrations } from "./store.js";
import type { PolicyEngine } from "./types.js";

export type PolicyEngineChoice =
  { kind: "cedar" } | { kind: "opa"; url: string; path?: string; token?: string; timeoutMs?: number };

export interface PolicyModuleDeps {
  storage: Storage;
  log: Logger;
  tenants: TenantService;
  engine?: PolicyEngineChoice;
  decisionLogRetentionDays?: number;
  clock?: () => number;
}

export interface PolicyModule extends PlatformModule {
  /** What services call: `policy.engine.decide(req)` (every decision lands in the decision log). */
  readonly engine: PolicyEngine;
  readonly service: PolicyService;
  readonly cedar: CedarPolicyEngine;
  readonly decisions: DecisionLog;
}

/** The policy engine (Cedar embedded, or an OPA server), tenant policies, and the decision log. */
export function createPolicyModule({
  storage,
  log,
  tenants,
  engine: choice = { kind: "cedar" },
  decisionLogRetentionDays = 30,
  clock = Date.now,
}: PolicyModuleDeps): PolicyModule {
  const store = new PolicyStore(storage);
  const cedar = new CedarPolicyEngine({
    clock,
    loadPolicies: async (tenant) => {
      let scope;
      try {
        scope = await tenants.scope(tenant);
      } catch {
        return []; // an unknown tenant has only the baseline
      }
      const rows = await store.active(scope);
      return rows.map((r) => ({
        name: r.name,
        version: Number(r.version),
        mode: r.mode,
        policies: compileDocument(r.name, r.text).policies,
      }));
    },
  });
  const raw: PolicyEngine = choice.kind === "opa" ? new OpaPolicyEngine(choice) : cedar;
  const decisions = new DecisionLog({
    store,
    log: log.child({ module: "policy" }),
    retentionDays: decisionLogRetentionDays,
    clock,
    tenantId: async (tenant) => (await tenants.scope(tenant)).tenantId,
  });
  const service = new PolicyService({ store, cedar, engine: raw, decisions, clock });
  tenants.onDelete(async (tenant) => {
    await store.eraseTenant(tenant);
    cedar.invalidate(tenant);
  });
  const engine: PolicyEngine = { decide: (req) => service.decide(req) };
  return {
    name: "policy",
    migrations: policyMigrations,
    routes: policyRoutes(service, clock),
    engine,
    service,
    cedar,
    decisions,
    async stop() {
      await decisions.close();
    },
  };
}
