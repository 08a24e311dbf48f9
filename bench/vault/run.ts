/**
 * bench/vault: `vault.get` through the full stack — HTTP, JWT-SVID bearer verification, tenant
 * authorization, a Cedar policy decision (baseline + an enforced tenant policy), the decision log and
 * vault audit (batched), a SQLite read and two AES-256-GCM opens — beside `GET /healthz` on the same
 * server in the same run. The JWT-SVID is a real one: this process is registered as an agent and
 * fetches it from the platform's Workload API, as an agent would.
 *
 * Then policy evaluation in process: `decide()` on a tenant's compiled (preparsed) policy set, with and
 * without the decision memo, against Cedar's stateless `isAuthorized` that parses the policies on
 * every call (what caching the compiled set saves).
 *
 *   npm run build && npx tsx bench/vault/run.ts [--requests 20000] [--concurrency 16] [--evaluations 20000]
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { readBootId, readProcStat } from "../../packages/platform/src/identity/attestation/proc.js";
import { processSelectors } from "../../packages/platform/src/identity/attestation/unix-attestor.js";
import { CedarPolicyEngine } from "../../packages/platform/src/policy/cedar-engine.js";
import { cedar, compileDocument } from "../../packages/platform/src/policy/cedar.js";
import { BASELINE_POLICIES } from "../../packages/platform/src/policy/baseline.js";
import { toCedarRequest } from "../../packages/platform/src/policy/entities.js";
import type { PolicyRequest } from "../../packages/platform/src/policy/types.js";
import { Identity } from "../../packages/sdk/src/identity/identity.js";
import { runLoad } from "../lib/http-load.js";
import { HEXR_BIN, startPlatform, type BenchPlatform } from "../lib/platform.js";
import { fmtMs, percentile, printTable, type LatencySummary } from "../lib/stats.js";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const REQUESTS = arg("requests", 20_000);
const CONCURRENCY = arg("concurrency", 16);
const EVALUATIONS = arg("evaluations", 20_000);
const AGENT = "spiffe://hexr.local/agent/acme/bench/main";
const VAULT = "spiffe://hexr.local/system/vault";
const POLICY = `@id("no-prod")
forbid (principal is Hexr::Agent, action == Hexr::Action::"vault:read", resource is Hexr::Secret)
when { resource.name like "prod/*" && principal.role != "deployer" };`;

async function check(res: Promise<Response>, what: string): Promise<Response> {
  const r = await res;
  if (!r.ok) throw new Error(`${what}: HTTP ${r.status} ${await r.text()}`);
  return r;
}

async function httpBench(): Promise<void> {
  if (!existsSync(HEXR_BIN)) throw new Error(`${HEXR_BIN} is missing: run 'npm run build' first`);
  let platform: BenchPlatform | undefined;
  let identity: Identity | undefined;
  try {
    platform = await startPlatform({ name: "hexr-bench-vault" });
    const info = JSON.parse(readFileSync(join(platform.dataDir, "platform.json"), "utf8")) as { workloadSocket: string };
    const url = platform.url;
    const admin = {
      authorization: `Bearer ${platform.adminKey}`,
      "content-type": "application/json",
    };

    await check(
      fetch(url + "/api/v1/tenants", { method: "POST", headers: admin, body: JSON.stringify({ name: "acme" }) }),
      "create tenant",
    );
    const secretPath = `/api/v1/tenants/acme/secrets/${encodeURIComponent("db/password")}`;
    await check(
      fetch(url + secretPath, { method: "PUT", headers: admin, body: JSON.stringify({ value: "correct-horse-battery-staple" }) }),
      "put secret",
    );
    await check(
      fetch(url + "/api/v1/tenants/acme/policies/prod-guard", {
        method: "PUT",
        headers: admin,
        body: JSON.stringify({ policy: POLICY, mode: "enforce" }),
      }),
      "apply policy",
    );
    // This process is the agent: registered by its kernel-attested selectors, it gets a JWT-SVID for the vault.
    const { startTime } = await readProcStat(process.pid);
    await check(
      fetch(url + "/api/v1/identity/entries", {
        method: "POST",
        headers: admin,
        body: JSON.stringify({
          spiffeId: AGENT,
          selectors: processSelectors(process.pid, startTime, readBootId()),
          createdBy: "bench",
        }),
      }),
      "register the bench process",
    );
    identity = new Identity({ address: `unix://${info.workloadSocket}` });
    await identity.ready();
    const token = (await identity.jwtSvid(VAULT)).token;
    const got = await check(fetch(url + secretPath, { headers: { authorization: `Bearer ${token}` } }), "vault get");
    if (((await got.json()) as { value: string }).value !== "correct-horse-battery-staple")
      throw new Error("vault get returned the wrong value");

    console.log(
      `bench/vault: GET secret (JWT-SVID + Cedar policy + decision log + audit + envelope decryption) vs GET /healthz, same server`,
    );
    const rows: Array<Record<string, string>> = [];
    const ratios: string[] = [];
    for (const concurrency of [1, CONCURRENCY]) {
      const requests = concurrency === 1 ? Math.min(REQUESTS, 5_000) : REQUESTS;
      const rounds = 2;
      const vault: LatencySummary[] = [];
      const health: LatencySummary[] = [];
      // Alternate the two so that neither benefits from running second.
      for (let i = 0; i < rounds; i++) {
        vault.push(
          await runLoad({
            url: url + secretPath,
            headers: { authorization: `Bearer ${token}` },
            concurrency,
            requests: requests / rounds,
          }),
        );
        health.push(await runLoad({ url: url + "/healthz", concurrency, requests: requests / rounds }));
      }
      const avg = (xs: LatencySummary[], k: "p50" | "p99" | "throughput") => xs.reduce((a, x) => a + x[k], 0) / xs.length;
      const v = { p50: avg(vault, "p50"), p99: avg(vault, "p99"), rps: avg(vault, "throughput") };
      const h = { p50: avg(health, "p50"), p99: avg(health, "p99"), rps: avg(health, "throughput") };
      rows.push({ request: `vault.get (c=${concurrency})`, p50: fmtMs(v.p50), p99: fmtMs(v.p99), "ops/s": v.rps.toFixed(0) });
      rows.push({ request: `/healthz (c=${concurrency})`, p50: fmtMs(h.p50), p99: fmtMs(h.p99), "ops/s": h.rps.toFixed(0) });
      ratios.push(
        `c=${concurrency}: vault.get/healthz p50 ${(v.p50 / h.p50).toFixed(2)}x, p99 ${(v.p99 / h.p99).toFixed(2)}x, throughput ${(v.rps / h.rps).toFixed(2)}x` +
          (concurrency === 1 ? `; vault.get p50 goal < 1 ms: ${v.p50 < 1 ? "met" : "NOT met"}` : ""),
      );
    }
    printTable(rows);
    for (const r of ratios) console.log(r);
  } finally {
    identity?.close();
    await platform?.stop();
  }
}

function timeEach(n: number, fn: (i: number) => unknown): number[] {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    fn(i);
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return samples.sort((a, b) => a - b);
}

async function timeEachAsync(n: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn(i);
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return samples.sort((a, b) => a - b);
}

async function policyBench(): Promise<void> {
  const tenantPolicies = [
    { name: "prod-guard", version: 1, mode: "enforce" as const, policies: compileDocument("prod-guard", POLICY).policies },
  ];
  const memo = new CedarPolicyEngine({ loadPolicies: async () => tenantPolicies });
  const fresh = new CedarPolicyEngine({ loadPolicies: async () => tenantPolicies, memoSize: 0 });
  const principal = {
    kind: "workload",
    spiffeId: AGENT,
    trustDomain: "hexr.local",
    tenant: "acme",
    agent: "bench",
    role: "main",
    via: "jwt-svid",
  } as const;
  const req = (i: number): PolicyRequest => ({
    principal,
    action: "vault:read",
    resource: { type: "Secret", id: `db/password-${i % 64}`, tenant: "acme" },
  });
  // Warm up: compile the tenant's set, JIT, memo.
  for (let i = 0; i < 2_000; i++) {
    await memo.decide(req(i));
    await fresh.decide(req(i));
  }
  const stateless = { ...BASELINE_POLICIES, ...tenantPolicies[0]!.policies };
  const statelessCall = (i: number) => {
    const r = toCedarRequest(req(i));
    const a = cedar().isAuthorized({
      principal: r.principal,
      action: r.action,
      resource: r.resource,
      context: r.context as never,
      entities: r.entities as never,
      policies: { staticPolicies: stateless },
    });
    if (a.type !== "success") throw new Error("stateless evaluation failed");
  };
  for (let i = 0; i < 200; i++) statelessCall(i);

  const n = EVALUATIONS;
  const memoS = await timeEachAsync(n, (i) => memo.decide(req(i)));
  const freshS = await timeEachAsync(n, (i) => fresh.decide(req(i)));
  const statelessS = timeEach(Math.min(n, 2_000), statelessCall);
  const us = (x: number) => `${x.toFixed(1)} µs`;
  console.log(
    `\nbench/vault policy: in-process decide() for vault:read (baseline + 1 enforced tenant policy), ${n} evaluations each`,
  );
  printTable([
    {
      evaluation: "decide(), compiled set cached, decision memo hit",
      p50: us(percentile(memoS, 50)),
      p99: us(percentile(memoS, 99)),
    },
    {
      evaluation: "decide(), compiled set cached, no memo (Cedar runs)",
      p50: us(percentile(freshS, 50)),
      p99: us(percentile(freshS, 99)),
    },
    {
      evaluation: "baseline: Cedar isAuthorized, policies parsed per call",
      p50: us(percentile(statelessS, 50)),
      p99: us(percentile(statelessS, 99)),
    },
  ]);
  const goal = (x: number) => (x < 50 ? "met" : "NOT met");
  console.log(
    `ratio vs parse-per-call: memo ${(percentile(memoS, 50) / percentile(statelessS, 50)).toFixed(3)}x, compiled ${(percentile(freshS, 50) / percentile(statelessS, 50)).toFixed(2)}x; ` +
      `policy p50 goal < 50 µs: memo hit ${goal(percentile(memoS, 50))}, Cedar evaluation ${goal(percentile(freshS, 50))}`,
  );
}

await httpBench();
await policyBench();
