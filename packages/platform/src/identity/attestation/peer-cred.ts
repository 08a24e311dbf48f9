import { HexrError } from "@hexr/core";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";

/** What the kernel recorded about the process that called connect() on a unix socket. */
export interface PeerCredentials {
  pid: number;
  /** Effective uid/gid at connect time. */
  uid: number;
  gid: number;
}

interface NativeBinding {
  peerCred(fd: number): PeerCredentials;
  dirHandleAlive(fd: number): boolean;
}

// Same relative path from src/ and dist/: the addon is built in packages/platform/native/build.
const ADDON_URL = new URL("../../../native/build/Release/hexr_native.node", import.meta.url);

let binding: NativeBinding | undefined;

/** The SO_PEERCRED addon (packages/platform/native), loaded once. */
export function nativeBinding(): NativeBinding {
  if (binding) return binding;
  const path = fileURLToPath(ADDON_URL);
  try {
    binding = createRequire(import.meta.url)(path) as NativeBinding;
  } catch (err) {
    throw new HexrError(
      "identity.native_addon_missing",
      `the peer-credentials addon is not built (${path}): run 'npm run build:native -w @hexr/platform' (needs gcc, make and python3)`,
      { kind: "unavailable", cause: err },
    );
  }
  return binding;
}

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
