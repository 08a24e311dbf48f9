/**
 * A confined process for the platform's own work on untrusted input (fetching packages, pip's
 * resolver over an operator's wheel directory): bubblewrap with every namespace unshared (a network
 * namespace with only loopback), /usr read-only, a synthetic /etc, a private /tmp, only the binds
 * the caller lists, uid 65534 (host-side too when the platform is root), the sandboxes' seccomp
 * filter, and a cgroup of its own (rlimits only where cgroups cannot be had). The process is killed
 * at its timeout or when the caller aborts.
 */

import { HexrError } from "@hexr/core";
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync } from "node:fs";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import type { Logger } from "pino";
import { openCgroups, type CgroupLimits, type CgroupManager, type ExecCgroup } from "./cgroup.js";
import { confinedRootArgs, defaultRuntimeParent, removeStaleRuntimeDirs, writeSyntheticEtc } from "./namespace/runtime-dir.js";
import { buildSeccompProgram, syscallTableFor } from "./namespace/seccomp.js";
import { NativeProcess, SandboxKill } from "./namespace/spawn.js";

export interface HostSandboxOptions {
  /** Names the runtime directory (`<prefix><pid>-…`); stale ones of dead platforms are removed. */
  prefix: string;
  /** What the process runs as, in log lines ("package fetch"). */
  purpose: string;
  bwrapPath?: string;
  /** Host uid/gid of the process when the platform runs as root (default 65534). */
  uid?: number;
  gid?: number;
  /** Where the runtime directory goes (default: a tmpfs, see defaultRuntimeParent). */
  runtimeParent?: string;
  /** The process's cgroup (default 1 GiB, 256 processes, one core). */
  limits?: CgroupLimits;
  /** Private /tmp size (default 512 MiB). */
  tmpBytes?: number;
  /** RLIMIT_FSIZE in bytes (default 2 GiB). */
  maxFileBytes?: number;
  log?: Logger;
}

export interface HostBind {
  /** Host path (bubblewrap resolves it as the sandbox user: every directory above must let it through). */
  source: string;
  dest: string;
  writable?: boolean;
}

export interface HostRun {
  /** argv inside the sandbox, started by `/bin/sh -c 'ulimit …; exec "$@"'`. */
  command: string[];
  binds?: HostBind[];
  /** Variables on top of PATH, HOME=/tmp, TMPDIR=/tmp and LANG=C.UTF-8 (bubblewrap's options travel in a memfd, never on a command line). */
  env?: Record<string, string>;
  /** Public CA certificates at /etc/ssl/certs (for https). */
  caCertificates?: boolean;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface HostRunResult {
  /** null when the process could not be started or was killed before it reported. */
  exitCode: number | null;
  timedOut: boolean;
  aborted: boolean;
  oomKilled: boolean;
  /** stdout and stderr together, the last 64 KiB, unredacted: the caller redacts what it knows to be secret. */
  log: string;
}

interface Runtime {
  dir: string;
  /** Undefined where cgroups cannot be had (the platform is not root): rlimits only. */
  cgroups: CgroupManager | undefined;
  etc: string;
  work: string;
  seccomp: Buffer;
}

const MAX_LOG = 64 * 1024;
const DEFAULT_LIMITS: CgroupLimits = { memoryBytes: 1024 * 1024 * 1024, pids: 256, cpus: 1 };

/** `name`'s absolute path: itself if absolute, else the first match on PATH (undefined when there is none). */
export function resolveExecutable(name: string): string | undefined {
  if (isAbsolute(name)) return existsSync(name) ? name : undefined;
  for (const dir of (process.env["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/**
 * The directories above `path` that `user` cannot pass through by their mode bits, outermost first
 * (ones that do not exist are skipped): bubblewrap resolves a bind's source as the sandbox user, so
 * a 0700 directory such as /root on the way keeps the bind out.
 */
export function blockedAncestors(path: string, user: { uid: number; gid: number }): string[] {
  const blocked: string[] = [];
  for (let d = dirname(path); ; d = dirname(d)) {
    try {
      const st = statSync(d);
      const through = st.uid === user.uid ? st.mode & 0o100 : st.gid === user.gid ? st.mode & 0o010 : st.mode & 0o001;
      if (!through) blocked.push(d);
    } catch {
      // not there (yet)
    }
    if (d === dirname(d)) break;
  }
  return blocked.reverse();
}

/**
 * Why `user` (when given: the platform is root and sandboxes run as that user) cannot read the
 * directory `dir` and search it, or undefined when it can: what bubblewrap needs to bind it.
 * `blocked`: the directory is there but its mode bits, or those of one above it, keep `user` out.
 */
export function unreadableDir(
  dir: string,
  user: { uid: number; gid: number } | undefined,
): { blocked: boolean; detail: string } | undefined {
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    return { blocked: false, detail: `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  }
  if (!st.isDirectory()) return { blocked: false, detail: "is not a directory" };
  if (!user) return undefined;
  const own = st.uid === user.uid ? (st.mode >> 6) & 5 : st.gid === user.gid ? (st.mode >> 3) & 5 : st.mode & 5;
  const blocked = [...blockedAncestors(dir, user), ...(own === 5 ? [] : [dir])];
  return blocked.length
    ? { blocked: true, detail: `cannot be read by uid ${user.uid} (blocked at ${blocked.join(", ")})` }
    : undefined;
}

export class HostSandbox {
  private runtime: Runtime | undefined;
  private works = 0;
  /** Host ids of the process (undefined when the platform is not root: bubblewrap maps the platform's own). */
  readonly runAs: { uid: number; gid: number } | undefined;

  constructor(private readonly opts: HostSandboxOptions) {
    this.runAs = process.getuid?.() === 0 ? { uid: opts.uid ?? 65534, gid: opts.gid ?? 65534 } : undefined;
  }

  /** The runtime directory (made on first use), where callers keep what they bind in. */
  get dir(): string {
    return this.prepare().dir;
  }

  /** A new empty directory the sandbox user owns, for one run's output; the caller removes it. */
  workDir(name = `w${++this.works}`): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new Error(`not a work directory name: ${JSON.stringify(name)}`);
    const d = join(this.prepare().work, name);
    mkdirSync(d, { mode: 0o700 });
    if (this.runAs) chownSync(d, this.runAs.uid, this.runAs.gid);
    return d;
  }

  /** Removes the runtime directory and closes the cgroups. */
  async stop(): Promise<void> {
    const rt = this.runtime;
    this.runtime = undefined;
    if (!rt) return;
    await rt.cgroups?.close();
    rmSync(rt.dir, { recursive: true, force: true });
  }

  private prepare(): Runtime {
    if (this.runtime) return this.runtime;
    const table = syscallTableFor();
    if (!table) {
      // Both users of this sandbox do package work: the code callers already know for it.
      throw new HexrError(
        "sandbox.packages_unsupported",
        `no seccomp filter for ${process.arch}: cannot confine the ${this.opts.purpose} here`,
        { kind: "failed_precondition" },
      );
    }
    const parent = this.opts.runtimeParent ?? defaultRuntimeParent();
    removeStaleRuntimeDirs(parent, this.opts.prefix);
    const dir = mkdtempSync(join(parent, `${this.opts.prefix}${process.pid}-`));
    chmodSync(dir, 0o755);
    const etc = join(dir, "etc");
    // No resolver: a process that needs the network gets a proxy that resolves names on the host.
    writeSyntheticEtc(etc, { dns: false });
    mkdirSync(join(etc, "ssl", "certs"), { recursive: true, mode: 0o755 }); // mount point for the CA certificates
    const work = join(dir, "jobs");
    mkdirSync(work, { mode: 0o755 });
    const cg = openCgroups();
    if (!cg.ok) this.opts.log?.warn({ detail: cg.detail }, `the ${this.opts.purpose} runs without a cgroup (rlimits only)`);
    else {
      cg.manager.onLeftBehind = (c) =>
        this.opts.log?.warn(
          { cgroup: c.name, dirs: c.dirs, pids: c.pids },
          `a ${this.opts.purpose}'s cgroup could not be emptied and removed; it stays until a later platform's cleanup`,
        );
    }
    this.runtime = { dir, cgroups: cg.ok ? cg.manager : undefined, etc, work, seccomp: buildSeccompProgram(table) };
    return this.runtime;
  }

  async run(req: HostRun): Promise<HostRunResult> {
    const rt = this.prepare();
    const args = [
      ...confinedRootArgs(rt.etc),
      ...(req.caCertificates ? ["--ro-bind-try", "/etc/ssl/certs", "/etc/ssl/certs"] : []),
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "--size",
      String(this.opts.tmpBytes ?? 512 * 1024 * 1024),
      "--tmpfs",
      "/tmp",
      ...(req.binds ?? []).flatMap((b) => [b.writable ? "--bind" : "--ro-bind", b.source, b.dest]),
      "--chdir",
      "/tmp",
      "--remount-ro",
      "/",
      "--clearenv",
      ...Object.entries({ PATH: "/usr/bin:/bin", HOME: "/tmp", TMPDIR: "/tmp", LANG: "C.UTF-8", ...req.env }).flatMap(
        ([k, v]) => ["--setenv", k, v],
      ),
      "--seccomp",
      "4",
      "--json-status-fd",
      "5",
      "--block-fd",
      "6",
    ];
    const maxFile = this.opts.maxFileBytes ?? 2 * 1024 * 1024 * 1024;
    const wrapper = `umask 022; ulimit -c 0; ulimit -n 1024; ulimit -f ${Math.floor(maxFile / 512)}; exec "$@"`;
    const bwrap = this.bwrap();
    const devNull = openSync("/dev/null", "r+");
    let child: NativeProcess;
    try {
      // Spawned without forking the platform; the child gets exactly these descriptors: 1-2 output,
      // 3 bwrap's options, 4 the seccomp program, 5 bwrap's status (the sandbox pid), 6 its block fd.
      child = new NativeProcess(bwrap, [bwrap, "--args", "3", "--", "/bin/sh", "-c", wrapper, "hexr", ...req.command], {
        fds: [
          { fd: devNull },
          "read",
          "read",
          { data: Buffer.from(args.map((a) => a + "\0").join("")) },
          { data: rt.seccomp },
          "read",
          "write",
        ],
        env: {},
        ...(this.runAs ? { runAs: this.runAs } : {}),
      });
    } catch (err) {
      closeSync(devNull);
      throw err;
    }
    void child.started.then(
      () => closeSync(devNull),
      () => closeSync(devNull),
    );
    let log = "";
    const collect = (d: Buffer | string) => {
      log = (log + d.toString()).slice(-MAX_LOG);
    };
    const pipes = child.pipes;
    pipes[1]!.on("data", collect);
    pipes[2]!.on("data", collect);
    // bwrap reports the sandbox's pid, then waits on fd 6 until it is in its cgroup.
    let cgroup: ExecCgroup | undefined;
    let createFailed = false;
    try {
      cgroup = await rt.cgroups?.create(this.opts.limits ?? DEFAULT_LIMITS);
    } catch (err) {
      collect(`cannot create a cgroup for the ${this.opts.purpose}: ${(err as Error).message}\n`);
      createFailed = true;
    }
    let status = "";
    const killer = new SandboxKill(child);
    /** Kills the sandbox (see SandboxKill) and what is in the cgroup. */
    const kill = () => {
      killer.kill();
      void cgroup?.killAll();
    };
    pipes[5]!.setEncoding("utf8");
    pipes[5]!.on("data", (chunk: string) => {
      if (killer.pid !== undefined) return;
      status += chunk;
      const pid = /"child-pid"\s*:\s*(\d+)/.exec(status)?.[1];
      if (!pid) return;
      if (!killer.reported(Number(pid))) return void cgroup?.killAll(); // killed before it was reported: killed now
      (cgroup ? cgroup.add(Number(pid)) : Promise.resolve()).then(
        () => pipes[6]!.end("x"),
        (err: unknown) => {
          collect(`cannot move the ${this.opts.purpose} into its cgroup: ${(err as Error).message}\n`);
          kill();
        },
      );
    });

    if (createFailed) kill();

    return new Promise((resolve) => {
      let timedOut = false;
      let aborted = false;
      const timer = setTimeout(() => {
        timedOut = true;
        kill();
      }, req.timeoutMs);
      const onAbort = () => {
        aborted = true;
        kill();
      };
      req.signal?.addEventListener("abort", onAbort, { once: true });
      if (req.signal?.aborted) onAbort();
      const done = (code: number | null) => {
        clearTimeout(timer);
        killer.done();
        req.signal?.removeEventListener("abort", onAbort);
        const oomKilled = (cgroup?.oomKills() ?? 0) > 0;
        void (cgroup?.destroy() ?? Promise.resolve()).finally(() =>
          resolve({ exitCode: code, timedOut, aborted, oomKilled, log }),
        );
      };
      child.exited.then(done, (err: unknown) => {
        collect(`${(err as Error).message}\n`);
        done(null);
      });
    });
  }

  /** bubblewrap's absolute path (the native spawn does not search PATH); the name itself when it is not found, for the error. */
  bwrap(): string {
    const name = this.opts.bwrapPath ?? "bwrap";
    return resolveExecutable(name) ?? name;
  }
}
