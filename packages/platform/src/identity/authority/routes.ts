import { z } from "zod";
import { defineRoute, Reply, type RouteDef } from "../../http/router.js";
import type { LocalAuthority } from "./authority.js";

const Bundle = z.object({
  keys: z.array(z.record(z.string(), z.unknown())),
  spiffe_sequence: z.number(),
  spiffe_refresh_hint: z.number(),
});

const SlotStatus = z.object({
  id: z.string(),
  state: z.enum(["prepared", "active", "old"]),
  rootId: z.string(),
  jwtKeyId: z.string(),
  notBefore: z.string(),
  notAfter: z.string(),
  activatedAt: z.string().nullable(),
  deactivatedAt: z.string().nullable(),
  retirableAt: z.string().nullable(),
});

const AuthorityStatus = z.object({
  trustDomain: z.string(),
  sequence: z.number(),
  roots: z.array(z.object({ id: z.string(), notBefore: z.string(), notAfter: z.string() })),
  slots: z.array(SlotStatus),
});

export function authorityRoutes(authority: LocalAuthority): RouteDef[] {
  return [
    defineRoute({
      method: "GET",
      path: "/api/v1/identity/bundle",
      summary: "The trust domain's SPIFFE bundle (JWKS with x509-svid and jwt-svid keys)",
      tags: ["identity"],
      auth: "public",
      response: Bundle,
      handler: async () =>
        new Reply(authority.bundle(), 200, { "cache-control": `public, max-age=${authority.config.bundleRefreshHintSeconds}` }),
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/identity/authority",
      summary: "CA slots and roots with their rotation state",
      tags: ["identity"],
      auth: "admin",
      response: AuthorityStatus,
      handler: async () => authority.status(),
    }),
    defineRoute({
      method: "POST",
      path: "/api/v1/identity/authority/rotate",
      summary: "Run one CA rotation step now (prepare, activate or retire)",
      description: "`retire` refuses while old keys still back unexpired SVIDs unless `force` is true (for a compromised key).",
      tags: ["identity"],
      auth: "admin",
      body: z.strictObject({
        step: z.enum(["prepare", "activate", "retire"]),
        newRoot: z.boolean().optional(),
        force: z.boolean().optional(),
      }),
      response: AuthorityStatus,
      handler: async ({ body }) => {
        if (body.step === "prepare") await authority.prepare({ newRoot: body.newRoot ?? false });
        else if (body.step === "activate") await authority.activate();
        else await authority.retire({ force: body.force ?? false });
        return authority.status();
      },
    }),
  ];
}
