import { HexrError } from "@hexr/core";
import { MESH_TOKEN_HEADER, TARGET_HEADER } from "./bridge.js";

export interface MeshCallOptions {
  /** The local outbound mesh proxy, e.g. `http://127.0.0.1:41234` (env HEXR_MESH_OUTBOUND). */
  outboundUrl: string;
  meshToken: string;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/** Calls another agent's handler through the outbound proxy, which originates mTLS as this agent. */
export async function meshInvoke<T>(target: string, input: unknown, opts: MeshCallOptions): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${opts.outboundUrl}/invoke`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        [MESH_TOKEN_HEADER]: opts.meshToken,
        [TARGET_HEADER]: target,
        ...opts.headers,
      },
      body: JSON.stringify({ input }),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  } catch (err) {
    throw new HexrError("agent.call_failed", `cannot reach the mesh proxy to call ${target}: ${(err as Error).message}`, {
      kind: "unavailable",
    });
  }
  const body = (await res.json().catch(() => ({}))) as {
    output?: T;
    error?: { code?: string; message?: string };
    code?: string;
    detail?: string;
  };
  if (!res.ok) {
    const code = body.error?.code ?? body.code ?? "agent.call_failed";
    const message = body.error?.message ?? body.detail ?? `HTTP ${res.status}`;
    throw new HexrError(code, `call to ${target} failed: ${message}`, {
      kind: res.status === 403 ? "permission_denied" : res.status === 404 ? "not_found" : "upstream",
    });
  }
  return body.output as T;
}
