import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { unsafeTenantScope, type Principal } from "../auth/principal.js";
import { createSqliteStorage } from "../storage/sqlite.js";
import type { Storage } from "../storage/types.js";
import { CedarPolicyEngine } from "./cedar-engine.js";
import { DecisionLog, withDecisionLog } from "./decision-log.js";
import { PolicyStore, policyMigrations } from "./store.js";

const log = pino({ level: "silent" });
const agent: Principal = {
  kind: "workload",
  spiffeId: "spiffe://hexr.local/agent/acme/bot/main",
  trustDomain: "hexr.local",
  tenant: "acme",
  agent: "bot",
  role: "main",
  audience: ["spiffe://hexr.local/system/vault"],
  via: "jwt-svid",
};
const scope = unsafeTenantScope("tid-acme", "acme");

describe("decision log", () => {
  let dir: string;
  let db: Storage;
  let inserts: number;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "hexr-declog-"));
    const real = createSqliteStorage({ filename: join(dir, "t.db") });
    inserts = 0;
    // Counts INSERT statements on a real SQLite database (no fake storage).
    db = {
      ...real,
      run: (sql, params) => {
        if (sql.startsWith("INSERT INTO policy_decisions")) inserts++;
        return real.run(sql, params);
      },
    };
  });
  afterEach(async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes every decision, in batches, and serves them newest first", async () => {
    await db.migrate(policyMigrations);
    const decisions = new DecisionLog({ store: new PolicyStore(db), log, tenantId: async () => "tid-acme" });
    const engine = withDecisionLog(new CedarPolicyEngine({ loadPolicies: async () => [] }), decisions);
    for (let i = 0; i < 450; i++) {
      await engine.decide({
        principal: agent,
        action: i % 2 ? "vault:read" : "vault:write",
        resource: { type: "Secret", id: `s${i}`, tenant: "acme" },
      });
    }
    expect(inserts).toBe(0); // nothing written on the request path
    const newest = await decisions.query(scope, { limit: 5 });
    expect(inserts).toBeLessThanOrEqual(5); // 450 rows in chunks of 100
    expect(newest.map((d) => d.resource.id)).toEqual(["s449", "s448", "s447", "s446", "s445"]);
    expect(newest[0]).toMatchObject({
      principal: agent.spiffeId,
      action: "vault:read",
      allowed: true,
      mode: "enforce",
      policyIds: ["baseline:agent-secrets-read"],
    });
    expect((await decisions.query(scope, { limit: 1000, allowed: false })).length).toBe(225);
    // the recorded request holds no audience (nor any token)
    const raw = await db.get<{ request: string }>("SELECT request FROM policy_decisions LIMIT 1");
    expect(raw!.request).not.toContain("audience");
    await decisions.close();
  });

  it("a storage failure never fails a decision; the batch is dropped after retries", async () => {
    // no migration: every insert fails
    const decisions = new DecisionLog({ store: new PolicyStore(db), log, tenantId: async () => "tid-acme" });
    const engine = withDecisionLog(new CedarPolicyEngine({ loadPolicies: async () => [] }), decisions);
    const d = await engine.decide({
      principal: agent,
      action: "vault:read",
      resource: { type: "Secret", id: "x", tenant: "acme" },
    });
    expect(d.allowed).toBe(true);
    await decisions.close();
    expect(decisions.stats).toMatchObject({ written: 0, dropped: 1 });
    expect(decisions.stats.failedBatches).toBeGreaterThanOrEqual(3);
  });

  it("prunes entries older than the retention", async () => {
    await db.migrate(policyMigrations);
    let now = Date.UTC(2030, 0, 1);
    const decisions = new DecisionLog({
      store: new PolicyStore(db),
      log,
      tenantId: async () => "tid-acme",
      retentionDays: 1,
      clock: () => now,
    });
    const engine = withDecisionLog(new CedarPolicyEngine({ loadPolicies: async () => [] }), decisions);
    const decide = () =>
      engine.decide({ principal: agent, action: "vault:read", resource: { type: "Secret", id: "x", tenant: "acme" } });
    await decide();
    await decisions.flush();
    now += 2 * 86_400_000;
    await decide();
    await decisions.flush();
    const left = await decisions.query(scope, { limit: 10 });
    expect(left.map((d) => d.at)).toEqual([new Date(now).toISOString()]);
    await decisions.close();
  });
});
