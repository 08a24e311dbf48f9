/**
 * One namespace sandbox as the backend's pools hold it: set up ahead of its execution and blocked
 * until `release`. Two kinds make them: a bubblewrap process per sandbox (`BwrapSandbox`, here), and
 * the fork server (`ForkedSandbox`, ./zygote.ts), whose zygotes are themselves `BwrapSandbox`es.
 *
 * Spawn protocol of a bubblewrap sandbox: bwrap is started without forking the platform (./spawn.ts)
 * and gets exactly these descriptors: it reads its options from fd 3 (an in-memory file, so nothing
 * shows in `ps`), reports the sandbox pid on fd 4 (`--json-status-fd`) and then waits on fd 5
 * (`--block-fd`); by then the platform has moved that pid into the sandbox's cgroup and unblocks it.
 * fd 6 carries the seccomp program (applied by bwrap when its options say `--seccomp 6`). The first
 * process then starts inside the finished sandbox, sets the rlimits, waits for its go on fd 7 (the
 * release; it closes fd 7 and reads the job), and reports on fd 8. Further descriptors (`extraFds`)
 * follow from fd 9.
 */

import { HexrError } from "@hexr/core";
import type { Socket } from "node:net";
import type { CgroupManager, ExecCgroup } from "../cgroup.js";
import { CappedOutput } from "../output.js";
import type { SandboxLimits } from "../types.js";
import { NativeProcess, SandboxKill, type ChildFd } from "./spawn.js";

/**
 * python: an interpreter started ahead that waits in its stub; generic: the runner, which starts the
 * job's program; forked: a copy of a zygote's interpreter (./zygote.ts); forked-generic: a copy of
 * the runner's zygote that has exec'd the runner; zygote: a fork server itself.
 */
export type SandboxKind = "python" | "generic" | "forked" | "forked-generic" | "zygote";

/** What one sandbox reports when its process tree is gone. */
export interface SandboxEnd {
  exitDoc: number | undefined;
  spawnError: Error | undefined;
}

/** The sandbox as the backend's pools and executions use it. */
export interface PooledSandbox {
  readonly kind: SandboxKind;
  readonly jobDir: string;
  readonly stdout: CappedOutput;
  readonly stderr: CappedOutput;
  /** Resolves once the sandbox waits for its job (in its cgroup, its first process started). */
  readonly ready: Promise<void>;
  readonly ended: Promise<SandboxEnd>;
  /** Resolves once every process of the sandbox is gone (after `ended`): its cgroup can go then. */
  readonly exited: Promise<void>;
  /** Set once made (`cgroupMade`); the cleanup waits for it, so a cgroup made late is removed too. */
  readonly cgroup: ExecCgroup | undefined;
  readonly cgroupMade: Promise<ExecCgroup | undefined>;
  /** What the first process reported on fd 8 (`ready`, `start`, `install-failed …`). */
  readonly runnerText: string;
  onRunner: (() => void) | undefined;
  /** Neither dead nor released. */
  readonly alive: boolean;
  setupFailure(spawnError: Error | undefined): HexrError;
  /** The default CPU weight for a sandbox set up in the background, now that an execution waits for it. */
  prioritize(): Promise<void>;
  /** Lets the sandbox run its job (written just before into its job directory). */
  release(env: Record<string, string>): void;
  kill(): void;
}

interface StatusDoc {
  "child-pid"?: number;
  "exit-code"?: number;
  "setup-error"?: string;
}

/** Complete JSON lines of a status stream (`--json-status-fd`, the zygote's); the rest stays buffered. */
export function statusLines(onDoc: (doc: StatusDoc) => void): (chunk: string) => void {
  let buf = "";
  return (chunk) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf("\n")) !== -1) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      try {
        onDoc(JSON.parse(line) as StatusDoc);
      } catch {
        // not a status document
      }
    }
  };
}

/**
 * Whether the sandbox's process is python's stub (started ahead, it reads only main.py and gets the
 * execution's variables with its go) rather than the runner (job.sh, packages, then an interpreter).
 */
export function isPythonStub(kind: SandboxKind): boolean {
  return kind !== "generic" && kind !== "forked-generic";
}

/** The go a stub or runner waits for on fd 7: a python stub also gets the execution's variables. */
export function goMessage(kind: SandboxKind, env: Record<string, string>): string {
  return isPythonStub(kind) ? ["run", ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join("\0") : "go\n";
}

export function backendFailed(why: string): HexrError {
  return new HexrError("sandbox.backend_failed", `the namespace sandbox failed to start (${why}); run 'hexr sandbox doctor'`, {
    kind: "unavailable",
  });
}

export interface BwrapSandboxOptions {
  kind: "python" | "generic" | "zygote";
  bwrap: string;
  /** bwrap's options (read from fd 3). */
  args: string[];
  /** The sandbox's first process. */
  command: string[];
  /** The seccomp program, at fd 6 (bwrap applies it when `args` say `--seccomp 6`). */
  seccomp: Buffer;
  /** Descriptors of ours the first process gets as fd 9, 10, ... */
  extraFds?: number[];
  devNull: number;
  jobDir: string;
  cgroups: CgroupManager | undefined;
  limits: SandboxLimits;
  runAs: { uid: number; gid: number } | undefined;
  /** Set up ahead of its execution: the lowest CPU weight until `prioritize`. */
  background: boolean;
}

/**
 * A bubblewrap sandbox. Output collection starts at spawn so nothing the code writes can be missed.
 * A python sandbox (and the zygote) is ready once its interpreter waits (`ready` on fd 8).
 */
export class BwrapSandbox implements PooledSandbox {
  readonly kind: "python" | "generic" | "zygote";
  readonly proc: NativeProcess | undefined;
  readonly stdout: CappedOutput;
  readonly stderr: CappedOutput;
  readonly jobDir: string;
  readonly ready: Promise<void>;
  readonly ended: Promise<SandboxEnd>;
  readonly exited: Promise<void>;
  cgroup: ExecCgroup | undefined;
  readonly cgroupMade: Promise<ExecCgroup | undefined>;
  runnerText = "";
  onRunner: (() => void) | undefined;
  private readonly pipes: Array<Socket | undefined>;
  private released = false;
  private dead = false;
  private readonly killer: SandboxKill;

  constructor(o: BwrapSandboxOptions) {
    this.kind = o.kind;
    this.jobDir = o.jobDir;
    this.stdout = new CappedOutput("stdout", o.limits.maxOutputBytes);
    this.stderr = new CappedOutput("stderr", o.limits.maxOutputBytes);
    let spawnError: Error | undefined;
    try {
      const fds: ChildFd[] = [
        // 0 stdin, 1/2 output, 3 options, 4 status, 5 block, 6 seccomp, 7 the go, 8 reports, 9... extra
        { fd: o.devNull },
        "read",
        "read",
        { data: Buffer.from(o.args.map((a) => a + "\0").join("")) },
        "read",
        "write",
        { data: o.seccomp },
        "write",
        "read",
        ...(o.extraFds ?? []).map((fd) => ({ fd })),
      ];
      this.proc = new NativeProcess(o.bwrap, [o.bwrap, "--args", "3", "--", ...o.command], {
        fds,
        ...(o.runAs ? { runAs: o.runAs } : {}),
      });
    } catch (err) {
      spawnError = err as Error;
    }
    this.pipes = this.proc?.pipes ?? [];
    this.killer = new SandboxKill(this.proc);
    let exitDoc: number | undefined;
    this.pipes[1]?.on("data", (d: Buffer) => this.stdout.push(d));
    this.pipes[2]?.on("data", (d: Buffer) => this.stderr.push(d));
    this.pipes[8]?.setEncoding("utf8");
    this.pipes[8]?.on("data", (chunk: string) => {
      this.runnerText += chunk;
      this.onRunner?.();
    });
    const exited: Promise<unknown> = this.proc
      ? this.proc.exited.catch((err: unknown) => {
          spawnError = err as Error;
        })
      : Promise.resolve();

    // Made on the thread pool while bwrap sets up its namespaces, so it costs no latency.
    this.cgroupMade = o.cgroups
      ? o.cgroups
          .create({ memoryBytes: o.limits.memoryBytes, pids: o.limits.pids, cpus: o.limits.cpus, background: o.background })
          .then((cg) => {
            this.cgroup = cg;
            return cg;
          })
      : Promise.resolve(undefined);
    this.cgroupMade.catch(() => undefined);

    const cgroupReady = new Promise<void>((resolve, reject) => {
      this.cgroupMade.catch((err: unknown) => {
        this.kill();
        reject(
          new HexrError("sandbox.cgroup_failed", `cannot create a cgroup for the sandbox: ${(err as Error).message}`, {
            kind: "unavailable",
          }),
        );
      });
      this.pipes[4]?.setEncoding("utf8");
      this.pipes[4]?.on(
        "data",
        statusLines((doc) => {
          if (typeof doc["child-pid"] === "number" && this.killer.pid === undefined) {
            const pid = doc["child-pid"];
            if (!this.killer.reported(pid)) return; // killed before it was reported: killed now
            this.cgroupMade
              .then((cg) => cg?.add(pid))
              .then(
                () => {
                  // Inside its cgroup now: bwrap may finish (seccomp, init, the first process's exec),
                  // so that process already waits when an execution takes the sandbox.
                  this.pipes[5]?.end("x");
                  resolve();
                },
                (err: unknown) => {
                  this.kill();
                  reject(
                    new HexrError("sandbox.cgroup_failed", `cannot move the sandbox into its cgroup: ${(err as Error).message}`, {
                      kind: "unavailable",
                    }),
                  );
                },
              );
          }
          if (typeof doc["exit-code"] === "number") exitDoc = doc["exit-code"];
        }),
      );
      void exited.then(() => reject(this.setupFailure(spawnError)));
    });
    // A python sandbox is ready once its interpreter waits in the stub (it has read main.py by then).
    const stubReady = isPythonStub(this.kind)
      ? new Promise<void>((resolve, reject) => {
          const check = () => {
            if (/^ready$/m.test(this.runnerText)) {
              this.onRunner = undefined;
              resolve();
            }
          };
          this.onRunner = check;
          check();
          void exited.then(() => reject(this.setupFailure(spawnError)));
        })
      : undefined;
    this.ready = stubReady ? Promise.all([cgroupReady, stubReady]).then(() => undefined) : cgroupReady;
    cgroupReady.catch(() => undefined);
    stubReady?.catch(() => undefined);
    this.ready.catch(() => undefined);
    this.ended = exited.then(() => {
      this.dead = true;
      this.killer.done();
      return { exitDoc, spawnError };
    });
    this.exited = this.ended.then(() => undefined); // bwrap, pid 1's parent, has exited
  }

  get alive(): boolean {
    return !this.dead && !this.released;
  }

  setupFailure(spawnError: Error | undefined): HexrError {
    return backendFailed(
      spawnError
        ? spawnError.message
        : this.stderr.text().trim().split("\n").slice(-3).join("; ") || "bubblewrap exited without diagnostics",
    );
  }

  async prioritize(): Promise<void> {
    await (await this.cgroupMade.catch(() => undefined))?.prioritize();
  }

  release(env: Record<string, string>): void {
    this.released = true;
    this.pipes[7]?.end(goMessage(this.kind, env));
  }

  kill(): void {
    this.killer.kill();
    void this.cgroup?.killAll();
  }
}
