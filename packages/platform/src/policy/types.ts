import { z } from "zod";
import type { Principal } from "../auth/principal.js";

/** Actions the platform asks the policy engine about (the Cedar schema in `schema.ts` declares each). */
export type PolicyAction =
  | "vault:read"
  | "vault:write"
  | "vault:list"
  | "vault:delete"
  | "vault:destroy"
  | "credentials:exchange"
  | "gateway:call"
  | "a2a:send"
  | "sandbox:exec"
  | "browser:open"
  | (string & {});

export const EnforcementMode = z.enum(["audit", "warn", "enforce"]);
export type EnforcementMode = z.infer<typeof EnforcementMode>;

export interface PolicyResource {
  /** A resource type of the schema: Secret, Credential, Tool, Agent, Sandbox, Browser. */
  type: string;
  /** The resource's name inside its tenant, e.g. `db/password` (for `Agent`: the target's SPIFFE ID). */
  id: string;
  tenant: string;
  attributes?: Record<string, unknown>;
}

export interface PolicyRequest {
  principal: Principal;
  action: PolicyAction;
  /** What is acted on, e.g. `{ type: "Secret", id: "db/password", tenant: "acme-corp" }`. */
  resource: PolicyResource;
  context?: Record<string, unknown>;
}

export interface PolicyDecision {
  /** What the caller experiences: false only when an `enforce` policy denies. */
  allowed: boolean;
  /** What the policies say, regardless of mode. */
  effect: "allow" | "deny";
  /** The mode that shaped `allowed` (the strictest mode among the policies that denied). */
  mode: EnforcementMode;
  /** True when a denial was let through because of `audit`/`warn` mode. */
  flagged: boolean;
  policyIds: string[];
  reasons: string[];
  evaluationMicros: number;
}

/** One engine decides every access; implementations: Cedar (embedded), OPA (remote REST). */
export interface PolicyEngine {
  decide(req: PolicyRequest): Promise<PolicyDecision>;
}
