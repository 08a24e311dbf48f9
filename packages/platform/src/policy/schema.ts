/**
 * The Cedar schema every tenant policy is validated against (strict mode), and the catalogue of
 * actions and resource types the engine accepts. Principals:
 * - `Hexr::Agent`: an agent process, id = its SPIFFE ID `spiffe://<td>/agent/<tenant>/<agent>/<role>`;
 * - `Hexr::Workload`: any other SPIFFE ID (platform services, foreign workloads); never has a tenant;
 * - `Hexr::ApiKey`: a tenant-scoped API key (an operator of that tenant), id = key id;
 * - `Hexr::Admin`: an admin API key, id = key id.
 * Resources carry `tenant` and `name`; their entity id is `<tenant>/<name>`.
 */

export const NAMESPACE = "Hexr";

/** Actions, grouped by service: a policy may say `action in Hexr::Action::"vault"`. */
export const ACTIONS: Record<string, { group: string; resource: string; context: Record<string, "String" | "Long"> }> = {
  "vault:read": { group: "vault", resource: "Secret", context: { version: "Long" } },
  "vault:list": { group: "vault", resource: "Secret", context: {} },
  "vault:write": { group: "vault", resource: "Secret", context: {} },
  "vault:delete": { group: "vault", resource: "Secret", context: {} },
  "vault:destroy": { group: "vault", resource: "Secret", context: { version: "Long" } },
  "credentials:exchange": { group: "credentials", resource: "Credential", context: { provider: "String" } },
  "gateway:call": { group: "gateway", resource: "Tool", context: { server: "String" } },
  "a2a:send": { group: "a2a", resource: "Agent", context: { method: "String" } },
  "sandbox:exec": { group: "sandbox", resource: "Sandbox", context: { language: "String" } },
  "browser:open": { group: "browser", resource: "Browser", context: { url: "String", host: "String" } },
};

export const RESOURCE_TYPES = ["Secret", "Credential", "Tool", "Agent", "Sandbox", "Browser"] as const;
export type ResourceType = (typeof RESOURCE_TYPES)[number];

export const PRINCIPAL_TYPES = ["Agent", "Workload", "ApiKey", "Admin"] as const;

/** How the caller proved itself, always present in the context. */
export type Via = "jwt-svid" | "x509-svid" | "api-key";

function contextType(extra: Record<string, "String" | "Long">): string {
  const fields = ["via: String", ...Object.entries(extra).map(([k, t]) => `${k}?: ${t}`)];
  return `{ ${fields.join(", ")} }`;
}

function buildSchema(): string {
  const groups = [...new Set(Object.values(ACTIONS).map((a) => a.group))];
  const lines: string[] = [
    `namespace ${NAMESPACE} {`,
    "  entity Tenant;",
    "  entity Agent in [Tenant] = { tenant: String, agent: String, role: String, trustDomain: String, spiffeId: String };",
    "  entity Workload = { trustDomain: String, spiffeId: String };",
    "  entity ApiKey in [Tenant] = { tenant: String, keyId: String };",
    "  entity Admin = { keyId: String };",
    ...RESOURCE_TYPES.filter((t) => t !== "Agent").map((t) => `  entity ${t} in [Tenant] = { tenant: String, name: String };`),
    ...groups.map((g) => `  action "${g}";`),
  ];
  for (const [name, a] of Object.entries(ACTIONS)) {
    lines.push(
      `  action "${name}" in ["${a.group}"] appliesTo { principal: [${PRINCIPAL_TYPES.join(", ")}], resource: [${a.resource}], context: ${contextType(a.context)} };`,
    );
  }
  lines.push("}");
  return lines.join("\n");
}

/** The schema in Cedar's human-readable syntax (also served by `GET .../policies/schema`). */
export const CEDAR_SCHEMA = buildSchema();

/** Action groups as parent links, so `action in Hexr::Action::"vault"` works without passing the schema at evaluation. */
export function actionGroup(action: string): string | undefined {
  return ACTIONS[action]?.group;
}
