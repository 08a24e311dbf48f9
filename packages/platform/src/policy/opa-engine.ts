import { HexrError } from "@hexr/core";
import { actionEntity, principalEntity, resourceEntity } from "./entities.js";
import { EnforcementMode, type PolicyDecision, type PolicyEngine, type PolicyRequest } from "./types.js";

export interface OpaEngineOptions {
  /** Base URL of the OPA server, e.g. `http://opa.hexr-system:8181`. */
  url: string;
  /** Rule path under `data`, e.g. `hexr/authz` → `POST /v1/data/hexr/authz`. */
  path?: string;
  /** Bearer token when OPA runs with `--authentication=token`. */
  token?: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
  hrtime?: () => bigint;
}

/** The `input` document Hexr sends; the rule sees `input.principal.tenant`, `input.action`, ... */
export interface OpaInput {
  principal: Record<string, unknown> & { type: string; id: string };
  action: string;
  resource: Record<string, unknown> & { type: string; id: string; tenant: string };
  context: Record<string, unknown>;
}

const PATH_OK = /^[A-Za-z0-9_]+(\/[A-Za-z0-9_]+)*$/;

const strip = (type: string) => type.replace(/^Hexr::/, "");

/** Builds OPA's input from a policy request (same entity model as Cedar, without the namespace). */
export function opaInput(req: PolicyRequest): OpaInput {
  actionEntity(req.action);
  const { entity: p, via } = principalEntity(req.principal);
  const r = resourceEntity(req.resource);
  return {
    principal: { ...p.attrs, type: strip(p.uid.type), id: p.uid.id },
    action: req.action,
    resource: { ...r.attrs, type: req.resource.type, id: req.resource.id, tenant: req.resource.tenant },
    context: { ...(req.context ?? {}), via },
  };
}

function unavailable(message: string, cause?: unknown): HexrError {
  return new HexrError("policy.engine_unavailable", `the OPA policy engine is unavailable: ${message}`, {
    kind: "unavailable",
    cause,
  });
}

/**
 * An adapter for an external OPA server through its REST Data API: `POST /v1/data/<path>` with
 * `{"input": ...}`. The rule's value may be a boolean, or `{allow, mode?, policy_ids?, reasons?}`
 * for progressive enforcement. An undefined rule denies; an unreachable server fails closed (503).
 * Tenant isolation is checked here first, as with Cedar's baseline, whatever the rule says.
 */
export class OpaPolicyEngine implements PolicyEngine {
  private readonly endpoint: string;
  private readonly rulePath: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;
  private readonly hrtime: () => bigint;

  constructor({
    url,
    path = "hexr/authz",
    token,
    timeoutMs = 2_000,
    fetch: f = fetch,
    hrtime = process.hrtime.bigint,
  }: OpaEngineOptions) {
    if (!PATH_OK.test(path)) {
      throw new HexrError("config.invalid", `policy.opa.path must be slash-separated rule names (got '${path}')`, {
        kind: "invalid_argument",
      });
    }
    this.rulePath = path;
    this.endpoint = `${url.replace(/\/+$/, "")}/v1/data/${path}`;
    this.token = token;
    this.timeoutMs = timeoutMs;
    this.fetch = f;
    this.hrtime = hrtime;
  }

  async decide(req: PolicyRequest): Promise<PolicyDecision> {
    const t0 = this.hrtime();
    const input = opaInput(req);
    const micros = () => Number(this.hrtime() - t0) / 1000;
    const principalTenant = input.principal["tenant"];
    if (input.principal.type !== "Admin" && principalTenant !== input.resource.tenant) {
      return {
        allowed: false,
        effect: "deny",
        mode: "enforce",
        flagged: false,
        policyIds: ["baseline:tenant-isolation"],
        reasons: ["the principal does not belong to the resource's tenant"],
        evaluationMicros: micros(),
      };
    }
    let res: Response;
    try {
      res = await this.fetch(this.endpoint, {
        method: "POST",
        headers: { "content-type": "application/json", ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) },
        body: JSON.stringify({ input }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw unavailable((err as Error & { cause?: Error }).cause?.message ?? (err as Error).message, err);
    }
    const text = await res.text().catch(() => "");
    let body: { result?: unknown; code?: string; message?: string } = {};
    try {
      body = text ? (JSON.parse(text) as typeof body) : {};
    } catch {
      throw new HexrError("policy.engine_error", `OPA answered HTTP ${res.status} with a body that is not JSON`, {
        kind: "upstream",
      });
    }
    if (!res.ok) {
      const why = body.code ? `${body.code}: ${body.message ?? ""}` : `HTTP ${res.status}`;
      if (res.status >= 500) throw unavailable(why);
      throw new HexrError("policy.engine_error", `OPA rejected the query: ${why}`, { kind: "upstream" });
    }
    return { ...this.interpret(body.result, req), evaluationMicros: micros() };
  }

  private interpret(result: unknown, req: PolicyRequest): Omit<PolicyDecision, "evaluationMicros"> {
    if (result === undefined) {
      return {
        allowed: false,
        effect: "deny",
        mode: "enforce",
        flagged: false,
        policyIds: [],
        reasons: [`data.${this.rulePath.replace(/\//g, ".")} is undefined for this input`],
      };
    }
    let allow: boolean;
    let mode: EnforcementMode = "enforce";
    let policyIds: string[] = [];
    let reasons: string[] = [];
    if (typeof result === "boolean") allow = result;
    else if (typeof result === "object" && result !== null && typeof (result as { allow?: unknown }).allow === "boolean") {
      const r = result as { allow: boolean; mode?: unknown; policy_ids?: unknown; reasons?: unknown };
      allow = r.allow;
      if (r.mode !== undefined) {
        const m = EnforcementMode.safeParse(r.mode);
        if (!m.success)
          throw new HexrError("policy.engine_error", `OPA returned an unknown mode ${JSON.stringify(r.mode)}`, {
            kind: "upstream",
          });
        mode = m.data;
      }
      if (Array.isArray(r.policy_ids)) policyIds = r.policy_ids.map(String);
      if (Array.isArray(r.reasons)) reasons = r.reasons.map(String);
    } else {
      throw new HexrError("policy.engine_error", "OPA's result must be a boolean or an object with a boolean 'allow'", {
        kind: "upstream",
      });
    }
    if (allow) return { allowed: true, effect: "allow", mode: "enforce", flagged: false, policyIds, reasons };
    const what = `${req.action} on ${req.resource.type} '${req.resource.id}'`;
    if (mode === "enforce")
      return {
        allowed: false,
        effect: "deny",
        mode,
        flagged: false,
        policyIds,
        reasons: reasons.length ? reasons : [`OPA denies ${what}`],
      };
    return {
      allowed: true,
      effect: "deny",
      mode,
      flagged: true,
      policyIds,
      reasons: [`${mode} mode: OPA would deny ${what}`, ...reasons],
    };
  }
}
