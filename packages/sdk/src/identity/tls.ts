import { HexrError, parseSpiffeId } from "@hexr/core";
import type { X509Certificate } from "node:crypto";
import {
  createSecureContext,
  type ConnectionOptions,
  type PeerCertificate,
  type SecureContext,
  type SecureContextOptions,
  type TLSSocket,
} from "node:tls";
import type { Identity } from "./identity.js";
import { spiffeIdOfCertificate, type X509Svid } from "./svid.js";

/** Decides whether a peer's SPIFFE ID may talk to us (mTLS replaces hostnames with SPIFFE IDs). */
export type Authorizer = (spiffeId: string) => boolean;

/** Exactly these IDs. */
export function authorizeId(...ids: string[]): Authorizer {
  const allowed = new Set(ids.map((id) => parseSpiffeId(id).toString()));
  return (id) => allowed.has(id);
}

/** Any workload of a trust domain. */
export function authorizeMemberOf(trustDomain: string): Authorizer {
  return (id) => parseSpiffeId(id).trustDomain === trustDomain;
}

/** Agents of one tenant: `spiffe://<td>/agent/<tenant>/...`. */
export function authorizeTenant(trustDomain: string, tenant: string): Authorizer {
  return (id) => {
    const p = parseSpiffeId(id);
    return p.trustDomain === trustDomain && p.segments[0] === "agent" && p.segments[1] === tenant;
  };
}

/** Any SPIFFE ID whose chain verified against the bundle. */
export function authorizeAny(): Authorizer {
  return () => true;
}

const pem = (cert: X509Certificate) => cert.toString();

/**
 * Key, certificate chain and the trust bundle of the SVID's own trust domain, for `tls` options:
 * of `svid` when one is passed, else of the identity's default SVID. An explicit `undefined` (say, a
 * lookup in `identity.x509Svids` that found nothing) is an error, never the default SVID: that would
 * present another workload's identity.
 */
export function svidTlsOptions(identity: Identity, ...which: [svid?: X509Svid]): SecureContextOptions {
  if (which.length > 0 && which[0] === undefined) {
    throw new HexrError("identity.svid_missing", "svidTlsOptions was given no SVID (undefined); pass one of identity.x509Svids", {
      kind: "invalid_argument",
    });
  }
  const svid = which[0] ?? identity.x509Svid;
  const td = parseSpiffeId(svid.spiffeId).trustDomain;
  return {
    key: svid.privateKey.export({ format: "pem", type: "pkcs8" }),
    cert: svid.certificates.map(pem).join(""),
    // Only this trust domain's authorities: a federated CA must never vouch for our IDs.
    ca: identity.x509Bundle(td).authorities.map(pem),
    minVersion: "TLSv1.2",
  };
}

/** A SecureContext with the current SVID (build a new one after each rotation, see `onUpdate`). */
export function svidSecureContext(identity: Identity): SecureContext {
  return createSecureContext(svidTlsOptions(identity));
}

/** The SPIFFE ID of a peer certificate (its single URI SAN). */
export function peerSpiffeId(socket: TLSSocket): string {
  const cert = socket.getPeerCertificate() as PeerCertificate | Record<string, never>;
  if (!cert || Object.keys(cert).length === 0) {
    throw new HexrError("identity.peer_without_svid", "the peer presented no certificate", { kind: "unauthenticated" });
  }
  try {
    return spiffeIdOfCertificate(cert as PeerCertificate);
  } catch (err) {
    throw new HexrError("identity.peer_without_svid", `the peer certificate is not an X.509-SVID: ${(err as Error).message}`, {
      kind: "unauthenticated",
    });
  }
}

/** Server side: chain verified by TLS against the bundle; then the SPIFFE ID must satisfy `authorize`. */
export function authorizePeer(socket: TLSSocket, authorize: Authorizer): string {
  if (!socket.authorized) {
    throw new HexrError(
      "identity.peer_unverified",
      `the peer's certificate chain did not verify: ${String(socket.authorizationError ?? "unknown")}`,
      {
        kind: "unauthenticated",
      },
    );
  }
  const id = peerSpiffeId(socket);
  if (!authorize(id))
    throw new HexrError("identity.peer_not_authorized", `peer ${id} is not authorized`, { kind: "permission_denied" });
  return id;
}

/** Options for a TLS server that requires client SVIDs (check each peer with `authorizePeer`). */
export function mtlsServerOptions(identity: Identity): SecureContextOptions & { requestCert: true; rejectUnauthorized: true } {
  return { ...svidTlsOptions(identity), requestCert: true, rejectUnauthorized: true };
}

/**
 * Options for a TLS client presenting our SVID and accepting the server by SPIFFE ID instead of
 * hostname: the chain is verified against the bundle, then `authorize` decides on the URI SAN.
 */
export function mtlsClientOptions(identity: Identity, authorize: Authorizer): ConnectionOptions {
  return {
    ...svidTlsOptions(identity),
    rejectUnauthorized: true,
    checkServerIdentity: (_host, cert) => {
      try {
        const id = spiffeIdOfCertificate(cert);
        return authorize(id) ? undefined : new Error(`server ${id} is not authorized`);
      } catch (err) {
        return err as Error;
      }
    },
  };
}

/** Keeps a TLS server's certificate current across SVID rotation; returns an unsubscribe function. */
export function keepServerContextFresh(
  server: { setSecureContext(options: SecureContextOptions): void },
  identity: Identity,
): () => void {
  return identity.onUpdate(() => server.setSecureContext(mtlsServerOptions(identity)));
}
