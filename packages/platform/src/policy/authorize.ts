import { HexrError } from "@hexr/core";
import { principalLabel } from "./entities.js";
import type { PolicyDecision, PolicyEngine, PolicyRequest } from "./types.js";

/** Response header that tells a caller its request passed only because the denying policy is in `warn` mode. */
export const POLICY_WARNING_HEADER = "hexr-policy-warning";

/**
 * Asks the engine and throws `policy.denied` (403) unless the request is allowed; returns the decision
 * so the caller can pass a `warn` flag on (see `policyWarningHeaders`).
 */
export async function authorize(policy: PolicyEngine, req: PolicyRequest): Promise<PolicyDecision> {
  const d = await policy.decide(req);
  if (!d.allowed) {
    throw new HexrError(
      "policy.denied",
      `${principalLabel(req.principal)} may not ${req.action} ${req.resource.type} '${req.resource.id}' in tenant '${req.resource.tenant}'`,
      { kind: "permission_denied", details: { action: req.action, policyIds: d.policyIds } },
    );
  }
  return d;
}

/** `{ "hexr-policy-warning": ... }` for a decision flagged in warn mode, `{}` otherwise. */
export function policyWarningHeaders(d: PolicyDecision | undefined): Record<string, string> {
  if (!d || !d.flagged || d.mode !== "warn") return {};
  const ids = d.policyIds.length ? d.policyIds.join(" ") : "no-permit";
  // Header values must be visible ASCII; ids and actions are, but stay defensive.
  const value = `deny; mode=warn; policies="${ids}"`.replace(/[^\x20-\x7e]/g, "?");
  return { [POLICY_WARNING_HEADER]: value };
}
