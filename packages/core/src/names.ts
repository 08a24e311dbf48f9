import { z } from "zod";

/** RFC 1123 DNS label: tenants, agents and roles become Kubernetes names and SPIFFE path segments. */
export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const TenantName = z
  .string()
  .regex(DNS_LABEL, "must be a DNS label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit");
export type TenantName = z.infer<typeof TenantName>;

export const AgentName = TenantName;
export const RoleName = TenantName;
