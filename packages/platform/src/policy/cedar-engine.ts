import { HexrError } from "@hexr/core";
import { BASELINE_POLICIES } from "./baseline.js";
import { cedar, type CedarWasm } from "./cedar.js";
import { toCedarRequest, type CedarRequest } from "./entities.js";
import type { EnforcementMode, PolicyDecision, PolicyEngine, PolicyRequest } from "./types.js";

/** One tenant policy document as the engine evaluates it: already compiled and validated. */
export interface ActivePolicy {
  name: string;
  version: number;
  mode: EnforcementMode;
  /** Cedar policy id (`<name>#<n>`) → policy text. */
  policies: Record<string, string>;
}

export interface CedarEngineOptions {
  /** The tenant's active policies (latest version of each, not deleted); [] for an unknown tenant. */
  loadPolicies: (tenant: string) => Promise<ActivePolicy[]>;
  /** How long a tenant's compiled set is trusted before it is re-read in the background (other replicas may have changed it). */
  refreshMs?: number;
  /** Decisions remembered per (policy set, request) pair; 0 disables. */
  memoSize?: number;
  clock?: () => number;
  hrtime?: () => bigint;
}

/** Three cumulative sets: enforce ⊆ warn ⊆ all; the baseline is in each. */
interface CompiledSets {
  enforce: string;
  /** Undefined when equal to the previous level (no policy of that mode): saves an evaluation. */
  warn: string | undefined;
  all: string | undefined;
}

interface TenantState {
  generation: number;
  sets: CompiledSets;
  signature: string;
  loadedAt: number;
  refreshing: boolean;
}

interface Evaluation {
  allow: boolean;
  reasons: string[];
  errors: string[];
}

type Outcome = Omit<PolicyDecision, "evaluationMicros">;

let nextGeneration = 1;

function signatureOf(policies: ActivePolicy[]): string {
  return JSON.stringify(policies.map((p) => [p.name, p.version, p.mode]).sort());
}

/** Preparses (compiles) a tenant's three sets under stable ids; re-preparsing an id replaces it in the wasm cache. */
function compileSets(prefix: string, policies: ActivePolicy[]): CompiledSets {
  const byMode = (modes: EnforcementMode[]) => {
    const out: Record<string, string> = { ...BASELINE_POLICIES };
    for (const p of policies) if (modes.includes(p.mode)) Object.assign(out, p.policies);
    return out;
  };
  const prepare = (id: string, set: Record<string, string>) => {
    const r = cedar().preparsePolicySet(id, { staticPolicies: set });
    if (r.type !== "success") {
      throw new HexrError(
        "policy.compile_failed",
        `stored policies do not compile: ${r.errors.map((e) => e.message).join("; ")}`,
        {
          kind: "internal",
        },
      );
    }
    return id;
  };
  const hasWarn = policies.some((p) => p.mode === "warn");
  const hasAudit = policies.some((p) => p.mode === "audit");
  return {
    enforce: prepare(`${prefix}/enforce`, byMode(["enforce"])),
    warn: hasWarn ? prepare(`${prefix}/warn`, byMode(["enforce", "warn"])) : undefined,
    all: hasAudit ? prepare(`${prefix}/all`, byMode(["enforce", "warn", "audit"])) : undefined,
  };
}

function evaluate(setId: string, r: CedarRequest): Evaluation {
  const answer = cedar().statefulIsAuthorized({
    principal: r.principal,
    action: r.action,
    resource: r.resource,
    context: r.context as CedarWasm.Context,
    entities: r.entities as CedarWasm.Entities,
    preparsedPolicySetId: setId,
  });
  if (answer.type === "failure") {
    throw new HexrError(
      "policy.invalid_request",
      `the request cannot be evaluated: ${answer.errors.map((e) => e.message).join("; ")}`,
      {
        kind: "invalid_argument",
      },
    );
  }
  const d = answer.response.diagnostics;
  return {
    allow: answer.response.decision === "allow",
    reasons: d.reason,
    errors: d.errors.map((e) => `${e.policyId}: ${e.error.message}`),
  };
}

/**
 * Progressive enforcement on top of Cedar. `allowed` is what the baseline plus the `enforce` policies
 * say; the `warn` and `audit` policies are evaluated on top to flag what they would deny (and show
 * what they would allow), so an operator can watch a policy before enforcing it.
 */
function combine(req: PolicyRequest, sets: CompiledSets, r: CedarRequest): Outcome {
  const enforce = evaluate(sets.enforce, r);
  const warn = sets.warn ? evaluate(sets.warn, r) : enforce;
  const all = sets.all ? evaluate(sets.all, r) : warn;
  const errors = [...new Set([...enforce.errors, ...warn.errors, ...all.errors])].map((e) => `error in ${e}`);
  const what = `${req.action} on ${req.resource.type} '${req.resource.id}'`;
  if (!enforce.allow) {
    const reasons = enforce.reasons.length
      ? [`forbidden by ${enforce.reasons.join(", ")}`]
      : [`no enforced policy permits ${what}`];
    if (all.allow) reasons.push(`would be permitted by ${all.reasons.join(", ")} once enforced`);
    return {
      allowed: false,
      effect: all.allow ? "allow" : "deny",
      mode: "enforce",
      flagged: false,
      policyIds: enforce.reasons,
      reasons: [...reasons, ...errors],
    };
  }
  if (all.allow) {
    return {
      allowed: true,
      effect: "allow",
      mode: "enforce",
      flagged: false,
      policyIds: enforce.reasons,
      reasons: [`permitted by ${enforce.reasons.join(", ")}`, ...errors],
    };
  }
  const mode: EnforcementMode = warn.allow ? "audit" : "warn";
  return {
    allowed: true,
    effect: "deny",
    mode,
    flagged: true,
    policyIds: all.reasons,
    reasons: [`${mode} mode: ${what} would be denied by ${all.reasons.join(", ") || "the absence of a permit"}`, ...errors],
  };
}

export class CedarPolicyEngine implements PolicyEngine {
  private readonly loadPolicies: (tenant: string) => Promise<ActivePolicy[]>;
  private readonly refreshMs: number;
  private readonly memoSize: number;
  private readonly clock: () => number;
  private readonly hrtime: () => bigint;
  private readonly tenants = new Map<string, TenantState>();
  /** Bumped by `invalidate` so a load that started before a change never installs stale policies. */
  private readonly epochs = new Map<string, number>();
  private readonly loading = new Map<string, Promise<TenantState>>();
  private readonly memo = new Map<string, Outcome>();

  constructor({
    loadPolicies,
    refreshMs = 5_000,
    memoSize = 10_000,
    clock = Date.now,
    hrtime = process.hrtime.bigint,
  }: CedarEngineOptions) {
    this.loadPolicies = loadPolicies;
    this.refreshMs = refreshMs;
    this.memoSize = memoSize;
    this.clock = clock;
    this.hrtime = hrtime;
  }

  async decide(req: PolicyRequest): Promise<PolicyDecision> {
    const state = this.tenants.get(req.resource.tenant) ?? (await this.load(req.resource.tenant));
    if (this.clock() - state.loadedAt > this.refreshMs) this.refreshInBackground(req.resource.tenant, state);
    return this.decideWith(state, req);
  }

  /** Synchronous evaluation against a tenant state; the hot path after the first request of a tenant. */
  private decideWith(state: TenantState, req: PolicyRequest): PolicyDecision {
    const t0 = this.hrtime();
    const r = toCedarRequest(req);
    const key = this.memoSize > 0 ? `${state.generation}\u0000${r.key}` : "";
    let outcome = key ? this.memo.get(key) : undefined;
    if (!outcome) {
      outcome = combine(req, state.sets, r);
      if (key) {
        if (this.memo.size >= this.memoSize) this.memo.delete(this.memo.keys().next().value as string);
        this.memo.set(key, outcome);
      }
    }
    return {
      ...outcome,
      policyIds: [...outcome.policyIds],
      reasons: [...outcome.reasons],
      evaluationMicros: Number(this.hrtime() - t0) / 1000,
    };
  }

  /**
   * Evaluates without touching the tenant's cache: `policies` replaces the tenant's active set
   * (policy test with a candidate, replay). Synchronous between compile and evaluate, so the
   * scratch set id is never seen by another request. Throws on the first request that cannot be evaluated.
   */
  evaluateWith(policies: ActivePolicy[], requests: PolicyRequest[]): PolicyDecision[] {
    return this.evaluateEach(policies, requests).map((d) => {
      if (d instanceof Error) throw d;
      return d;
    });
  }

  /** Like `evaluateWith`, with the error in place of each request that cannot be evaluated. */
  evaluateEach(policies: ActivePolicy[], requests: PolicyRequest[]): Array<PolicyDecision | HexrError> {
    const sets = compileSets("scratch", policies);
    return requests.map((req) => {
      const t0 = this.hrtime();
      try {
        const outcome = combine(req, sets, toCedarRequest(req));
        return { ...outcome, evaluationMicros: Number(this.hrtime() - t0) / 1000 };
      } catch (err) {
        return err instanceof HexrError
          ? err
          : new HexrError("policy.invalid_request", (err as Error).message, { kind: "invalid_argument" });
      }
    });
  }

  /** Drops a tenant's compiled policies; the next decision reloads them. */
  invalidate(tenant: string): void {
    this.epochs.set(tenant, (this.epochs.get(tenant) ?? 0) + 1);
    this.tenants.delete(tenant);
    this.loading.delete(tenant);
  }

  private load(tenant: string): Promise<TenantState> {
    const pending = this.loading.get(tenant);
    if (pending) return pending;
    const epoch = this.epochs.get(tenant) ?? 0;
    const p = (async (): Promise<TenantState> => {
      const policies = await this.loadPolicies(tenant);
      // Changed while we read: compiling now would overwrite the newer set under the same ids.
      if ((this.epochs.get(tenant) ?? 0) !== epoch) return this.load(tenant);
      const state = this.install(tenant, policies);
      this.tenants.set(tenant, state);
      return state;
    })();
    this.loading.set(tenant, p);
    const clear = () => {
      if (this.loading.get(tenant) === p) this.loading.delete(tenant);
    };
    p.then(clear, clear);
    return p;
  }

  private install(tenant: string, policies: ActivePolicy[]): TenantState {
    return {
      generation: nextGeneration++,
      sets: compileSets(`tenant/${tenant}`, policies),
      signature: signatureOf(policies),
      loadedAt: this.clock(),
      refreshing: false,
    };
  }

  private refreshInBackground(tenant: string, state: TenantState): void {
    if (state.refreshing) return;
    state.refreshing = true;
    const epoch = this.epochs.get(tenant) ?? 0;
    this.loadPolicies(tenant).then(
      (policies) => {
        state.refreshing = false;
        if ((this.epochs.get(tenant) ?? 0) !== epoch || this.tenants.get(tenant) !== state) return;
        if (signatureOf(policies) === state.signature) state.loadedAt = this.clock();
        else this.tenants.set(tenant, this.install(tenant, policies));
      },
      () => {
        // Keep deciding with the policies we have; the next request retries.
        state.refreshing = false;
      },
    );
  }
}
