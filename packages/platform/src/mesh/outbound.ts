import { HexrError } from "@hexr/core";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { AddressInfo } from "node:net";
import type { PeerCertificate } from "node:tls";
import type { Logger } from "pino";
import { sendProblem, toProblem } from "../http/problem.js";
import { MESH_TOKEN_HEADER, TARGET_HEADER, forwardableHeaders } from "./headers.js";
import { MeshStats } from "./stats.js";
import { spiffeIdOfCert, type TlsIdentity, type TlsIdentitySource } from "./svid.js";
import { meshTokenMatches } from "./token.js";

/** Where a target lives and who it must prove to be. */
export interface ResolvedTarget {
  /** `https://host:port` of the target's inbound proxy. */
  url: string;
  spiffeId: string;
}

export interface OutboundProxyOptions {
  identity: TlsIdentitySource;
  /** Resolves the `x-hexr-target` value (e.g. through the agent registry). */
  resolve: (target: string) => Promise<ResolvedTarget>;
  meshToken: string;
  port?: number;
  log?: Logger;
  stats?: MeshStats;
  /** How long a resolution is reused. */
  resolveTtlMs?: number;
  clock?: () => number;
}

export interface OutboundProxy {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

function agentFor(id: TlsIdentity): HttpsAgent {
  return new HttpsAgent({
    keepAlive: true,
    maxSockets: 256,
    cert: id.certChainPem,
    key: id.keyPem,
    ca: id.bundlePem,
    minVersion: "TLSv1.2",
  });
}

/** Verifies the server by SPIFFE ID instead of hostname; called after the chain was verified against the bundle. */
export function expectPeer(expected: string) {
  return (_host: string, cert: PeerCertificate): Error | undefined => {
    const actual = spiffeIdOfCert(cert);
    return actual === expected ? undefined : new Error(`peer is ${actual ?? "not a SPIFFE workload"}, expected ${expected}`);
  };
}

/**
 * The outbound half of the mesh: the agent sends plain HTTP to loopback with its mesh token and an
 * `x-hexr-target`; the proxy originates mTLS with the agent's SVID and verifies the target's SPIFFE ID.
 * Connections are pooled per identity; a rotation starts a new pool and lets the old one drain.
 */
export async function startOutboundProxy(opts: OutboundProxyOptions): Promise<OutboundProxy> {
  const { identity, resolve, meshToken, log, resolveTtlMs = 5_000, clock = Date.now } = opts;
  const stats = opts.stats ?? new MeshStats();
  // One pool per expected peer: a pooled connection was verified for one SPIFFE ID only, and the
  // check runs at the handshake, so a connection must never be reused for a different expected peer.
  let agents = new Map<string, HttpsAgent>();
  const agentForPeer = (spiffeId: string) => {
    let a = agents.get(spiffeId);
    if (!a) {
      a = agentFor(identity.current());
      agents.set(spiffeId, a);
    }
    return a;
  };
  const unsubscribe = identity.onUpdate(() => {
    const old = agents;
    agents = new Map();
    setTimeout(() => old.forEach((a) => a.destroy()), 30_000).unref();
  });
  const cache = new Map<string, { target: ResolvedTarget; until: number }>();
  const lookup = async (name: string): Promise<ResolvedTarget> => {
    const hit = cache.get(name);
    if (hit && hit.until > clock()) return hit.target;
    const target = await resolve(name);
    cache.set(name, { target, until: clock() + resolveTtlMs });
    return target;
  };

  const fail = (res: ServerResponse, err: unknown) => sendProblem(res, toProblem(err));

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (!meshTokenMatches(req.headers[MESH_TOKEN_HEADER], meshToken)) {
      stats.recordRejected("token");
      fail(
        res,
        new HexrError("mesh.token_invalid", "the outbound proxy serves only its own agent (mesh token missing or wrong)", {
          kind: "permission_denied",
        }),
      );
      return;
    }
    const targetName = req.headers[TARGET_HEADER];
    if (typeof targetName !== "string" || targetName.length === 0) {
      fail(
        res,
        new HexrError("mesh.target_required", `set the ${TARGET_HEADER} header to the agent to call`, {
          kind: "invalid_argument",
        }),
      );
      return;
    }
    lookup(targetName).then(
      (target) => {
        const url = new URL(target.url);
        const up = httpsRequest(
          {
            host: url.hostname,
            port: url.port,
            method: req.method,
            path: req.url,
            headers: forwardableHeaders(req.headers),
            agent: agentForPeer(target.spiffeId),
            checkServerIdentity: expectPeer(target.spiffeId),
          },
          (upRes) => {
            res.writeHead(upRes.statusCode ?? 502, forwardableHeaders(upRes.headers));
            upRes.pipe(res);
          },
        );
        up.on("error", (err) => {
          cache.delete(targetName);
          log?.warn({ target: targetName, err: err.message }, "mesh outbound: call failed");
          fail(
            res,
            new HexrError("mesh.target_unreachable", `cannot reach ${targetName} over mTLS: ${err.message}`, {
              kind: "upstream",
            }),
          );
        });
        res.on("close", () => {
          if (!res.writableFinished) up.destroy();
        });
        req.pipe(up);
      },
      (err: unknown) => fail(res, err),
    );
  });
  await new Promise<void>((r, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => r());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    async close() {
      unsubscribe();
      agents.forEach((a) => a.destroy());
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    },
  };
}
