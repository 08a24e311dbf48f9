export * from "./server.js";
export * from "./module.js";
export * from "./config/schema.js";
export * from "./config/resolve.js";
export * from "./storage/index.js";
export * from "./auth/principal.js";
export * from "./auth/authenticator.js";
export * from "./http/router.js";
export * from "./http/problem.js";
export { createLogger } from "./logging/logger.js";
export { Tenant, CreateTenantRequest } from "./tenants/service.js";
export { ApiKey, CreatedApiKey, CreateApiKeyRequest } from "./apikeys/service.js";
export { writeFileAtomic } from "./util/fs.js";
export { loadMasterKey, seal, open as openSealed } from "./keys/master-key.js";
export type * from "./identity/types.js";
export { createIdentityModule, type IdentityModule, type IdentityModuleDeps } from "./identity/module.js";
export { contextDirPath, workloadSocketPath } from "./identity/workload-api/server.js";
export { createWorkloadApi, type WorkloadApi, type WorkloadApiOptions } from "./identity/workload-api/workload-api.js";
export { processSelectors, createUnixAttestor } from "./identity/attestation/unix-attestor.js";
export {
  LocalAuthority,
  createAuthority,
  DEFAULT_AUTHORITY_CONFIG,
  type AuthorityConfig,
  type AuthorityStatus,
  type SlotStatus,
} from "./identity/authority/authority.js";
export { Tool, ToolSpec, CreateToolRequest, ToolName } from "./credentials/tools/schema.js";
export { ExchangeRequest, ExchangeResponse, CacheKeyResponse } from "./credentials/exchange/schema.js";
export { createCredentialsModule, type CredentialsModuleDeps } from "./credentials/module.js";
export * from "./mesh/index.js";
export * from "./a2a/index.js";
export * from "./sandbox/index.js";
export {
  authorize,
  policyWarningHeaders,
  POLICY_WARNING_HEADER,
  createPolicyModule,
  CedarPolicyEngine,
  OpaPolicyEngine,
  CEDAR_SCHEMA,
  BASELINE_POLICIES,
  EnforcementMode,
  type PolicyModule,
  type PolicyEngine,
  type PolicyRequest,
  type PolicyDecision,
  type PolicyAction,
  type PolicyResource,
} from "./policy/index.js";
export { createVaultModule, VAULT_SERVICE, type VaultModule } from "./vault/module.js";
export { SecretMeta, VersionMeta, SecretValue, PutSecretRequest, SecretName } from "./vault/service.js";
export { createTelemetryModule, type TelemetryModule } from "./telemetry/module.js";
export { metrics, registry as metricsRegistry, IDENTITY_LABELS, type WorkloadLabels } from "./telemetry/metrics/catalog.js";
export { startMetricsPush, type MetricsPush, type MetricsPushOptions } from "./telemetry/metrics/push.js";
export { TelemetryConfig } from "./telemetry/config.js";
export { TraceSummary, TraceDetail, SpanView } from "./telemetry/service.js";
