import { DNS_LABEL, HexrError, describeWorkload, isSpiffeId } from "@hexr/core";
import { z } from "zod";
import type { Principal, TenantScope } from "../auth/principal.js";
import { validationError } from "../http/problem.js";
import type { ActivePolicy, CedarPolicyEngine } from "./cedar-engine.js";
import { compileDocument } from "./cedar.js";
import type { DecisionLog, DecisionLogEntry, RecordedRequest } from "./decision-log.js";
import { principalLabel } from "./entities.js";
import type { DecisionQuery, PolicyRow, PolicyStore } from "./store.js";
import { EnforcementMode, type PolicyDecision, type PolicyEngine, type PolicyRequest } from "./types.js";

/** Words used by the routes next to policy names. */
const RESERVED_NAMES = ["decisions", "test", "replay", "schema"];

export const PolicyName = z
  .string()
  .regex(DNS_LABEL, "must be a DNS label: 1-63 lowercase letters, digits or '-'")
  .refine((n) => !RESERVED_NAMES.includes(n), { message: `must not be one of ${RESERVED_NAMES.join(", ")}` });

export const ApplyPolicyRequest = z.strictObject({
  policy: z
    .string()
    .min(1)
    .max(64 * 1024)
    .describe("Cedar policy text; one or more policies"),
  mode: EnforcementMode.default("enforce"),
  description: z.string().max(500).optional(),
});
export type ApplyPolicyRequest = z.input<typeof ApplyPolicyRequest>;

export const PolicyVersion = z.object({
  name: z.string(),
  version: z.number().int(),
  mode: EnforcementMode,
  policy: z.string(),
  description: z.string().nullable(),
  deleted: z.boolean(),
  policyIds: z.array(z.string()).describe("the Cedar policy ids this document contributes"),
  createdAt: z.string(),
  createdBy: z.string(),
});
export type PolicyVersion = z.infer<typeof PolicyVersion>;

export const AppliedPolicy = PolicyVersion.extend({
  unchanged: z.boolean().describe("true when the text and mode equal the latest version"),
});
export type AppliedPolicy = z.infer<typeof AppliedPolicy>;

export const DecisionOut = z.object({
  allowed: z.boolean(),
  effect: z.enum(["allow", "deny"]),
  mode: EnforcementMode,
  flagged: z.boolean(),
  policyIds: z.array(z.string()),
  reasons: z.array(z.string()),
  evaluationMicros: z.number(),
});

const ResourceIn = z.strictObject({
  type: z.string().min(1).max(64),
  id: z.string().min(1).max(1024),
  attributes: z.record(z.string(), z.unknown()).optional(),
});

export const TestPolicyRequest = z.strictObject({
  principal: z
    .string()
    .refine((p) => p === "admin" || p === "tenant-key" || isSpiffeId(p), { message: "a SPIFFE ID, 'tenant-key' or 'admin'" }),
  action: z.string().min(1).max(64),
  resource: ResourceIn,
  context: z.record(z.string(), z.unknown()).optional(),
  /** Evaluate as if this document were applied (replacing the policy of the same name). */
  candidate: z
    .strictObject({
      name: PolicyName,
      policy: z
        .string()
        .min(1)
        .max(64 * 1024),
      mode: EnforcementMode.default("enforce"),
    })
    .optional(),
});
export type TestPolicyRequest = z.input<typeof TestPolicyRequest>;

/** An enforcement point outside the platform (an agent's a2a-sidecar) asks for a decision about a caller it verified. */
export const DecideRequest = z.strictObject({
  principal: z.string().refine(isSpiffeId, { message: "the caller's SPIFFE ID" }),
  action: z.string().min(1).max(64),
  resource: ResourceIn,
  context: z.record(z.string(), z.unknown()).optional(),
});
export type DecideRequest = z.input<typeof DecideRequest>;

export const ReplayRequest = z.strictObject({
  name: PolicyName,
  policy: z
    .string()
    .min(1)
    .max(64 * 1024),
  mode: EnforcementMode.default("enforce"),
  since: z.string().min(1).max(64).default("24h").describe("a duration back from now (30m, 24h, 7d) or an RFC 3339 time"),
  limit: z.number().int().min(1).max(1_000_000).default(100_000),
});
export type ReplayRequest = z.input<typeof ReplayRequest>;

export const ReplayChange = z.object({
  action: z.string(),
  resource: z.object({ type: z.string(), id: z.string() }),
  before: z.boolean().describe("allowed under the current policies"),
  after: z.boolean().describe("allowed with the candidate"),
  count: z.number().int(),
});
export const ReplayReport = z.object({
  since: z.string(),
  evaluated: z.number().int(),
  changed: z.number().int(),
  errors: z.number().int(),
  truncated: z.boolean(),
  byPrincipal: z.array(
    z.object({
      principal: z.string(),
      allowedToDenied: z.number().int(),
      deniedToAllowed: z.number().int(),
      changes: z.array(ReplayChange),
    }),
  ),
});
export type ReplayReport = z.infer<typeof ReplayReport>;

const DURATION = /^(\d{1,6})(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `24h`, `30m`, `7d`, `90s` back from now, or an RFC 3339 timestamp; epoch ms. */
export function parseSince(value: string, now: number): number {
  const m = DURATION.exec(value.trim());
  if (m) return now - Number(m[1]) * UNIT_MS[m[2]!]!;
  const t = Date.parse(value);
  if (!Number.isNaN(t) && /^\d{4}-\d{2}-\d{2}/.test(value)) return t;
  throw new HexrError("policy.invalid_since", `'${value}' is neither a duration like 24h/30m/7d nor an RFC 3339 time`, {
    kind: "invalid_argument",
  });
}

function idsOf(row: PolicyRow): string[] {
  if (row.deleted) return [];
  try {
    return Object.keys(compileDocument(row.name, row.text).policies);
  } catch {
    return [];
  }
}

function toVersion(row: PolicyRow): PolicyVersion {
  return {
    name: row.name,
    version: Number(row.version),
    mode: row.mode,
    policy: row.text,
    description: row.description,
    deleted: row.deleted === 1,
    policyIds: idsOf(row),
    createdAt: new Date(row.created_at).toISOString(),
    createdBy: row.created_by,
  };
}

function notFound(scope: TenantScope, name: string, version?: number): HexrError {
  const what = version === undefined ? `policy '${name}'` : `version ${version} of policy '${name}'`;
  return new HexrError(
    "policy.not_found",
    `${what} does not exist in tenant '${scope.tenant}'; 'hexr policy list' shows the policies`,
    {
      kind: "not_found",
    },
  );
}

function parse<T>(schema: z.ZodType<T>, value: unknown, where: "body" | "params"): T {
  const r = schema.safeParse(value);
  if (!r.success) throw validationError(where, r.error);
  return r.data;
}

/** Policy management is an operator's job: API keys only, never agents. */
function requireOperator(by: Principal): void {
  if (by.kind === "admin" || by.kind === "tenant-key") return;
  throw new HexrError("policy.forbidden", "managing policies needs an API key (admin or of this tenant)", {
    kind: "permission_denied",
  });
}

/** Builds the principal a `policy test` asks about. */
export function testPrincipal(spec: string, tenant: string): Principal {
  if (spec === "admin") return { kind: "admin", keyId: "policy-test" };
  if (spec === "tenant-key") return { kind: "tenant-key", keyId: "policy-test", tenant };
  const w = describeWorkload(spec);
  return {
    kind: "workload",
    spiffeId: spec,
    trustDomain: w.trustDomain,
    ...(w.kind === "agent" ? { tenant: w.tenant, agent: w.agent, role: w.role } : {}),
    via: "jwt-svid",
  };
}

export interface PolicyServiceOptions {
  store: PolicyStore;
  /** Validates documents and runs test/replay with candidates. */
  cedar: CedarPolicyEngine;
  /** The engine that decides requests (Cedar, or OPA), without the decision log. */
  engine: PolicyEngine;
  decisions: DecisionLog;
  clock?: () => number;
}

export class PolicyService {
  private readonly store: PolicyStore;
  private readonly cedar: CedarPolicyEngine;
  private readonly engine: PolicyEngine;
  private readonly decisions: DecisionLog;
  private readonly clock: () => number;

  constructor({ store, cedar, engine, decisions, clock = Date.now }: PolicyServiceOptions) {
    this.store = store;
    this.cedar = cedar;
    this.engine = engine;
    this.decisions = decisions;
    this.clock = clock;
  }

  /** The engine's decision, recorded in the decision log: what every service calls. */
  async decide(req: PolicyRequest): Promise<PolicyDecision> {
    const d = await this.engine.decide(req);
    this.decisions.record(req, d);
    return d;
  }

  /** Compiled active policies of a tenant (for the Cedar engine's loader). */
  async activePolicies(scope: TenantScope): Promise<ActivePolicy[]> {
    const rows = await this.store.active(scope);
    return rows.map((r) => ({
      name: r.name,
      version: Number(r.version),
      mode: r.mode,
      policies: compileDocument(r.name, r.text).policies,
    }));
  }

  async apply(scope: TenantScope, name: string, input: ApplyPolicyRequest, by: Principal): Promise<AppliedPolicy> {
    requireOperator(by);
    parse(PolicyName, name, "params");
    const req = parse(ApplyPolicyRequest, input, "body");
    compileDocument(name, req.policy);
    for (let attempt = 0; attempt < 5; attempt++) {
      const latest = await this.store.latest(scope, name);
      if (
        latest &&
        !latest.deleted &&
        latest.text === req.policy &&
        latest.mode === req.mode &&
        latest.description === (req.description ?? null)
      ) {
        return { ...toVersion(latest), unchanged: true };
      }
      const row = {
        name,
        version: (latest ? Number(latest.version) : 0) + 1,
        mode: req.mode,
        text: req.policy,
        description: req.description ?? null,
        deleted: 0,
        created_at: this.clock(),
        created_by: principalLabel(by),
      };
      if (await this.store.insertVersion(scope, row)) {
        this.cedar.invalidate(scope.tenant);
        return { ...toVersion({ ...row, tenant_id: scope.tenantId, tenant: scope.tenant }), unchanged: false };
      }
    }
    throw new HexrError("policy.conflict", `policy '${name}' is being changed concurrently; try again`, { kind: "conflict" });
  }

  async get(scope: TenantScope, name: string, by: Principal, version?: number): Promise<PolicyVersion> {
    requireOperator(by);
    const row = version === undefined ? await this.store.latest(scope, name) : await this.store.version(scope, name, version);
    if (!row || (version === undefined && row.deleted)) throw notFound(scope, name, version);
    return toVersion(row);
  }

  async versions(scope: TenantScope, name: string, by: Principal): Promise<PolicyVersion[]> {
    requireOperator(by);
    const rows = await this.store.versions(scope, name);
    if (rows.length === 0) throw notFound(scope, name);
    return rows.map(toVersion);
  }

  async list(scope: TenantScope, by: Principal): Promise<PolicyVersion[]> {
    requireOperator(by);
    return (await this.store.active(scope)).map(toVersion);
  }

  /** Deleting keeps history: a new version marked deleted. */
  async delete(scope: TenantScope, name: string, by: Principal): Promise<void> {
    requireOperator(by);
    for (let attempt = 0; attempt < 5; attempt++) {
      const latest = await this.store.latest(scope, name);
      if (!latest || latest.deleted) throw notFound(scope, name);
      const ok = await this.store.insertVersion(scope, {
        name,
        version: Number(latest.version) + 1,
        mode: latest.mode,
        text: "",
        description: latest.description,
        deleted: 1,
        created_at: this.clock(),
        created_by: principalLabel(by),
      });
      if (ok) {
        this.cedar.invalidate(scope.tenant);
        return;
      }
    }
    throw new HexrError("policy.conflict", `policy '${name}' is being changed concurrently; try again`, { kind: "conflict" });
  }

  /** Evaluates one request without side effects: nothing is logged, nothing is cached. */
  /** Decides and records (decision log) a request for a sidecar that verified the principal over mTLS. */
  async decideFor(scope: TenantScope, input: DecideRequest, by: Principal): Promise<PolicyDecision> {
    requireOperator(by);
    const t = parse(DecideRequest, input, "body");
    return this.decide({
      principal: testPrincipal(t.principal, scope.tenant),
      action: t.action,
      resource: {
        type: t.resource.type,
        id: t.resource.id,
        tenant: scope.tenant,
        ...(t.resource.attributes ? { attributes: t.resource.attributes } : {}),
      },
      ...(t.context ? { context: t.context } : {}),
    });
  }

  async test(scope: TenantScope, input: TestPolicyRequest, by: Principal): Promise<PolicyDecision> {
    requireOperator(by);
    const t = parse(TestPolicyRequest, input, "body");
    const req: PolicyRequest = {
      principal: testPrincipal(t.principal, scope.tenant),
      action: t.action,
      resource: {
        type: t.resource.type,
        id: t.resource.id,
        tenant: scope.tenant,
        ...(t.resource.attributes ? { attributes: t.resource.attributes } : {}),
      },
      ...(t.context ? { context: t.context } : {}),
    };
    if (!t.candidate) {
      if (this.engine === (this.cedar as PolicyEngine))
        return this.cedar.evaluateWith(await this.activePolicies(scope), [req])[0]!;
      return this.engine.decide(req);
    }
    const candidate = compileDocument(t.candidate.name, t.candidate.policy);
    const policies = await this.withCandidate(scope, {
      name: candidate.name,
      version: 0,
      mode: t.candidate.mode,
      policies: candidate.policies,
    });
    return this.cedar.evaluateWith(policies, [req])[0]!;
  }

  /**
   * Re-evaluates the recorded decision log since a time twice, with the current policies and with
   * the candidate replacing the policy of its name, and reports what would change per principal.
   */
  async replay(scope: TenantScope, input: ReplayRequest, by: Principal): Promise<ReplayReport> {
    requireOperator(by);
    const r = parse(ReplayRequest, input, "body");
    const since = parseSince(r.since, this.clock());
    const compiled = compileDocument(r.name, r.policy);
    const current = await this.activePolicies(scope);
    const candidate = await this.withCandidate(
      scope,
      { name: r.name, version: 0, mode: r.mode, policies: compiled.policies },
      current,
    );

    // Identical requests are evaluated once.
    const groups = new Map<string, { request: RecordedRequest; count: number }>();
    let evaluated = 0;
    let truncated = false;
    outer: for await (const page of this.decisions.recorded(scope, since)) {
      for (const { request } of page) {
        if (evaluated >= r.limit) {
          truncated = true;
          break outer;
        }
        evaluated++;
        const key = JSON.stringify(request);
        const g = groups.get(key);
        if (g) g.count++;
        else groups.set(key, { request, count: 1 });
      }
    }
    const requests = [...groups.values()];
    let errors = 0;
    const outcome = (policies: ActivePolicy[]) =>
      this.cedar
        .evaluateEach(
          policies,
          requests.map(({ request }) => request as PolicyRequest),
        )
        .map((d) => (d instanceof Error ? undefined : d.allowed));
    const before = outcome(current);
    const after = outcome(candidate);
    const byPrincipal = new Map<string, ReplayReport["byPrincipal"][number]>();
    let changed = 0;
    requests.forEach(({ request, count }, i) => {
      const b = before[i];
      const a = after[i];
      if (b === undefined || a === undefined) {
        errors += count;
        return;
      }
      if (a === b) return;
      changed += count;
      const label = principalLabel(request.principal);
      const entry = byPrincipal.get(label) ?? { principal: label, allowedToDenied: 0, deniedToAllowed: 0, changes: [] };
      if (b) entry.allowedToDenied += count;
      else entry.deniedToAllowed += count;
      entry.changes.push({
        action: request.action,
        resource: { type: request.resource.type, id: request.resource.id },
        before: b,
        after: a,
        count,
      });
      byPrincipal.set(label, entry);
    });
    return {
      since: new Date(since).toISOString(),
      evaluated,
      changed,
      errors,
      truncated,
      byPrincipal: [...byPrincipal.values()].sort((x, y) => x.principal.localeCompare(y.principal)),
    };
  }

  decisionLog(scope: TenantScope, q: DecisionQuery, by: Principal): Promise<DecisionLogEntry[]> {
    requireOperator(by);
    return this.decisions.query(scope, q);
  }

  private async withCandidate(scope: TenantScope, candidate: ActivePolicy, current?: ActivePolicy[]): Promise<ActivePolicy[]> {
    const base = current ?? (await this.activePolicies(scope));
    return [...base.filter((p) => p.name !== candidate.name), candidate];
  }
}
