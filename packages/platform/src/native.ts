import { HexrError } from "@hexr/core";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** The platform's native addon (packages/platform/native): what Node does not expose. */
export interface NativeBinding {
  /** SO_PEERCRED of a connected unix socket. */
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  /** Whether an open /proc/<pid> directory handle still refers to a live process. */
  dirHandleAlive(fd: number): boolean;
  /**
   * Starts `file` without forking the platform (clone with CLONE_VM|CLONE_VFORK): `fds[i]` becomes
   * the child's descriptor i (-1: closed), every other descriptor is closed, and with uid/gid >= 0
   * the child drops to them (no supplementary groups). Runs on a worker thread (only that thread
   * waits for the child's exec); resolves with the pid, which the caller must `reap`. The fds must
   * stay open until it settles.
   */
  spawn(file: string, argv: string[], envp: string[], fds: number[], uid: number, gid: number): Promise<number>;
  /** A pipe, both ends close-on-exec: [read, write]. */
  pipe(): [number, number];
  /** An anonymous in-memory file (memfd) holding `data`, positioned at its start, close-on-exec. */
  memfd(data: Buffer): number;
  /** null while the process runs, else its exit code (128 + signal when a signal ended it). */
  reap(pid: number): number | null;
  /** A connected AF_UNIX SOCK_SEQPACKET pair, both close-on-exec, the first non-blocking: [ours, theirs]. */
  seqpacketPair(): [number, number];
  /** One message on a socket with these descriptors attached (SCM_RIGHTS); throws (errno EAGAIN, EPIPE, ...) and sends nothing if it cannot. */
  sendFds(socket: number, data: Buffer, fds: number[]): void;
  /**
   * On a worker thread: makes each directory (0755), then writes `values[i]` to `files[i]` in order
   * (existing files only; `optional[i]`: a missing one is skipped). On a failure it removes the
   * directories it made and rejects, naming the step (`mkdir <dir>: ...`, `write <file>: ...`, errno set).
   */
  cgroupMake(dirs: string[], files: string[], values: string[], optional: boolean[]): Promise<void>;
  /** On a worker thread: rmdir of each directory, in order; per directory 0 or its errno. */
  rmdirs(dirs: string[]): Promise<number[]>;
}

// Same relative path from src/ and dist/: the addon is built in packages/platform/native/build.
const ADDON_URL = new URL("../native/build/Release/hexr_native.node", import.meta.url);

/** The namespace sandbox's python fork server library (native/src/zygote.c), built beside the addon. */
export const ZYGOTE_LIBRARY_PATH = fileURLToPath(new URL("../native/build/Release/hexr_zygote.so", import.meta.url));

/** The same fork server as an executable (hexr-zygote), whose sandboxes exec the runner. */
export const ZYGOTE_EXECUTABLE_PATH = fileURLToPath(new URL("../native/build/Release/hexr-zygote", import.meta.url));

/** The init of the fork servers' sandboxes (hexr-init, native/src/init.c). */
export const SANDBOX_INIT_PATH = fileURLToPath(new URL("../native/build/Release/hexr-init", import.meta.url));

let binding: NativeBinding | undefined;

/** The addon, loaded once. */
export function nativeBinding(): NativeBinding {
  if (binding) return binding;
  const path = fileURLToPath(ADDON_URL);
  try {
    binding = createRequire(import.meta.url)(path) as NativeBinding;
  } catch (err) {
    throw new HexrError(
      "platform.native_addon_missing",
      `the platform's native addon is not built (${path}): run 'npm run build:native -w @hexr/platform' (needs gcc, make and python3)`,
      { kind: "unavailable", cause: err },
    );
  }
  return binding;
}
