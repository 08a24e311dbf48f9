/**
 * The namespace backend's fork server. A python execution costs a fresh interpreter's start
 * (~800 page faults, hundreds of files opened and read) and a bubblewrap process's setup; on a small
 * virtual machine, where a page fault costs ~10 us, that is most of an execution. Instead, a zygote
 * (an interpreter started once in a bubblewrap sandbox, see `zygoteScript`) forks a copy of itself
 * for each sandbox: fresh pid, mount, network, ipc, uts, cgroup and user namespaces, a new /proc,
 * private /tmp, /dev/shm and /dev/pts, the execution's own cgroup, uid 65534 with no capabilities,
 * no-new-privs and the same seccomp program (native/src/zygote.c). The copy then waits for its job
 * as a python stub does, runs it, and leaves with a quick exit.
 *
 * Sandboxes that start a new program (shell, javascript, python that needs a new interpreter) come
 * from the runner's zygote instead: the same fork server built as a small executable (hexr-zygote,
 * see `zygoteArgv`), whose copies, set up and confined the same way, exec the runner. They save a
 * bubblewrap process's start and setup per sandbox, and share nothing with each other (exec).
 *
 * What the copies of a python zygote share with each other is the zygote's memory as it was before
 * any execution ran: an initialized interpreter, its hash seed and its address layout. Executions of
 * different tenants never share a python zygote (one per tenant, see NamespaceBackend), and a zygote
 * is replaced after `maxForks` sandboxes.
 *
 * The platform talks to a zygote over a SOCK_SEQPACKET socket (its fd 9): one message per sandbox,
 * with the sandbox's descriptors attached (stdout, stderr, status, the go, reports, and its cgroup's
 * `cgroup.procs` files, into which the sandbox's first process moves itself).
 */

import { HexrError } from "@hexr/core";
import { closeSync, constants, openSync } from "node:fs";
import { Socket } from "node:net";
import { join } from "node:path";
import { nativeBinding } from "../../native.js";
import type { CgroupManager, ExecCgroup } from "../cgroup.js";
import { CappedOutput } from "../output.js";
import type { SandboxLimits } from "../types.js";
import { backendFailed, BwrapSandbox, goMessage, statusLines, type PooledSandbox, type SandboxEnd } from "./sandbox.js";

const JOB_MAGIC = 0x6878727a; // "hxrz", native/src/zygote.c
const JOB_BYTES = 88; // struct job_msg
const ID_MAX = 64;
const EAGAIN = 11;

export interface ZygoteOptions {
  /** Which executions it serves: `python:<tenant>` ("" for the operator's), or `generic` (the runner's). */
  key: string;
  bwrap: string;
  /** bwrap's options for the zygote (./backend.ts builds them). */
  args: string[];
  command: string[];
  seccomp: Buffer;
  devNull: number;
  cgroups: CgroupManager | undefined;
  limits: SandboxLimits;
  runAs: { uid: number; gid: number } | undefined;
}

/** One zygote process and its control socket. */
export class Zygote {
  readonly key: string;
  /** Sandboxes asked of it so far. */
  forks = 0;
  /** When it was last asked for a sandbox (ms, monotonic). */
  lastUsed = performance.now();
  readonly ended: Promise<SandboxEnd>;
  /** The zygote's own cgroup (its forks start there; each sandbox then moves into its own). */
  readonly cgroupMade: Promise<ExecCgroup | undefined>;
  private readonly proc: BwrapSandbox;
  private ctrl: number | undefined;
  private dead = false;
  private stopped = false;
  /** Requests the socket's queue had no room for yet. */
  private readonly queue: Array<{ msg: Buffer; fds: number[]; resolve: () => void; reject: (err: Error) => void }> = [];
  private retry: NodeJS.Timeout | undefined;

  constructor(o: ZygoteOptions) {
    this.key = o.key;
    const native = nativeBinding();
    const [ours, theirs] = native.seqpacketPair();
    this.ctrl = ours;
    try {
      this.proc = new BwrapSandbox({
        kind: "zygote",
        bwrap: o.bwrap,
        args: o.args,
        command: o.command,
        seccomp: o.seccomp,
        extraFds: [theirs],
        devNull: o.devNull,
        jobDir: "",
        cgroups: o.cgroups,
        limits: o.limits,
        runAs: o.runAs,
        background: false,
      });
    } catch (err) {
      closeSync(theirs);
      this.closeCtrl();
      throw err;
    }
    // The zygote has its copy once bwrap runs (or none, if the spawn failed).
    const spawned = this.proc.proc?.started ?? Promise.resolve();
    void spawned.then(
      () => closeSync(theirs),
      () => closeSync(theirs),
    );
    this.cgroupMade = this.proc.cgroupMade;
    this.ended = this.proc.ended.then((end) => {
      this.dead = true;
      this.closeCtrl();
      return end;
    });
  }

  /** Started, not retired, not dead. */
  get usable(): boolean {
    return !this.dead && !this.stopped && this.ctrl !== undefined;
  }

  /** Its process has not ended (a retired zygote runs until its sandboxes have ended). */
  get running(): boolean {
    return !this.dead;
  }

  /** Retired or killed by the platform (not dead by itself). */
  get retired(): boolean {
    return this.stopped;
  }

  /** What the zygote wrote on stderr (its diagnostics). */
  diagnostics(): string {
    return this.proc.stderr.text().trim();
  }

  /**
   * Asks for one sandbox: `fds` are the sandbox's stdout, stderr, status, go and report descriptors,
   * then its cgroup's `cgroup.procs` files. Resolves once the zygote has its own copies (the caller
   * then closes its); rejects when the zygote is gone. Requests wait here, in order, while the
   * socket's queue is full (the kernel queues ~10 messages; a zygote still starting reads none).
   */
  send(id: string, sizes: { tmpfsBytes: number; shmBytes: number }, fds: number[], cgroupFds: number[]): Promise<void> {
    if (!this.usable) return Promise.reject(zygoteGone("it has been stopped"));
    if (!/^[A-Za-z0-9_-]+$/.test(id) || id.length >= ID_MAX) return Promise.reject(new Error(`invalid sandbox id ${id}`));
    const msg = Buffer.alloc(JOB_BYTES);
    msg.writeUInt32LE(JOB_MAGIC, 0);
    msg.writeUInt32LE(cgroupFds.length, 4);
    msg.writeBigUInt64LE(BigInt(sizes.tmpfsBytes), 8);
    msg.writeBigUInt64LE(BigInt(sizes.shmBytes), 16);
    msg.write(id, 24, "ascii");
    this.forks++;
    this.lastUsed = performance.now();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ msg, fds: [...fds, ...cgroupFds], resolve, reject });
      this.flush();
    });
  }

  private flush(): void {
    while (this.queue.length > 0) {
      const item = this.queue[0]!;
      if (this.ctrl === undefined) {
        this.queue.shift();
        item.reject(zygoteGone("it has been stopped"));
        continue;
      }
      try {
        nativeBinding().sendFds(this.ctrl, item.msg, item.fds);
      } catch (err) {
        if ((err as { errno?: number }).errno === EAGAIN) {
          this.retry ??= setTimeout(() => {
            this.retry = undefined;
            this.flush();
          }, 2);
          return;
        }
        this.queue.shift();
        item.reject(zygoteGone((err as Error).message));
        continue;
      }
      this.queue.shift();
      item.resolve();
    }
    if (this.stopped) this.closeCtrl(); // retired: what was asked before has gone out
  }

  /** No more sandboxes: requests already made still go out; the zygote exits once its sandboxes have ended. */
  retire(): void {
    this.stopped = true;
    this.flush();
  }

  kill(): void {
    this.stopped = true;
    this.closeCtrl();
    this.proc.kill();
  }

  private closeCtrl(): void {
    if (this.ctrl === undefined) return;
    closeSync(this.ctrl);
    this.ctrl = undefined;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    this.flush(); // what still waits is refused
  }
}

function zygoteGone(why: string): HexrError {
  return backendFailed(`fork server: its zygote is not available (${why})`);
}

/** Sizes of a forked sandbox's private file systems. */
export interface ForkedSizes {
  tmpfsBytes: number;
  shmBytes: number;
}

export interface ForkedSandboxOptions {
  zygote: Zygote;
  /** forked: a python zygote's copy; forked-generic: the runner's zygote's copy. */
  kind: "forked" | "forked-generic";
  id: string;
  jobDir: string;
  cgroups: CgroupManager | undefined;
  limits: SandboxLimits;
  sizes: ForkedSizes;
  /** Set up ahead of its execution: the lowest CPU weight until `prioritize`. */
  background: boolean;
}

/**
 * A sandbox forked by a zygote, made ahead of its execution like a bubblewrap sandbox of its kind
 * and used the same way: the platform writes the job into `jobDir` (bound read-only at
 * /run/hexr/job), then `release` sends the go (with a python copy, the execution's variables). It is
 * ready once its first process waits (`ready` on its report pipe, from the stub or before the exec of
 * the runner).
 */
export class ForkedSandbox implements PooledSandbox {
  readonly kind: "forked" | "forked-generic";
  readonly jobDir: string;
  readonly stdout: CappedOutput;
  readonly stderr: CappedOutput;
  readonly ready: Promise<void>;
  readonly ended: Promise<SandboxEnd>;
  readonly exited: Promise<void>;
  cgroup: ExecCgroup | undefined;
  readonly cgroupMade: Promise<ExecCgroup | undefined>;
  runnerText = "";
  onRunner: (() => void) | undefined;
  private readonly go: Socket;
  private readonly zygote: Zygote;
  private released = false;
  private dead = false;
  private killed = false;
  private setupError: string | undefined;

  constructor(o: ForkedSandboxOptions) {
    const { zygote, id, jobDir, cgroups, limits, sizes, background } = o;
    this.kind = o.kind;
    this.jobDir = jobDir;
    this.zygote = zygote;
    this.stdout = new CappedOutput("stdout", limits.maxOutputBytes);
    this.stderr = new CappedOutput("stderr", limits.maxOutputBytes);
    const native = nativeBinding();
    // Ours / the sandbox's end: stdout, stderr, status (we read), go (we write), reports (we read).
    const pairs: Array<[number, number]> = [];
    try {
      for (let i = 0; i < 5; i++) pairs.push(native.pipe());
    } catch (err) {
      for (const p of pairs) p.forEach((fd) => closeSync(fd));
      throw err;
    }
    const ours = pairs.map(([r, w], i) => (i === 3 ? w : r));
    const theirs = pairs.map(([r, w], i) => (i === 3 ? r : w));
    const [out, err, status, go, report] = ours.map((fd, i) =>
      new Socket({ fd, readable: i !== 3, writable: i === 3 }).on("error", () => undefined),
    ) as [Socket, Socket, Socket, Socket, Socket];
    this.go = go;
    out.on("data", (d: Buffer) => this.stdout.push(d));
    err.on("data", (d: Buffer) => this.stderr.push(d));
    report.setEncoding("utf8");
    report.on("data", (chunk: string) => {
      this.runnerText += chunk;
      this.onRunner?.();
    });
    // The sandbox's init reports its code process's exit code first (then the zygote, once the init
    // is gone): with that, and every output pipe closed, the execution is over; the sandbox's
    // namespaces are torn down meanwhile, and the cleanup (its cgroup) waits for its processes.
    let exitDoc: number | undefined;
    let reported: () => void = () => undefined;
    const exitReported = new Promise<void>((resolve) => (reported = resolve));
    status.setEncoding("utf8");
    status.on(
      "data",
      statusLines((doc) => {
        if (typeof doc["exit-code"] === "number") {
          exitDoc ??= doc["exit-code"];
          reported();
        }
        if (typeof doc["setup-error"] === "string") this.setupError ??= doc["setup-error"];
      }),
    );
    const closed = (s: Socket) => new Promise<void>((resolve) => s.once("close", () => resolve()));
    const statusClosed = closed(status);
    const gone = Promise.all([closed(out), closed(err), closed(report), Promise.race([statusClosed, exitReported])]);

    this.cgroupMade = cgroups
      ? cgroups.create({ memoryBytes: limits.memoryBytes, pids: limits.pids, cpus: limits.cpus, background }).then((cg) => {
          this.cgroup = cg;
          return cg;
        })
      : Promise.resolve(undefined);
    // The zygote gets the sandbox's ends (and the cgroup's files) once the cgroup exists; ours of them go then.
    let spawnError: Error | undefined;
    const sent = this.cgroupMade
      .then(
        (cg) => {
          if (this.killed) return;
          const procs: number[] = [];
          try {
            for (const dir of cg?.dirs ?? []) procs.push(openSync(join(dir, "cgroup.procs"), constants.O_WRONLY));
          } catch (e) {
            procs.forEach((fd) => closeSync(fd));
            throw e;
          }
          return zygote.send(id, sizes, theirs, procs).finally(() => procs.forEach((fd) => closeSync(fd)));
        },
        (e: unknown) => {
          throw new HexrError("sandbox.cgroup_failed", `cannot create a cgroup for the sandbox: ${(e as Error).message}`, {
            kind: "unavailable",
          });
        },
      )
      .catch((e: unknown) => {
        spawnError = e as Error;
        throw e;
      })
      .finally(() => theirs.forEach((fd) => closeSync(fd)));
    sent.catch(() => undefined);

    let isReady = false;
    const waiting = new Promise<void>((resolve, reject) => {
      const check = () => {
        if (/^ready$/m.test(this.runnerText)) {
          this.onRunner = undefined;
          isReady = true;
          resolve();
        }
      };
      this.onRunner = check;
      void gone.then(() => {
        if (!isReady) reject(this.setupFailure(spawnError));
      });
    });
    this.ready = Promise.all([sent, waiting]).then(() => undefined);
    waiting.catch(() => undefined);
    this.ready.catch(() => undefined);
    this.ended = gone.then(() => {
      this.dead = true;
      go.destroy();
      return { exitDoc, spawnError };
    });
    // The status descriptor closes once the init has exited and the zygote has reported it: by
    // then the sandbox's pid namespace, and every process in it, is gone.
    this.exited = Promise.all([this.ended, statusClosed]).then(() => undefined);
  }

  /** Its zygote's end ends it too (it lives in the zygote's pid namespace), a moment before its pipes say so. */
  get alive(): boolean {
    return !this.dead && !this.released && !this.killed && this.zygote.running;
  }

  setupFailure(spawnError: Error | undefined): HexrError {
    if (spawnError instanceof HexrError) return spawnError;
    const why =
      spawnError?.message ??
      this.setupError ??
      (this.stderr.text().trim().split("\n").slice(-3).join("; ") || "the forked sandbox ended before it was ready");
    return backendFailed(`fork server: ${why}`);
  }

  async prioritize(): Promise<void> {
    await (await this.cgroupMade.catch(() => undefined))?.prioritize();
  }

  release(env: Record<string, string>): void {
    this.released = true;
    this.go.end(goMessage(this.kind, env));
  }

  /** Kills whatever of it runs; one not yet in its cgroup exits by itself, its go gone. */
  kill(): void {
    this.killed = true;
    this.go.destroy();
    void this.cgroup?.killAll();
  }
}
