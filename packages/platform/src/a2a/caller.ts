/**
 * Who is calling the A2A server. The server listens on loopback behind the mesh's inbound proxy,
 * which verifies the caller's X.509-SVID and forwards its SPIFFE ID with the per-process mesh
 * token; the platform ingress, itself a verified system workload, may in turn vouch for the
 * principal it authenticated (API key or JWT-SVID).
 */
import { describeWorkload } from "@hexr/core";
import type { IncomingMessage } from "node:http";
import { CALLER_HEADER, MESH_TOKEN_HEADER } from "../mesh/headers.js";
import { meshTokenMatches } from "../mesh/token.js";
import { unauthenticated } from "./errors.js";
import type { Caller } from "./service.js";
/** Set by the platform ingress (a verified system workload): the principal it authenticated. */
export const ON_BEHALF_OF_HEADER = "hexr-a2a-on-behalf-of";
/** Set by the platform ingress: the URL the card's interfaces must point to (the ingress itself). */
export const ADVERTISE_URL_HEADER = "hexr-a2a-advertise-url";

export interface Authenticated {
  caller: Caller;
  /** Only from a trusted relay: the URL to advertise in the agent card. */
  advertiseUrl?: string;
}

/** Returns the caller, null when the request carries no credentials of its kind; throws when they are invalid. */
export type CallerAuthenticator = (req: IncomingMessage) => Authenticated | null | Promise<Authenticated | null>;

export interface DelegatedPrincipal {
  id: string;
  spiffeId: string | null;
  admin: boolean;
}

export function encodeOnBehalfOf(p: DelegatedPrincipal): string {
  return Buffer.from(JSON.stringify(p)).toString("base64url");
}

function decodeOnBehalfOf(v: string): DelegatedPrincipal | undefined {
  try {
    const p = JSON.parse(Buffer.from(v, "base64url").toString("utf8")) as Partial<DelegatedPrincipal>;
    if (typeof p.id !== "string" || p.id === "" || p.id.length > 2048) return undefined;
    const spiffeId = typeof p.spiffeId === "string" && p.spiffeId.startsWith("spiffe://") ? p.spiffeId : null;
    return { id: p.id, spiffeId, admin: p.admin === true };
  } catch {
    return undefined;
  }
}

function isSystem(spiffeId: string): boolean {
  try {
    return describeWorkload(spiffeId).kind === "system";
  } catch {
    return false;
  }
}

export interface MeshCallerOptions {
  /** The token this process shares with its inbound proxy. */
  meshToken: string;
  /** Which verified callers may vouch for principals (default: any `spiffe://<td>/system/...`). */
  mayDelegate?: (spiffeId: string) => boolean;
}

/**
 * Trusts the mesh's caller header (`x-hexr-caller-spiffe-id`) only with the right mesh token (constant-time check). A
 * verified system workload (the platform ingress) may add `hexr-a2a-on-behalf-of`.
 */
export function meshCaller({ meshToken, mayDelegate = isSystem }: MeshCallerOptions): CallerAuthenticator {
  return (req) => {
    const token = req.headers[MESH_TOKEN_HEADER];
    if (token === undefined) return null;
    if (!meshTokenMatches(token, meshToken)) throw unauthenticated("the mesh token is wrong");
    const peer = req.headers[CALLER_HEADER];
    if (typeof peer !== "string" || !peer.startsWith("spiffe://")) throw unauthenticated("the mesh did not name the caller");
    const delegated = req.headers[ON_BEHALF_OF_HEADER];
    if (typeof delegated === "string" && mayDelegate(peer)) {
      const p = decodeOnBehalfOf(delegated);
      if (!p) throw unauthenticated(`malformed ${ON_BEHALF_OF_HEADER}`);
      const advertise = req.headers[ADVERTISE_URL_HEADER];
      return {
        caller: { id: p.id, spiffeId: p.spiffeId, admin: p.admin },
        ...(typeof advertise === "string" && /^https?:\/\//.test(advertise) ? { advertiseUrl: advertise } : {}),
      };
    }
    return { caller: { id: peer, spiffeId: peer, admin: false } };
  };
}

/** For development and benchmarks on loopback without a mesh: every caller is "anonymous". */
export function anonymousCaller(): CallerAuthenticator {
  const anon: Authenticated = { caller: { id: "anonymous", spiffeId: null, admin: false } };
  return () => anon;
}

/** Tries each authenticator in turn; the first that recognizes the request decides. */
export function firstOf(...auths: CallerAuthenticator[]): CallerAuthenticator {
  return async (req) => {
    for (const a of auths) {
      const r = await a(req);
      if (r) return r;
    }
    return null;
  };
}
