import { HexrError } from "@hexr/core";
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type Server } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { sendProblem, toProblem } from "../http/problem.js";
import { sameTenant, type PeerAuthorizer } from "./authorize.js";
import { CALLER_HEADER, MESH_TOKEN_HEADER, forwardableHeaders } from "./headers.js";
import { MeshStats } from "./stats.js";
import { spiffeIdOfCert, type TlsIdentity, type TlsIdentitySource } from "./svid.js";

export interface InboundProxyOptions {
  identity: TlsIdentitySource;
  /** Where verified requests go: the agent (or its A2A sidecar) on loopback. */
  upstream: { host?: string; port: number };
  /** Sent to the upstream so it can tell its own proxy from any other local process. */
  meshToken: string;
  authorize?: PeerAuthorizer;
  host?: string;
  port?: number;
  log?: Logger;
  stats?: MeshStats;
}

export interface InboundProxy {
  readonly port: number;
  readonly url: string;
  readonly stats: MeshStats;
  close(): Promise<void>;
}

function tlsOptions(id: TlsIdentity) {
  return { cert: id.certChainPem, key: id.keyPem, ca: id.bundlePem };
}

/**
 * The inbound half of the mesh (the local Envoy): terminates mTLS with the workload's X.509-SVID,
 * requires a client SVID that chains to the trust bundle, checks the caller with the authorizer
 * (same tenant by default), then forwards plain HTTP on loopback with the verified caller ID.
 */
export async function startInboundProxy(opts: InboundProxyOptions): Promise<InboundProxy> {
  const { identity, upstream, meshToken, authorize = sameTenant, log } = opts;
  const stats = opts.stats ?? new MeshStats();
  const accepted = new WeakMap<TLSSocket, { caller: string } | { denied: string }>();
  const started = new Map<string, number>();

  const server: Server = createHttpsServer({
    ...tlsOptions(identity.current()),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.2",
  });
  const unsubscribe = identity.onUpdate((id) => {
    // New handshakes use the rotated SVID; established connections keep going.
    server.setSecureContext({ ...tlsOptions(id), minVersion: "TLSv1.2" });
    log?.info({ spiffeId: id.spiffeId, expiresAt: new Date(id.expiresAt).toISOString() }, "mesh inbound: SVID rotated");
  });

  const key = (s: Socket) => `${s.remoteAddress}:${s.remotePort}`;
  server.on("connection", (s: Socket) => started.set(key(s), performance.now()));
  server.on("secureConnection", (s: TLSSocket) => {
    const t0 = started.get(key(s));
    started.delete(key(s));
    if (t0 !== undefined) stats.recordHandshake(performance.now() - t0);
    stats.connectionOpened();
    s.once("close", () => stats.connectionClosed());
    const peer = spiffeIdOfCert(s.getPeerCertificate());
    const self = identity.current().spiffeId;
    if (!peer) {
      accepted.set(s, { denied: "client certificate has no SPIFFE ID" });
      return;
    }
    const verdict = authorize(peer, self);
    accepted.set(s, verdict.allowed ? { caller: peer } : { denied: verdict.reason });
  });
  server.on("tlsClientError", (err, s) => {
    started.delete(key(s));
    stats.recordRejected("tls");
    log?.debug({ err: err.message }, "mesh inbound: TLS handshake refused");
  });

  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const sock = req.socket as TLSSocket;
    const verdict = accepted.get(sock);
    if (!verdict || "denied" in verdict) {
      stats.recordRejected("policy");
      sendProblem(
        res,
        toProblem(
          new HexrError("mesh.peer_not_allowed", verdict && "denied" in verdict ? verdict.denied : "peer not verified", {
            kind: "permission_denied",
          }),
        ),
      );
      return;
    }
    const headers = forwardableHeaders(req.headers);
    headers[CALLER_HEADER] = verdict.caller;
    headers[MESH_TOKEN_HEADER] = meshToken;
    const up = httpRequest(
      {
        host: upstream.host ?? "127.0.0.1",
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers,
        agent: upstreamAgent,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, forwardableHeaders(upRes.headers));
        upRes.pipe(res);
      },
    );
    up.on("error", (err) => {
      log?.warn({ err: err.message }, "mesh inbound: upstream unreachable");
      sendProblem(res, toProblem(new HexrError("mesh.upstream_unavailable", "the agent is not reachable", { kind: "upstream" })));
    });
    res.on("close", () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  });

  const upstreamAgent = new Agent({ keepAlive: true, maxSockets: 256 });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `https://${opts.host ?? "127.0.0.1"}:${port}`,
    stats,
    async close() {
      unsubscribe();
      upstreamAgent.destroy();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    },
  };
}
