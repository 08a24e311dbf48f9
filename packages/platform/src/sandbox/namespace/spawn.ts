/**
 * Starts a sandbox's bubblewrap process through the native addon instead of child_process: Node
 * forks the whole platform for every child, and copying a large process's page tables costs more
 * CPU than the sandbox setup itself (see native/src/spawn.c). The child gets exactly the descriptors
 * listed (pipes created here, or given fds); everything else of the platform is closed in it.
 */

import { HexrError } from "@hexr/core";
import { closeSync } from "node:fs";
import { Socket } from "node:net";
import { nativeBinding } from "../../native.js";

/**
 * What the child's descriptor i is: our end of a new pipe (we read / we write), an in-memory file
 * holding all the data the child will read from it, an fd of ours (the child gets a copy), or closed.
 */
export type ChildFd = "read" | "write" | { data: Buffer } | { fd: number } | null;

export interface NativeSpawnOptions {
  /** Slot i describes the child's descriptor i. */
  fds: ChildFd[];
  env?: Record<string, string>;
  /** Host ids the child drops to (the platform must be root). */
  runAs?: { uid: number; gid: number };
}

/** A child process created without fork, with our ends of its pipes. */
export class NativeProcess {
  /** Known once `started` resolves. */
  pid: number | undefined;
  /** Our end of each pipe slot (undefined for other slots); usable at once, before the child runs. */
  readonly pipes: Array<Socket | undefined>;
  /** Resolves when the child runs the program; rejects with `sandbox.spawn_failed`. */
  readonly started: Promise<void>;
  /** The exit code (128 + signal when a signal ended it), once every read pipe is closed and the process is reaped. */
  readonly exited: Promise<number>;
  private reaped = false;
  private pendingSignal: NodeJS.Signals | undefined;

  constructor(file: string, argv: string[], opts: NativeSpawnOptions) {
    const native = nativeBinding();
    const ours: Array<number | undefined> = [];
    const theirs: number[] = [];
    const childFds: number[] = [];
    try {
      for (const slot of opts.fds) {
        if (slot === "read" || slot === "write") {
          const [r, w] = native.pipe();
          ours.push(slot === "read" ? r : w);
          theirs.push(slot === "read" ? w : r);
          childFds.push(slot === "read" ? w : r);
        } else if (slot !== null && "data" in slot) {
          const fd = native.memfd(slot.data);
          theirs.push(fd);
          childFds.push(fd);
          ours.push(undefined);
        } else {
          ours.push(undefined);
          childFds.push(slot === null ? -1 : slot.fd);
        }
      }
    } catch (err) {
      for (const fd of [...ours, ...theirs]) if (fd !== undefined) closeSync(fd);
      throw spawnFailed(file, err);
    }
    this.pipes = ours.map((fd, i) =>
      fd === undefined
        ? undefined
        : new Socket({ fd, readable: opts.fds[i] === "read", writable: opts.fds[i] === "write" }).on("error", () => undefined),
    );
    const env = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
    let spawning: Promise<number>;
    try {
      spawning = native.spawn(file, argv, env, childFds, opts.runAs?.uid ?? -1, opts.runAs?.gid ?? -1);
    } catch (err) {
      spawning = Promise.reject(err as Error);
    }
    this.started = spawning.then(
      (pid) => {
        this.pid = pid;
        if (this.pendingSignal) this.kill(this.pendingSignal);
      },
      (err: unknown) => {
        for (const s of this.pipes) s?.destroy();
        throw spawnFailed(file, err);
      },
    );
    // The child has its copies once the spawn settled (or none, if it failed); ours of its ends must
    // go, or no EOF ever comes.
    void this.started.then(
      () => theirs.forEach((fd) => closeSync(fd)),
      () => theirs.forEach((fd) => closeSync(fd)),
    );
    const readEnds = this.pipes.filter((s, i): s is Socket => s !== undefined && opts.fds[i] === "read");
    this.exited = this.started
      .then(() => Promise.all(readEnds.map((s) => new Promise<void>((resolve) => s.once("close", () => resolve())))))
      .then(() => this.waitExit());
    this.exited.catch(() => undefined);
  }

  /** Reaps the child: it is exiting once its pipes are closed, so this takes at most a few polls. */
  private async waitExit(): Promise<number> {
    const native = nativeBinding();
    for (let delay = 0; ; delay = Math.min(50, delay * 2 || 1)) {
      const code = native.reap(this.pid!);
      if (code !== null) {
        this.reaped = true;
        for (const s of this.pipes) s?.destroy();
        return code;
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** Signals the child (once it runs) unless it has been reaped: its pid could belong to another process by then. */
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (this.reaped) return;
    if (this.pid === undefined) {
      this.pendingSignal = signal;
      return;
    }
    try {
      process.kill(this.pid, signal);
    } catch {
      // already gone
    }
  }
}

function spawnFailed(file: string, err: unknown): HexrError {
  const errno = (err as { errno?: number }).errno;
  return new HexrError("sandbox.spawn_failed", `cannot start ${file}: ${(err as Error).message}`, {
    kind: "unavailable",
    cause: err,
    ...(errno !== undefined ? { details: { errno } } : {}),
  });
}

/**
 * Kills a bubblewrap sandbox: the child bwrap reported (`--json-status-fd`'s `child-pid`, init of the
 * sandbox's pid namespace: the kernel kills the rest), then bwrap. Killed before it reported that
 * child, bwrap would leave the child blocked for good (it waits for bwrap to finish its user
 * namespace before it can die with its parent), so a kill asked for earlier happens once the child
 * is reported; bwrap itself goes after 2 s if it never reports. The backend and the package fetcher
 * both kill their sandboxes this way.
 */
export class SandboxKill {
  private child: number | undefined;
  private asked = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly bwrap: NativeProcess | undefined) {}

  /** The pid bwrap reported; undefined until then. */
  get pid(): number | undefined {
    return this.child;
  }

  /** bwrap reported its child. False when a kill had been asked for (done now): do not go on setting it up. */
  reported(pid: number): boolean {
    this.child = pid;
    if (!this.asked) return true;
    this.kill();
    return false;
  }

  kill(): void {
    this.asked = true;
    if (this.child === undefined) {
      this.timer ??= setTimeout(() => this.bwrap?.kill("SIGKILL"), 2000).unref();
      return;
    }
    try {
      process.kill(this.child, "SIGKILL");
    } catch {
      // gone
    }
    this.bwrap?.kill("SIGKILL");
  }

  /** bwrap has exited: nothing is left to kill later. */
  done(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
