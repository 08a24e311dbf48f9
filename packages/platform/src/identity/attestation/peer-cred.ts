import { HexrError } from "@hexr/core";
import type { Socket } from "node:net";
import { nativeBinding } from "../../native.js";

/** What the kernel recorded about the process that called connect() on a unix socket. */
export interface PeerCredentials {
  pid: number;
  /** Effective uid/gid at connect time. */
  uid: number;
  gid: number;
}

export { nativeBinding };

/** The OS file descriptor behind a connected net.Socket (Node keeps it on the libuv handle). */
export function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) {
    throw new HexrError("identity.peer_unknown", "the connection has no file descriptor (closed, or not a local socket)", {
      kind: "permission_denied",
    });
  }
  return fd;
}

/** SO_PEERCRED of an accepted unix socket connection. */
export function peerCredentials(socket: Socket): PeerCredentials {
  const fd = socketFd(socket);
  try {
    return nativeBinding().peerCred(fd);
  } catch (err) {
    if (err instanceof HexrError) throw err;
    throw new HexrError("identity.peer_unknown", `cannot read the caller's peer credentials: ${(err as Error).message}`, {
      kind: "permission_denied",
      cause: err,
    });
  }
}
