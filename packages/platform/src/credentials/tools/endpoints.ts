import { HexrError } from "@hexr/core";
import type { Principal } from "../../auth/principal.js";
import type { ToolSpec } from "./schema.js";

/**
 * Which cloud endpoints a tool may name. The platform POSTs a freshly minted JWT-SVID of the
 * tenant's agent (and, for GCP impersonation, the federated access token) to these URLs, so a URL
 * chosen by a tenant would let that tenant collect its agents' tokens on its own server or make the
 * platform send requests into its private network. Tenant API keys may therefore only name the
 * clouds' own hosts (regional, FIPS, dual-stack, VPC/PSC endpoints); any other URL (a proxy, a
 * self-hosted STS, the local test doubles) needs an admin key, i.e. the platform operator.
 */

const REGION = "[a-z]{2}(?:-[a-z]+)+-\\d{1,2}";

const OFFICIAL_HOSTS: Record<string, { hosts: RegExp[]; example: string }> = {
  stsEndpoint: {
    hosts: [
      /^sts\.amazonaws\.com$/,
      new RegExp(`^sts(?:-fips)?\\.${REGION}\\.amazonaws\\.com(?:\\.cn)?$`),
      new RegExp(`^sts(?:-fips)?\\.${REGION}\\.api\\.aws$`),
      new RegExp(`^vpce-[a-z0-9-]{1,60}\\.sts(?:-fips)?\\.${REGION}\\.vpce\\.amazonaws\\.com(?:\\.cn)?$`),
    ],
    example: "https://sts.<region>.amazonaws.com",
  },
  tokenUrl: {
    hosts: [/^sts\.googleapis\.com$/, /^sts\.mtls\.googleapis\.com$/, /^sts-[a-z0-9]{1,20}\.p\.googleapis\.com$/],
    example: "https://sts.googleapis.com/v1/token",
  },
  iamCredentialsUrl: {
    hosts: [
      /^iamcredentials\.googleapis\.com$/,
      /^iamcredentials\.mtls\.googleapis\.com$/,
      /^iamcredentials-[a-z0-9]{1,20}\.p\.googleapis\.com$/,
    ],
    example: "https://iamcredentials.googleapis.com",
  },
  authorityHost: {
    hosts: [
      /^login\.microsoftonline\.com$/,
      /^login\.microsoftonline\.us$/,
      /^login\.chinacloudapi\.cn$/,
      /^login\.partner\.microsoftonline\.cn$/,
    ],
    example: "https://login.microsoftonline.com",
  },
};

/** The endpoint URLs a tool spec names, by config field. */
function endpointsOf(spec: ToolSpec): Array<[field: string, url: string]> {
  switch (spec.provider) {
    case "aws":
      return spec.config.stsEndpoint ? [["stsEndpoint", spec.config.stsEndpoint]] : [];
    case "gcp":
      return [
        ["tokenUrl", spec.config.tokenUrl],
        ["iamCredentialsUrl", spec.config.iamCredentialsUrl],
      ];
    case "azure":
      return [["authorityHost", spec.config.authorityHost]];
  }
}

/** True when `url` is HTTPS on the default port, without credentials, at one of the cloud's own hosts for `field`. */
export function isOfficialEndpoint(field: string, url: string): boolean {
  const rule = OFFICIAL_HOSTS[field];
  if (!rule) return false;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.protocol !== "https:" || u.port !== "" || u.username !== "" || u.password !== "") return false;
  return rule.hosts.some((h) => h.test(u.hostname));
}

/** Refuses endpoint overrides outside the clouds' own hosts unless the caller is a platform admin. */
export function checkToolEndpoints(spec: ToolSpec, by: Principal): void {
  if (by.kind === "admin") return;
  for (const [field, url] of endpointsOf(spec)) {
    if (isOfficialEndpoint(field, url)) continue;
    throw new HexrError(
      "credentials.endpoint_not_allowed",
      `config.${field}: a tenant API key may only name the cloud's own HTTPS endpoints (such as ${OFFICIAL_HOSTS[field]!.example}); other URLs need an admin API key`,
      { kind: "permission_denied", details: { field: `config.${field}` } },
    );
  }
}
