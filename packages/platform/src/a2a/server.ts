import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { TenantScope } from "../auth/principal.js";
import type { Storage } from "../storage/types.js";
import { buildCard, signCard, type AgentMetadata, type CardSigner } from "./card.js";
import type { CallerAuthenticator } from "./caller.js";
import type { A2AHandler } from "./handler.js";
import { createA2AListener, type CardProvider } from "./http.js";
import { createJsonRpcHandler, type JsonRpcHandler } from "./jsonrpc.js";
import { A2AService, type Caller, type ProtocolVersion } from "./service.js";
import { a2aMigrations, TaskStore } from "./store.js";
import { metrics } from "../telemetry/metrics/catalog.js";

export interface A2AServerOptions {
  storage: Storage;
  /** The agent's tenant: every stored task is confined to it. */
  scope: TenantScope;
  agent: string;
  handler: A2AHandler;
  metadata: AgentMetadata;
  /** Decides who the caller is (mesh headers, a trusted relay; `anonymousCaller()` on a bare loopback). */
  authenticate: CallerAuthenticator;
  /** The agent's SPIFFE ID, named in the card. */
  spiffeId?: string;
  /** Signs the card with the agent's SVID key; a function so that rotated SVIDs are picked up. */
  signer?: CardSigner | (() => CardSigner | undefined);
  /** How callers authenticate at the advertised URL (card `securitySchemes`). */
  security?: "mtls" | "bearer" | "none";
  /** The URL to advertise in the card (default: derived from each request's Host header). */
  publicUrl?: string;
  /** Stable name of this server instance, for crash recovery (default `<hostname>/<agent>`). */
  runner?: string;
  bodyLimit?: number;
  /** Path of the JSON-RPC endpoint (default `/`). */
  rpcPath?: string;
  /** Policy for every call (`a2a:send` on this agent); throw a permission error to refuse. */
  authorize?: (caller: Caller, method: string) => void | Promise<void>;
  /** Where other paths are forwarded (the agent's bridge behind the same proxy); absent = 404. */
  fallback?: string | (() => string);
  log?: Logger;
  clock?: () => number;
}

export interface A2AServer {
  readonly service: A2AService;
  readonly rpc: JsonRpcHandler;
  readonly store: TaskStore;
  readonly listener: ReturnType<typeof createA2AListener>;
  /** Task ids that the start-up recovery marked failed. */
  readonly recovered: string[];
  close(): Promise<void>;
}

/** Migrates, recovers tasks left in flight by a previous process, and wires service, JSON-RPC and HTTP. */
export async function createA2AServer(opts: A2AServerOptions): Promise<A2AServer> {
  const { storage, scope, agent, handler, metadata, log } = opts;
  await storage.migrate(a2aMigrations);
  const store = new TaskStore({ storage, scope, agent, runner: opts.runner ?? `${hostname()}/${agent}` });
  const labels = { tenant: scope.tenant, agent, ...(opts.spiffeId ? { spiffe_id: opts.spiffeId } : {}) };
  const service = new A2AService({
    store,
    handler,
    streaming: metadata.streaming !== false,
    onTaskState: (state) => metrics.recordA2aTask(state.slice("TASK_STATE_".length).toLowerCase().replace("_", "-"), labels),
    ...(log ? { log } : {}),
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  const recovered = await service.recover();

  const signerNow = () => (typeof opts.signer === "function" ? opts.signer() : opts.signer);
  const cache = new Map<string, Record<string, unknown>>();
  const makeCard = (version: ProtocolVersion, url: string, extended: boolean, viaIngress: boolean): Record<string, unknown> => {
    const signer = signerNow();
    const key = `${version}|${extended ? 1 : 0}|${viaIngress ? 1 : 0}|${signer?.kid ?? "-"}|${url}`;
    let card = cache.get(key);
    if (!card) {
      const base = buildCard(version, {
        metadata,
        url,
        // Through the platform ingress callers present a bearer (API key or JWT-SVID), not an SVID.
        security: viaIngress ? "bearer" : (opts.security ?? "mtls"),
        extended,
        ...(opts.spiffeId ? { spiffeId: opts.spiffeId } : {}),
      });
      card = signer ? signCard(base, signer) : base;
      // Bounded: URLs come from Host headers and relays.
      if (cache.size > 64) cache.clear();
      cache.set(key, card);
    }
    return card;
  };
  const cards: CardProvider = async (version, url, viaIngress) => makeCard(version, url, false, viaIngress);
  const hasExtended = (metadata.extendedSkills?.length ?? 0) > 0;
  const rpc = createJsonRpcHandler({
    service,
    onMessage: (method) => metrics.recordA2aMessage(method, labels),
    ...(opts.authorize ? { authorize: opts.authorize } : {}),
    ...(hasExtended
      ? {
          extendedCard: async (version: ProtocolVersion, url: string | undefined) =>
            makeCard(version, url ?? opts.publicUrl ?? "", true, false),
        }
      : {}),
    ...(log ? { log } : {}),
  });
  const listener = createA2AListener({
    rpc,
    cards,
    authenticate: opts.authenticate,
    ...(opts.bodyLimit ? { bodyLimit: opts.bodyLimit } : {}),
    ...(opts.publicUrl ? { publicUrl: opts.publicUrl } : {}),
    ...(opts.rpcPath ? { rpcPath: opts.rpcPath } : {}),
    ...(opts.fallback ? { fallback: opts.fallback } : {}),
    ...(log ? { log } : {}),
  });
  return { service, rpc, store, listener, recovered, close: () => service.close() };
}

export interface RunningA2AServer extends A2AServer {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
}

/** `createA2AServer` on its own node:http server (loopback by default, port 0 = any). */
export async function startA2AServer(opts: A2AServerOptions & { host?: string; port?: number }): Promise<RunningA2AServer> {
  const a2a = await createA2AServer(opts);
  const server = createServer({ keepAliveTimeout: 65_000 }, a2a.listener);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}${opts.rpcPath ?? "/"}`;
  let closing: Promise<void> | undefined;
  return {
    ...a2a,
    url,
    port: addr.port,
    server,
    close: () =>
      (closing ??= (async () => {
        await a2a.close();
        await new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        });
      })()),
  };
}
