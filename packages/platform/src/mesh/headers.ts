/** Set by the inbound proxy after verifying the caller's SVID; the agent believes it only with the mesh token. */
export const CALLER_HEADER = "x-hexr-caller-spiffe-id";
/** Shared secret between one agent process and its own proxy (env HEXR_MESH_TOKEN). */
export const MESH_TOKEN_HEADER = "x-hexr-mesh-token";
/** Outbound: which agent to reach, `<agent>` or `<agent>/<role>` (same tenant), or `<tenant>/<agent>/<role>`. */
export const TARGET_HEADER = "x-hexr-target";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);

/** Copies request headers for forwarding: drops hop-by-hop headers and every mesh header a caller may have forged. */
export function forwardableHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    const key = k.toLowerCase();
    if (HOP_BY_HOP.has(key) || key.startsWith("x-hexr-")) continue;
    out[key] = v;
  }
  return out;
}
