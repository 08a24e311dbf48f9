import { HexrError, describeWorkload } from "@hexr/core";
import type { Principal } from "../auth/principal.js";
import { ACTIONS, NAMESPACE, RESOURCE_TYPES, type Via } from "./schema.js";
import type { PolicyRequest } from "./types.js";

/** Cedar's JSON entity format (kept local so this file does not load the wasm module). */
export interface EntityUid {
  type: string;
  id: string;
}
export interface CedarEntity {
  uid: EntityUid;
  attrs: Record<string, unknown>;
  parents: EntityUid[];
}

export interface CedarRequest {
  principal: EntityUid;
  action: EntityUid;
  resource: EntityUid;
  context: Record<string, unknown>;
  entities: CedarEntity[];
  /** A string that identifies every input of the request: equal keys, equal decisions for one policy set. */
  key: string;
}

const t = (name: string) => `${NAMESPACE}::${name}`;
const tenantUid = (tenant: string): EntityUid => ({ type: t("Tenant"), id: tenant });

function badRequest(code: string, message: string): HexrError {
  return new HexrError(code, message, { kind: "invalid_argument" });
}

function agentEntity(spiffeId: string): CedarEntity | undefined {
  const w = describeWorkload(spiffeId);
  if (w.kind !== "agent") return undefined;
  return {
    uid: { type: t("Agent"), id: spiffeId },
    attrs: { tenant: w.tenant, agent: w.agent, role: w.role, trustDomain: w.trustDomain, spiffeId },
    parents: [tenantUid(w.tenant)],
  };
}

/** The principal as a Cedar entity; its attributes come from the SPIFFE ID itself, never from the request. */
export function principalEntity(p: Principal): { entity: CedarEntity; via: Via } {
  switch (p.kind) {
    case "admin":
      return { entity: { uid: { type: t("Admin"), id: p.keyId }, attrs: { keyId: p.keyId }, parents: [] }, via: "api-key" };
    case "tenant-key":
      return {
        entity: {
          uid: { type: t("ApiKey"), id: p.keyId },
          attrs: { tenant: p.tenant, keyId: p.keyId },
          parents: [tenantUid(p.tenant)],
        },
        via: "api-key",
      };
    case "workload": {
      const agent = agentEntity(p.spiffeId);
      const entity = agent ?? {
        uid: { type: t("Workload"), id: p.spiffeId },
        attrs: { trustDomain: describeWorkload(p.spiffeId).trustDomain, spiffeId: p.spiffeId },
        parents: [],
      };
      return { entity, via: p.via };
    }
    default:
      throw new HexrError("policy.anonymous", "anonymous callers cannot be authorized", { kind: "unauthenticated" });
  }
}

export function resourceEntity(r: PolicyRequest["resource"]): CedarEntity {
  if (!(RESOURCE_TYPES as readonly string[]).includes(r.type)) {
    throw badRequest("policy.unknown_resource_type", `unknown resource type '${r.type}'; known: ${RESOURCE_TYPES.join(", ")}`);
  }
  if (typeof r.id !== "string" || r.id.length === 0 || r.id.length > 1024) {
    throw badRequest("policy.invalid_resource", "a resource id is 1-1024 characters");
  }
  if (r.type === "Agent") {
    let agent: CedarEntity | undefined;
    try {
      agent = agentEntity(r.id);
    } catch {
      agent = undefined;
    }
    if (!agent) throw badRequest("policy.invalid_resource", `an Agent resource id is an agent SPIFFE ID (got '${r.id}')`);
    if (agent.attrs["tenant"] !== r.tenant) {
      throw badRequest("policy.invalid_resource", `agent ${r.id} does not belong to tenant '${r.tenant}'`);
    }
    return agent;
  }
  return {
    uid: { type: t(r.type), id: `${r.tenant}/${r.id}` },
    attrs: { ...(r.attributes ?? {}), tenant: r.tenant, name: r.id },
    parents: [tenantUid(r.tenant)],
  };
}

const actionEntities = new Map<string, CedarEntity>(
  Object.entries(ACTIONS).map(([name, a]) => [
    name,
    { uid: { type: t("Action"), id: name }, attrs: {}, parents: [{ type: t("Action"), id: a.group }] },
  ]),
);

export function actionEntity(action: string): CedarEntity {
  const e = actionEntities.get(action);
  if (!e)
    throw badRequest("policy.unknown_action", `unknown action '${action}'; known: ${[...actionEntities.keys()].join(", ")}`);
  return e;
}

/** Builds the Cedar request for a policy request; throws typed errors for inputs the schema does not know. */
export function toCedarRequest(req: PolicyRequest): CedarRequest {
  const action = actionEntity(req.action);
  const { entity: principal, via } = principalEntity(req.principal);
  const resource = resourceEntity(req.resource);
  const context = { ...(req.context ?? {}), via };
  // The same agent can be principal and resource (a2a to itself); Cedar refuses duplicate entities.
  const sameEntity = principal.uid.type === resource.uid.type && principal.uid.id === resource.uid.id;
  const entities = sameEntity ? [principal, action] : [principal, resource, action];
  const key = JSON.stringify([
    principal.uid.type,
    principal.uid.id,
    principal.attrs,
    req.action,
    resource.uid,
    resource.attrs,
    context,
  ]);
  return { principal: principal.uid, action: action.uid, resource: resource.uid, context, entities, key };
}

/** A short label of the principal for the decision log and replay grouping: the SPIFFE ID or `apikey:<id>`. */
export function principalLabel(p: Principal): string {
  switch (p.kind) {
    case "workload":
      return p.spiffeId;
    case "admin":
    case "tenant-key":
      return `apikey:${p.keyId}`;
    default:
      return "anonymous";
  }
}
