/**
 * The platform baseline, always evaluated in `enforce` mode before any tenant policy (docs/policy.md):
 * tenant isolation cannot be switched off by a tenant, and a small set of same-tenant accesses works
 * without writing a policy. Anything else needs a tenant policy.
 */
export const BASELINE_POLICIES: Readonly<Record<string, string>> = Object.freeze({
  // Nobody but an admin acts on another tenant's resources; a `forbid` cannot be overridden by a permit.
  "baseline:tenant-isolation": `forbid (principal, action, resource)
unless { principal is Hexr::Admin || (principal has tenant && principal.tenant == resource.tenant) };`,
  "baseline:admin": `permit (principal is Hexr::Admin, action, resource);`,
  // A tenant API key is that tenant's operator.
  "baseline:tenant-operator": `permit (principal is Hexr::ApiKey, action, resource)
when { principal.tenant == resource.tenant };`,
  // Agents read and list their tenant's secrets; writes, deletes and destroys need a tenant policy.
  "baseline:agent-secrets-read": `permit (principal is Hexr::Agent, action in [Hexr::Action::"vault:read", Hexr::Action::"vault:list"], resource is Hexr::Secret)
when { principal.tenant == resource.tenant };`,
  // Agents talk to agents of their own tenant, and use the sandbox and browser on its behalf.
  "baseline:agent-same-tenant": `permit (principal is Hexr::Agent, action in [Hexr::Action::"a2a:send", Hexr::Action::"sandbox:exec", Hexr::Action::"browser:open"], resource)
when { principal.tenant == resource.tenant };`,
});

export const BASELINE_IDS = Object.keys(BASELINE_POLICIES);
