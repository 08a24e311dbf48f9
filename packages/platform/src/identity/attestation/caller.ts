import { HexrError } from "@hexr/core";
import { closeSync, constants, openSync } from "node:fs";
import type { Socket } from "node:net";
import { nativeBinding, peerCredentials } from "./peer-cred.js";
import { PROC_ROOT, readProcIdsSync, readProcStatSync } from "./proc.js";

/**
 * The process at the other end of a Workload API connection, as the kernel identifies it. Like
 * SPIRE's peertracker: the pid comes from SO_PEERCRED, a handle on /proc/<pid> is opened at once,
 * and `assertAlive()` (called after every attestation) proves that the attested pid still belongs
 * to the process that connected — not to a newer process that reused the pid.
 */
export interface Caller {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  /** /proc/<pid>/stat start time (clock ticks since boot) when the connection was accepted. */
  readonly startTime: string;
  /** Throws `identity.caller_gone` unless the original caller process is still the one at `pid`. */
  assertAlive(): void;
  close(): void;
}

export interface TrackCallerOptions {
  procRoot?: string;
}

function gone(reason: string): HexrError {
  return new HexrError("identity.caller_gone", `the calling process could not be verified: ${reason}`, {
    kind: "permission_denied",
  });
}

export function trackCaller(socket: Socket, { procRoot = PROC_ROOT }: TrackCallerOptions = {}): Caller {
  const creds = peerCredentials(socket);
  // pid 0: the peer lives in a pid namespace we cannot see, so there is nothing to attest.
  if (!Number.isInteger(creds.pid) || creds.pid <= 0) throw gone("the caller's pid is not visible from this pid namespace");
  let fd: number;
  try {
    fd = openSync(`${procRoot}/${creds.pid}`, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (err) {
    throw gone(`the caller exited before it could be attested (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  let startTime: string;
  try {
    startTime = readProcStatSync(creds.pid, procRoot).startTime;
  } catch (err) {
    closeSync(fd);
    throw gone(`cannot read the caller's start time (${(err as Error).message})`);
  }
  let closed = false;
  return {
    pid: creds.pid,
    uid: creds.uid,
    gid: creds.gid,
    startTime,
    assertAlive() {
      if (closed) throw gone("the connection is closed");
      // A handle on a dead process's /proc directory cannot be listed, even after the pid is reused.
      if (!nativeBinding().dirHandleAlive(fd)) throw gone("the process exited");
      let now: string;
      let ids;
      try {
        now = readProcStatSync(creds.pid, procRoot).startTime;
        ids = readProcIdsSync(creds.pid, procRoot);
      } catch {
        throw gone("the process exited");
      }
      if (now !== startTime) throw gone("the pid now belongs to another process");
      // The effective ids must still be those the kernel recorded at connect time (no setuid since).
      if (ids.uids[1] !== creds.uid || ids.gids[1] !== creds.gid) throw gone("the process changed its uid or gid");
    },
    close() {
      if (closed) return;
      closed = true;
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    },
  };
}
