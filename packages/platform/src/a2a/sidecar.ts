/**
 * The a2a-sidecar: the A2A server of one agent, on loopback behind the agent's inbound mesh proxy,
 * relaying each task to the agent process through its bridge. `hexr run` hosts it in-process;
 * `sidecar-main.ts` runs it as a process of its own (the pod's a2a-sidecar container).
 */
import { unsafeTenantScope } from "../auth/principal.js";
import type { Storage } from "../storage/types.js";
import { bridgeHandler } from "./bridge-handler.js";
import type { AgentMetadata, CardSigner } from "./card.js";
import { anonymousCaller, firstOf, meshCaller, type CallerAuthenticator } from "./caller.js";
import { startA2AServer, type RunningA2AServer } from "./server.js";
import type { Caller } from "./service.js";
import type { Logger } from "pino";

/** Where the sidecar serves JSON-RPC; the card stays at the origin's `/.well-known/agent-card.json`. */
export const A2A_RPC_PATH = "/a2a";

export interface A2ASidecarOptions {
  storage: Storage;
  tenant: string;
  agent: string;
  metadata: AgentMetadata;
  /**
   * The agent process's bridge (`http://127.0.0.1:<port>`, or a function when the port changes
   * with restarts) and the mesh token it accepts. Requests for other paths (`/invoke`) are
   * forwarded to it unchanged, so the inbound mesh proxy can have the sidecar as its one upstream.
   */
  bridge: { url: string | (() => string); meshToken: string };
  /** The token the inbound proxy sends with the verified caller; absent = unauthenticated loopback (development only). */
  meshToken?: string;
  spiffeId?: string;
  signer?: CardSigner | (() => CardSigner | undefined);
  /** The URL callers reach the agent at (its inbound proxy + `/a2a`). */
  publicUrl?: string;
  runner?: string;
  /** Policy for every call (`a2a:send` on this agent); the inbound proxy already requires the same tenant. */
  authorize?: (caller: Caller, method: string) => void | Promise<void>;
  host?: string;
  port?: number;
  bodyLimit?: number;
  log?: Logger;
}

export function startA2ASidecar(opts: A2ASidecarOptions): Promise<RunningA2AServer> {
  const authenticate: CallerAuthenticator = opts.meshToken
    ? meshCaller({ meshToken: opts.meshToken })
    : firstOf(anonymousCaller());
  return startA2AServer({
    storage: opts.storage,
    // Sidecars key their tasks by tenant name: names are unique and never reused while tasks exist.
    scope: unsafeTenantScope(opts.tenant, opts.tenant),
    agent: opts.agent,
    handler: bridgeHandler(opts.bridge),
    fallback: opts.bridge.url,
    metadata: opts.metadata,
    authenticate,
    security: opts.meshToken ? "mtls" : "none",
    rpcPath: A2A_RPC_PATH,
    ...(opts.spiffeId ? { spiffeId: opts.spiffeId } : {}),
    ...(opts.signer ? { signer: opts.signer } : {}),
    ...(opts.publicUrl ? { publicUrl: opts.publicUrl } : {}),
    ...(opts.runner ? { runner: opts.runner } : {}),
    ...(opts.authorize ? { authorize: opts.authorize } : {}),
    ...(opts.host ? { host: opts.host } : {}),
    ...(opts.port !== undefined ? { port: opts.port } : {}),
    ...(opts.bodyLimit ? { bodyLimit: opts.bodyLimit } : {}),
    ...(opts.log ? { log: opts.log } : {}),
  });
}
