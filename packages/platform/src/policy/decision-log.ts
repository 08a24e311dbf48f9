import type { Logger } from "pino";
import type { Principal, TenantScope } from "../auth/principal.js";
import { BatchWriter, timeOrderedId } from "./batch-writer.js";
import { principalLabel } from "./entities.js";
import type { DecisionQuery, DecisionRow, PolicyStore } from "./store.js";
import type { PolicyDecision, PolicyEngine, PolicyRequest } from "./types.js";

export interface DecisionLogEntry {
  id: string;
  at: string;
  principal: string;
  action: string;
  resource: { type: string; id: string };
  effect: "allow" | "deny";
  allowed: boolean;
  mode: string;
  flagged: boolean;
  policyIds: string[];
  reasons: string[];
  evaluationMicros: number;
}

/** What is kept of a request so it can be evaluated again: never tokens, only who, what and context. */
export interface RecordedRequest {
  principal: Principal;
  action: string;
  resource: PolicyRequest["resource"];
  context?: Record<string, unknown>;
}

export interface DecisionLogOptions {
  store: PolicyStore;
  log: Logger;
  /** Tenant name → id; undefined when the tenant does not exist (then the entry is kept under ""). */
  tenantId: (tenant: string) => Promise<string | undefined>;
  retentionDays?: number;
  clock?: () => number;
}

function safePrincipal(p: Principal): Principal {
  // Principals carry no secrets; audiences are dropped because a replay does not need them.
  if (p.kind === "workload") {
    const { audience: _audience, ...rest } = p;
    return rest;
  }
  return p;
}

/** The decision log: every decision, written in batches off the request path, never failing a request. */
export class DecisionLog {
  private readonly writer: BatchWriter<{ req: PolicyRequest; d: PolicyDecision; at: number; id: string }>;
  private readonly store: PolicyStore;
  private readonly clock: () => number;
  private readonly retentionMs: number;
  private seq = 0;
  private lastPrune = 0;

  constructor({ store, log, tenantId, retentionDays = 30, clock = Date.now }: DecisionLogOptions) {
    this.store = store;
    this.clock = clock;
    this.retentionMs = retentionDays * 86_400_000;
    this.writer = new BatchWriter({
      name: "policy-decisions",
      log,
      write: async (items) => {
        const ids = new Map<string, string>();
        for (const { req } of items) {
          const t = req.resource.tenant;
          if (!ids.has(t)) ids.set(t, (await tenantId(t).catch(() => undefined)) ?? "");
        }
        await this.store.insertDecisions(
          items.map(({ req, d, at, id }) => toRow(req, d, at, id, ids.get(req.resource.tenant) ?? "")),
        );
        await this.maybePrune();
      },
    });
  }

  record(req: PolicyRequest, d: PolicyDecision): void {
    const at = this.clock();
    this.writer.push({ req, d, at, id: timeOrderedId(at, this.seq++) });
  }

  flush(): Promise<void> {
    return this.writer.flush();
  }

  close(): Promise<void> {
    return this.writer.close();
  }

  get stats() {
    return this.writer.stats;
  }

  async query(scope: TenantScope, q: DecisionQuery): Promise<DecisionLogEntry[]> {
    await this.flush();
    return (await this.store.decisions(scope, q)).map(toEntry);
  }

  /** Recorded requests of a tenant since a time, oldest first, in pages (for replay). */
  async *recorded(
    scope: TenantScope,
    since: number,
    pageSize = 1000,
  ): AsyncGenerator<{ row: DecisionRow; request: RecordedRequest }[]> {
    await this.flush();
    let after: string | undefined;
    for (;;) {
      const rows = await this.store.decisions(scope, { since, limit: pageSize, after: after ?? "" });
      if (rows.length === 0) return;
      yield rows.map((row) => ({ row, request: JSON.parse(row.request) as RecordedRequest }));
      after = rows[rows.length - 1]!.id;
      if (rows.length < pageSize) return;
    }
  }

  private async maybePrune(): Promise<void> {
    const now = this.clock();
    if (now - this.lastPrune < 3_600_000) return;
    this.lastPrune = now;
    await this.store.pruneDecisions(now - this.retentionMs);
  }
}

function toRow(req: PolicyRequest, d: PolicyDecision, at: number, id: string, tenantId: string): DecisionRow {
  const p = req.principal;
  const recorded: RecordedRequest = {
    principal: safePrincipal(p),
    action: req.action,
    resource: req.resource,
    ...(req.context ? { context: req.context } : {}),
  };
  return {
    id,
    tenant_id: tenantId,
    tenant: req.resource.tenant,
    at,
    principal: principalLabel(p),
    principal_tenant: p.kind === "tenant-key" || p.kind === "workload" ? (p.tenant ?? null) : null,
    action: req.action,
    resource_type: req.resource.type,
    resource_id: req.resource.id,
    effect: d.effect,
    allowed: d.allowed ? 1 : 0,
    mode: d.mode,
    flagged: d.flagged ? 1 : 0,
    policy_ids: JSON.stringify(d.policyIds),
    reasons: JSON.stringify(d.reasons),
    eval_micros: Math.round(d.evaluationMicros),
    request: JSON.stringify(recorded),
  };
}

function toEntry(r: DecisionRow): DecisionLogEntry {
  return {
    id: r.id,
    at: new Date(r.at).toISOString(),
    principal: r.principal,
    action: r.action,
    resource: { type: r.resource_type, id: r.resource_id },
    effect: r.effect,
    allowed: r.allowed === 1,
    mode: r.mode,
    flagged: r.flagged === 1,
    policyIds: JSON.parse(r.policy_ids) as string[],
    reasons: JSON.parse(r.reasons) as string[],
    evaluationMicros: r.eval_micros,
  };
}

/** Decorates any engine so that each of its decisions lands in the decision log. */
export function withDecisionLog(engine: PolicyEngine, log: DecisionLog): PolicyEngine {
  return {
    async decide(req) {
      const d = await engine.decide(req);
      log.record(req, d);
      return d;
    },
  };
}
