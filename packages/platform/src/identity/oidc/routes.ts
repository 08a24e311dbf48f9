import { HexrError } from "@hexr/core";
import { z } from "zod";
import { defineRoute, Reply, type RouteDef } from "../../http/router.js";
import type { LocalAuthority } from "../authority/authority.js";

export const OpenIdConfiguration = z.object({
  issuer: z.string(),
  jwks_uri: z.string(),
  authorization_endpoint: z.string(),
  response_types_supported: z.array(z.string()),
  subject_types_supported: z.array(z.string()),
  id_token_signing_alg_values_supported: z.array(z.string()),
});
export type OpenIdConfiguration = z.infer<typeof OpenIdConfiguration>;

const Jwks = z.object({ keys: z.array(z.record(z.string(), z.unknown())) });

/** The discovery document, shaped like SPIRE's OIDC discovery provider's (a cloud STS reads it). */
export function openIdConfiguration(issuer: string): OpenIdConfiguration {
  return {
    issuer,
    jwks_uri: `${issuer}/keys`,
    // Required by OIDC discovery, but there is no interactive login: JWT-SVIDs come from the Workload API.
    authorization_endpoint: "",
    response_types_supported: ["id_token"],
    subject_types_supported: ["public"],
    id_token_signing_alg_values_supported: ["ES256"],
  };
}

// Keys change at rotation; verifiers should re-read rather than cache for long.
const KEYS_CACHE = { "cache-control": "public, max-age=60" };

/** OIDC discovery + JWKS at the root of the platform URL, so that `iss` + well-known path resolves. */
export function oidcRoutes(authority: LocalAuthority): RouteDef[] {
  return [
    defineRoute({
      method: "GET",
      path: "/.well-known/openid-configuration",
      summary: "OIDC discovery document for JWT-SVIDs (for cloud federation)",
      tags: ["identity"],
      auth: "public",
      response: OpenIdConfiguration,
      handler: async () => {
        const issuer = authority.issuer;
        if (!issuer) {
          throw new HexrError("identity.issuer_unknown", "the OIDC issuer is not known yet (set publicUrl)", {
            kind: "unavailable",
          });
        }
        return new Reply(openIdConfiguration(issuer), 200, KEYS_CACHE);
      },
    }),
    defineRoute({
      method: "GET",
      path: "/keys",
      summary: "JWKS of the JWT-SVID signing keys (OIDC jwks_uri)",
      tags: ["identity"],
      auth: "public",
      response: Jwks,
      handler: async () => new Reply(authority.jwks(), 200, KEYS_CACHE),
    }),
  ];
}
