export * from "./types.js";
export { authorize, policyWarningHeaders, POLICY_WARNING_HEADER } from "./authorize.js";
export { createPolicyModule, type PolicyModule, type PolicyModuleDeps, type PolicyEngineChoice } from "./module.js";
export { CedarPolicyEngine, type ActivePolicy } from "./cedar-engine.js";
export { OpaPolicyEngine, opaInput, type OpaInput, type OpaEngineOptions } from "./opa-engine.js";
export { CEDAR_SCHEMA, ACTIONS, RESOURCE_TYPES } from "./schema.js";
export { BASELINE_POLICIES } from "./baseline.js";
export {
  PolicyService,
  PolicyVersion,
  AppliedPolicy,
  ApplyPolicyRequest,
  TestPolicyRequest,
  ReplayRequest,
  ReplayReport,
  DecisionOut,
  parseSince,
} from "./service.js";
export type { DecisionLogEntry } from "./decision-log.js";
