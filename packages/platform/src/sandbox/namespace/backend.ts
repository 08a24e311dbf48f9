/**
 * The namespace backend: each execution is a fresh sandbox with every namespace unshared (network:
 * loopback only), a read-only root made of /usr and its merged-/usr symlinks, a synthetic /etc,
 * private size-capped tmpfs /tmp and /dev/shm, uid 65534 inside and out, no capabilities,
 * no-new-privs, a seccomp filter, a fresh cgroup (memory, pids, CPU quota) and rlimits. A timeout
 * SIGKILLs every process of the sandbox.
 *
 * Sandboxes are set up ahead of time (a small warm pool per kind) and wait with only their first
 * process started: the runner, or in a python sandbox an interpreter in its stub (neither reads
 * anything of a job before the release); an execution takes one, writes its job into the sandbox's
 * read-only job directory, releases it, and the sandbox is destroyed when the code ends. Each
 * sandbox serves one execution. They are made two ways (./sandbox.ts):
 *   - a bubblewrap process per sandbox;
 *   - by the fork server (./zygote.ts): a zygote process, started once, forks each sandbox into fresh
 *     namespaces of the same kind. Python jobs an interpreter can run as started get a copy of a
 *     per-tenant zygote interpreter; the others (shell, javascript, python that needs a new
 *     interpreter) a copy of the small hexr-zygote program that execs the runner, so no copy keeps
 *     anything of another's memory. Without a working fork server (disabled, not built, its probes
 *     failed, or it failed three times in a row) every sandbox is a bubblewrap process.
 */

import { HexrError, type SandboxLanguage } from "@hexr/core";
import { execFile } from "node:child_process";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  renameSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "pino";
import { SANDBOX_INIT_PATH, ZYGOTE_EXECUTABLE_PATH, ZYGOTE_LIBRARY_PATH } from "../../native.js";
import { openCgroups, type CgroupManager } from "../cgroup.js";
import type {
  BackendCheck,
  BackendExecRequest,
  BackendExecResult,
  BackendHealth,
  SandboxBackend,
  SandboxLimits,
} from "../types.js";
import {
  confinedRootArgs,
  prepareRuntimeDir,
  pythonStub,
  SANDBOX_PATHS,
  SANDBOX_INIT,
  ZYGOTE_EXECUTABLE,
  ZYGOTE_LIBRARY,
  ZYGOTE_PATHS,
  zygoteArgv,
  zygoteScript,
  type RuntimeDir,
} from "./runtime-dir.js";
import { jobMode } from "../job-mode.js";
import { buildSeccompProgram, syscallTableFor } from "./seccomp.js";
import { BwrapSandbox, isPythonStub, type PooledSandbox, type SandboxKind } from "./sandbox.js";
import { ForkedSandbox, Zygote } from "./zygote.js";
import { confinementProbeRequest, isConfined, pythonConfinementProbeRequest } from "../confinement.js";
import { resolveExecutable, unreadableDir } from "../host-sandbox.js";

const execFileP = promisify(execFile);

export interface NamespaceBackendOptions {
  limits: SandboxLimits;
  bwrapPath?: string;
  /** Host uid/gid of the sandbox when the platform runs as root (else the platform's own). */
  uid?: number;
  gid?: number;
  cgroups?: "required" | "optional";
  /** Sandboxes kept set up and waiting; 0 = set each one up on demand. */
  warmPool?: number;
  /** Package directories bound read-only into every sandbox (used only when an execution asks for packages). */
  packageDirs?: { python?: string; javascript?: string };
  /** Where the runtime directory goes (default: the OS temp dir). */
  runtimeParent?: string;
  /** The fork server (./zygote.ts); `false` = every sandbox is a bubblewrap process. */
  forkServer?: boolean | ForkServerOptions;
  log?: Logger;
  /** Monotonic milliseconds. */
  now?: () => number;
}

export interface ForkServerOptions {
  /** Sandboxes one zygote makes before a new one replaces it (its copies share its hash seed and address layout). */
  maxForks?: number;
  /** A zygote (a tenant's, or the runner's) and its warm sandboxes go after this long without an execution. */
  idleMs?: number;
  /** Zygotes alive at once; beyond, the least recently used goes. */
  maxZygotes?: number;
}

const FORK_SERVER_DEFAULTS: Required<ForkServerOptions> = { maxForks: 1000, idleMs: 5 * 60_000, maxZygotes: 16 };

/** Failed forked sandboxes in a row after which every sandbox is a bubblewrap process again. */
const FORK_FAILURES_TO_DISABLE = 3;

/** Interpreters per language, as the sandbox sees them (they come from the host's /usr). */
export const INTERPRETERS: Record<SandboxLanguage, string> = {
  python: "/usr/bin/python3",
  shell: "/bin/sh",
  javascript: "/usr/bin/node",
};

const BASE_ENV: Record<string, string> = {
  PATH: "/usr/local/bin:/usr/bin:/bin",
  HOME: "/tmp",
  TMPDIR: "/tmp",
  USER: "nobody",
  LANG: "C.UTF-8",
  // Output written before a timeout kill must not die in a buffer.
  PYTHONUNBUFFERED: "1",
  PYTHONDONTWRITEBYTECODE: "1",
};

/** `'…'` quoting for the generated job.sh (single quotes cannot be escaped inside single quotes). */
export function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

/**
 * Pool keys: a kind, and for forked python sandboxes the tenant whose zygote makes them
 * (`forked:<tenant>`); `forked-generic` sandboxes all come from the one runner zygote.
 */
type PoolKey = "python" | "generic" | "forked-generic" | `forked:${string}`;

/** Zygotes: a python interpreter per tenant (`python:<tenant>`), and the runner's (hexr-zygote). */
type ZygoteKey = `python:${string}` | "generic";

function kindOf(key: PoolKey): SandboxKind {
  return key.startsWith("forked:") ? "forked" : (key as "python" | "generic" | "forked-generic");
}

function isForked(key: PoolKey): key is "forked-generic" | `forked:${string}` {
  return key === "forked-generic" || key.startsWith("forked:");
}

/** The zygote that makes a forked pool's sandboxes, and back. */
function zygoteKeyOf(pool: "forked-generic" | `forked:${string}`): ZygoteKey {
  return pool === "forked-generic" ? "generic" : `python:${pool.slice("forked:".length)}`;
}

function poolKeyOf(zygote: ZygoteKey): PoolKey {
  return zygote === "generic" ? "forked-generic" : `forked:${zygote.slice("python:".length)}`;
}

export class NamespaceBackend implements SandboxBackend {
  readonly name = "namespace" as const;
  readonly installsPackages = true;
  private readonly opts: Required<Omit<NamespaceBackendOptions, "log" | "runtimeParent" | "packageDirs" | "forkServer">> &
    Pick<NamespaceBackendOptions, "log" | "runtimeParent" | "packageDirs">;
  /** The fork server's settings; undefined when it is disabled by configuration. */
  private readonly forkOpts: Required<ForkServerOptions> | undefined;
  private bwrap: string | undefined;
  private seccomp: Buffer | undefined;
  private runtime: RuntimeDir | undefined;
  private cgroups: CgroupManager | undefined;
  private devNull: number | undefined;
  private staticArgs: string[] = [];
  /** bwrap's options for a zygote (its command: the python interpreter on its main.py, or hexr-zygote). */
  private zygoteArgs: string[] = [];
  /** main.py of a python sandbox until its job comes. */
  private stub = "";
  /** main.py of a python zygote. */
  private zygoteMain = "";
  /** The runner's zygote: hexr-zygote and its arguments. */
  private runnerZygoteCommand: string[] = [];
  private state: BackendHealth = { backend: "namespace", available: false, checks: [], summary: "not started" };
  private readonly cleanups = new Set<Promise<void>>();
  /** Warm sandboxes per pool; a pool is kept warm once an execution has used it. */
  private readonly pools = new Map<PoolKey, PooledSandbox[]>();
  /** The names written into each sandbox's job directory, removed with it. */
  private readonly jobFiles = new WeakMap<PooledSandbox, Set<string>>();
  private readonly wanted = new Set<PoolKey>();
  private seq = 0;
  /** The fork server's zygotes: one python interpreter per tenant ("" for the operator's), and the runner's. */
  private readonly zygotes = new Map<ZygoteKey, Zygote>();
  /** Zygotes still running, retired ones included (stop() kills them). */
  private readonly allZygotes = new Set<Zygote>();
  /** Why sandboxes do not fork from a zygote (undefined: they do, once started). */
  private forkOff: string | undefined = "not started";
  private forkFailures = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  /** True from the probe on, while the backend is started and the probe did not fail. */
  private usable = false;
  /** Package directories left out of the sandboxes, and why (the sandbox user cannot reach them). */
  private unboundDirs: Partial<Record<"python" | "javascript", string>> = {};

  constructor(opts: NamespaceBackendOptions) {
    const { forkServer = true, ...rest } = opts;
    this.opts = {
      bwrapPath: "bwrap",
      uid: 65534,
      gid: 65534,
      cgroups: "required",
      warmPool: 2,
      now: () => performance.now(),
      ...rest,
    };
    this.forkOpts = forkServer === false ? undefined : { ...FORK_SERVER_DEFAULTS, ...(forkServer === true ? {} : forkServer) };
  }

  /** Whether sandboxes fork from zygotes now, and why not (tests, doctor). */
  forkServerState(): { active: boolean; reason?: string; zygotes: number } {
    return {
      active: this.forkOff === undefined,
      ...(this.forkOff ? { reason: this.forkOff } : {}),
      zygotes: this.allZygotes.size,
    };
  }

  health(): BackendHealth {
    return this.state;
  }

  /** Languages whose interpreter exists on this machine. */
  languages(): SandboxLanguage[] {
    return (Object.keys(INTERPRETERS) as SandboxLanguage[]).filter((l) => existsSync(INTERPRETERS[l]));
  }

  /** Where per-execution cgroups are made (tests, doctor). */
  cgroupInfo(): { version: string; parents: readonly string[] } | undefined {
    return this.cgroups ? { version: this.cgroups.version, parents: this.cgroups.parents } : undefined;
  }

  async start(): Promise<BackendHealth> {
    await this.stop();
    const checks: BackendCheck[] = [];
    const fail = (summary: string): BackendHealth => {
      this.usable = false;
      return (this.state = { backend: "namespace", available: false, checks, summary });
    };

    if (process.platform !== "linux") {
      checks.push({ name: "linux", ok: false, severity: "error", detail: `namespaces need Linux (this is ${process.platform})` });
      return fail("the namespace backend needs Linux");
    }
    this.bwrap = resolveExecutable(this.opts.bwrapPath);
    if (!this.bwrap) {
      checks.push({
        name: "bubblewrap",
        ok: false,
        severity: "error",
        detail: `${this.opts.bwrapPath} not found: install it (apt-get install bubblewrap)`,
      });
      return fail("bubblewrap is not installed (apt-get install bubblewrap)");
    }
    try {
      const { stdout } = await execFileP(this.bwrap, ["--version"], { timeout: 5000 });
      checks.push({ name: "bubblewrap", ok: true, severity: "error", detail: `${stdout.trim()} at ${this.bwrap}` });
    } catch (err) {
      checks.push({
        name: "bubblewrap",
        ok: false,
        severity: "error",
        detail: `${this.bwrap} --version failed: ${(err as Error).message}`,
      });
      return fail("bubblewrap does not run");
    }

    const table = syscallTableFor();
    if (!table) {
      checks.push({ name: "seccomp", ok: false, severity: "error", detail: `no syscall table for architecture ${process.arch}` });
      return fail(`the seccomp filter is not available for ${process.arch}`);
    }
    this.seccomp = buildSeccompProgram(table);
    this.unboundDirs = this.checkPackageDirs();

    const { limits } = this.opts;
    const rlimits = { nofile: 1024, nproc: limits.pids, fileSizeBytes: limits.tmpfsBytes + 1024 * 1024, cpuSeconds: 2 * 3600 };
    this.runtime = prepareRuntimeDir({
      ...(this.opts.runtimeParent ? { parent: this.opts.runtimeParent } : {}),
      limits: rlimits,
    });
    this.stub = pythonStub(rlimits);
    this.zygoteMain = zygoteScript(rlimits, { uid: 65534, gid: 65534 });
    this.runnerZygoteCommand = zygoteArgv(rlimits, { uid: 65534, gid: 65534 });
    this.devNull = openSync("/dev/null", "r");

    const cg = openCgroups();
    if (cg.ok) {
      this.cgroups = cg.manager;
      this.cgroups.onLeftBehind = (c) =>
        this.opts.log?.warn(
          { cgroup: c.name, dirs: c.dirs, pids: c.pids },
          "a sandbox's cgroup could not be emptied and removed; it stays until a later platform's cleanup",
        );
      checks.push({ name: "cgroups", ok: true, severity: "error", detail: cg.detail });
    } else if (this.opts.cgroups === "required") {
      checks.push({
        name: "cgroups",
        ok: false,
        severity: "error",
        detail: `${cg.detail}; without a cgroup there is no memory/pids/CPU limit (set sandbox.namespace.cgroups=optional to run with rlimits only)`,
      });
      return fail("no writable cgroup hierarchy for per-execution limits");
    } else {
      checks.push({
        name: "cgroups",
        ok: false,
        severity: "warning",
        detail: `${cg.detail}; running DEGRADED with rlimits only (no memory or CPU limit)`,
      });
    }

    this.staticArgs = this.buildStaticArgs();
    this.usable = true;

    // A real sandboxed run proves user namespaces, mounts, seccomp and the cgroup all work here.
    try {
      const probe = await this.exec(confinementProbeRequest(15_000));
      if (!isConfined(probe)) {
        checks.push({
          name: "probe",
          ok: false,
          severity: "error",
          detail: `a probe execution did not come up confined (exit ${probe.exitCode}): ${(probe.stderr || probe.stdout).slice(0, 300)}`,
        });
        return fail("the sandbox probe was not confined as required");
      }
      checks.push({
        name: "probe",
        ok: true,
        severity: "error",
        detail: "user/pid/net/ipc/uts/cgroup/mount namespaces, uid 65534, no capabilities, no-new-privs, seccomp filter active",
      });
    } catch (err) {
      checks.push({ name: "probe", ok: false, severity: "error", detail: (err as Error).message });
      return fail(`a probe execution failed: ${(err as Error).message}`);
    }

    this.wanted.clear(); // the probe's kind is not one executions asked for
    const langs = this.languages();
    for (const l of Object.keys(INTERPRETERS) as SandboxLanguage[]) {
      const there = langs.includes(l);
      checks.push({
        name: `language:${l}`,
        ok: there,
        severity: "warning",
        detail: there ? INTERPRETERS[l] : `${INTERPRETERS[l]} is missing, so ${l} executions fail`,
      });
    }
    checks.push(await this.startForkServer());
    if (this.forkOpts && this.forkOff === undefined) {
      this.idleTimer = setInterval(() => this.evictIdle(), Math.min(30_000, this.forkOpts.idleMs)).unref();
    }
    // The warm pool fills after the first execution: platforms that never execute pay nothing.
    this.state = {
      backend: "namespace",
      available: true,
      checks,
      summary: `bubblewrap sandbox ready (${this.cgroups ? `cgroup ${this.cgroups.version}` : "DEGRADED: no cgroup"}; ${langs.join(", ")}${
        this.forkOff === undefined ? "; fork server" : ""
      })`,
    };
    return this.state;
  }

  /**
   * Prepares the fork server and proves it with two real executions forked from its zygotes (not
   * fallbacks), a python one and a shell one, each checked as confined as a bubblewrap sandbox. The
   * zygotes go afterwards: each starts again with the first execution that needs it. A failure leaves
   * every execution to bubblewrap sandboxes (a warning).
   */
  private async startForkServer(): Promise<BackendCheck> {
    const name = "fork-server";
    const off = (why: string, ok = false): BackendCheck => {
      this.forkOff = why;
      return { name, ok, severity: "warning", detail: `fork server ${why}; every sandbox is a bubblewrap process` };
    };
    if (!this.forkOpts) return off("disabled (sandbox.namespace.forkServer: false)", true);
    if (!existsSync(INTERPRETERS.python)) return off(`unavailable: ${INTERPRETERS.python} is missing`);
    for (const built of [ZYGOTE_LIBRARY_PATH, ZYGOTE_EXECUTABLE_PATH, SANDBOX_INIT_PATH]) {
      if (!existsSync(built)) {
        return off(`unavailable: ${built} is not built (run 'npm run build:native -w @hexr/platform'; needs gcc)`);
      }
    }
    const rt = this.runtime!;
    for (const [from, file, mode] of [
      [ZYGOTE_LIBRARY_PATH, ZYGOTE_LIBRARY, 0o644],
      [ZYGOTE_EXECUTABLE_PATH, ZYGOTE_EXECUTABLE, 0o755],
      // Executable but not readable: the kernel makes what execs it non-dumpable from the start.
      [SANDBOX_INIT_PATH, SANDBOX_INIT, 0o111],
    ] as const) {
      copyFileSync(from, join(rt.zygote, file));
      chmodSync(join(rt.zygote, file), mode);
    }
    writeFileSync(join(rt.zygote, `main.${EXT.python}`), this.zygoteMain, { mode: 0o644 });
    this.zygoteArgs = this.buildZygoteArgs();
    this.forkOff = undefined;
    this.forkFailures = 0;
    const probes: Array<[string, PoolKey, BackendExecRequest]> = [
      ["python", "forked:", { ...pythonConfinementProbeRequest(15_000), tenant: "" }],
      ["runner", "forked-generic", confinementProbeRequest(15_000)],
    ];
    try {
      for (const [what, key, req] of probes) {
        const probe = await this.execIn(key, req, { fallback: false });
        if (!isConfined(probe)) {
          return off(
            `unavailable: its ${what} probe did not come up confined (exit ${probe.exitCode}): ${(probe.stderr || probe.stdout).slice(0, 300)}`,
          );
        }
      }
      return {
        name,
        ok: true,
        severity: "warning",
        detail:
          "sandboxes fork from zygotes into fresh namespaces: python executions from a per-tenant interpreter, the others from hexr-zygote, which execs the runner (probes: uid 65534, no capabilities, no-new-privs, seccomp filter active)",
      };
    } catch (err) {
      return off(`unavailable: its probe failed: ${(err as Error).message}`);
    } finally {
      for (const key of [...this.zygotes.keys()]) this.dropZygote(key);
      this.wanted.clear();
    }
  }

  private buildStaticArgs(ids?: { uid: number; gid: number }): string[] {
    const { limits } = this.opts;
    const rt = this.runtime!;
    const args = [
      ...confinedRootArgs(rt.etc, ids),
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "--size",
      String(Math.min(limits.tmpfsBytes, 64 * 1024 * 1024)),
      "--tmpfs",
      "/dev/shm",
      "--remount-ro",
      "/dev",
      "--size",
      String(limits.tmpfsBytes),
      "--tmpfs",
      "/tmp",
      "--ro-bind",
      rt.runner,
      SANDBOX_PATHS.runner,
    ];
    const dirs = this.opts.packageDirs ?? {};
    if (dirs.python && !this.unboundDirs.python) args.push("--ro-bind-try", dirs.python, SANDBOX_PATHS.packages.python);
    if (dirs.javascript && !this.unboundDirs.javascript) {
      args.push("--ro-bind-try", dirs.javascript, SANDBOX_PATHS.packages.javascript);
    }
    return args;
  }

  /**
   * A zygote's bwrap options: the sandboxes' root and mounts, but uid 0 of its user namespace with
   * every capability there (it makes each sandbox's namespaces and mounts) and no seccomp filter (it
   * applies it to each sandbox, after the setup). Its /tmp holds the job directories (read-only) and
   * the directory a sandbox stages its /proc in; /run/hexr/job holds its main.py and the library.
   */
  private buildZygoteArgs(): string[] {
    const rt = this.runtime!;
    return [
      ...this.buildStaticArgs({ uid: 0, gid: 0 }),
      "--dir",
      ZYGOTE_PATHS.procStage,
      "--ro-bind",
      rt.jobs,
      ZYGOTE_PATHS.jobs,
      ...sandboxTail(rt.zygote),
      // Every symbol bound as the zygote starts rather than on first use in each copy (the dynamic
      // linker's write to a page the copy shares with the zygote). The zygote unsets it before serving.
      "--setenv",
      "LD_BIND_NOW",
      "1",
      "--cap-add",
      "ALL",
    ];
  }

  /** A zygote: the live one, unless it has made `maxForks` sandboxes or died (then a new one). */
  private zygoteFor(key: ZygoteKey): Zygote {
    const fo = this.forkOpts!;
    const current = this.zygotes.get(key);
    if (current && current.usable && current.forks < fo.maxForks) return current;
    if (current) this.retireZygote(key, current);
    while (this.zygotes.size >= fo.maxZygotes) {
      const [lru] = [...this.zygotes.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed)[0]!;
      this.dropZygote(lru);
    }
    const runAs = process.getuid?.() === 0 ? { uid: this.opts.uid, gid: this.opts.gid } : undefined;
    const { limits } = this.opts;
    const z = new Zygote({
      key,
      bwrap: this.bwrap!,
      args: this.zygoteArgs,
      command: key === "generic" ? this.runnerZygoteCommand : [INTERPRETERS.python, SANDBOX_PATHS.code.python],
      seccomp: this.seccomp!,
      devNull: this.devNull!,
      cgroups: this.cgroups,
      limits: { ...limits, pids: Math.max(limits.pids, 64) },
      runAs,
    });
    this.zygotes.set(key, z);
    this.allZygotes.add(z);
    this.track(
      z.ended.then(async () => {
        this.allZygotes.delete(z);
        if (this.zygotes.get(key) === z) this.zygotes.delete(key);
        if (!z.retired) {
          this.opts.log?.warn(
            { zygote: key, forks: z.forks, diagnostics: z.diagnostics().slice(-1000) },
            "a zygote of the fork server exited",
          );
        }
        await (await z.cgroupMade.catch(() => undefined))?.destroy();
      }),
    );
    return z;
  }

  /** No more sandboxes from this zygote; those it made run to their end. */
  private retireZygote(key: ZygoteKey, z: Zygote): void {
    z.retire();
    if (this.zygotes.get(key) === z) this.zygotes.delete(key);
  }

  /** A zygote and its warm sandboxes go (idle, evicted, or the probe's). */
  private dropZygote(key: ZygoteKey): void {
    const z = this.zygotes.get(key);
    if (z) this.retireZygote(key, z);
    const pool = poolKeyOf(key);
    this.wanted.delete(pool);
    for (const sb of this.pools.get(pool)?.splice(0) ?? []) sb.kill();
  }

  /** Zygotes not asked for a sandbox within idleMs go. */
  private evictIdle(): void {
    const idleMs = this.forkOpts?.idleMs ?? Infinity;
    const now = performance.now();
    for (const [key, z] of [...this.zygotes]) if (now - z.lastUsed > idleMs) this.dropZygote(key);
  }

  /** A forked sandbox failed to come up: after a few in a row, sandboxes stop forking. */
  private forkFailed(err: unknown): void {
    this.forkFailures++;
    const why = (err as Error).message;
    this.opts.log?.warn(
      { err: why, failures: this.forkFailures },
      "a forked sandbox failed to start; this execution runs in a bubblewrap sandbox",
    );
    if (this.forkFailures < FORK_FAILURES_TO_DISABLE || this.forkOff !== undefined) return;
    this.forkOff = `disabled after ${this.forkFailures} failed sandboxes in a row (last: ${why})`;
    this.opts.log?.error({ reason: this.forkOff }, "fork server disabled; every sandbox is a bubblewrap process");
    for (const key of [...this.zygotes.keys()]) this.dropZygote(key);
  }

  private spawnSandbox(key: PoolKey, background = false): PooledSandbox {
    const kind = kindOf(key);
    const id = `s${++this.seq}`;
    const jobDir = join(this.runtime!.jobs, id);
    mkdirSync(jobDir, { mode: 0o755 });
    const written = new Set<string>();
    const { limits } = this.opts;
    let sb: PooledSandbox;
    if (isForked(key)) {
      const sizes = { tmpfsBytes: limits.tmpfsBytes, shmBytes: Math.min(limits.tmpfsBytes, 64 * 1024 * 1024) };
      const zygote = this.zygoteFor(zygoteKeyOf(key));
      sb = new ForkedSandbox({
        zygote,
        kind: key === "forked-generic" ? "forked-generic" : "forked",
        id,
        jobDir,
        cgroups: this.cgroups,
        limits,
        sizes,
        background,
      });
    } else {
      if (kind === "python") {
        writeFileSync(join(jobDir, `main.${EXT.python}`), this.stub, { mode: 0o644 });
        written.add(`main.${EXT.python}`);
      }
      const args = [...this.staticArgs, ...sandboxTail(jobDir), "--seccomp", "6"];
      const runAs = process.getuid?.() === 0 ? { uid: this.opts.uid, gid: this.opts.gid } : undefined;
      // A python sandbox starts its interpreter at once (the stub waits); others start the runner.
      const command = kind === "python" ? [INTERPRETERS.python, SANDBOX_PATHS.code.python] : ["/bin/sh", SANDBOX_PATHS.runner];
      sb = new BwrapSandbox({
        kind: kind === "python" ? "python" : "generic",
        bwrap: this.bwrap!,
        args,
        command,
        seccomp: this.seccomp!,
        devNull: this.devNull!,
        jobDir,
        cgroups: this.cgroups,
        limits,
        runAs,
        background,
      });
    }
    // Whatever happens to it, a sandbox's cgroup and job directory go when its processes are gone.
    this.track(
      sb.exited.then(async () => {
        try {
          await (await sb.cgroupMade.catch(() => undefined))?.destroy();
        } finally {
          await removeJobDir(jobDir, written);
        }
      }),
    );
    this.jobFiles.set(sb, written);
    return sb;
  }

  private refill(): void {
    if (!this.usable || !this.state.available) return; // not during the probes: a doctor run needs no pool
    for (const key of this.wanted) {
      if (isForked(key) && this.forkOff !== undefined) continue;
      let pool = this.pools.get(key);
      if (!pool) this.pools.set(key, (pool = []));
      for (let i = pool.length - 1; i >= 0; i--) if (!pool[i]!.alive) pool.splice(i, 1);
      while (pool.length < this.opts.warmPool) {
        let sb: PooledSandbox;
        try {
          // Set up at the lowest CPU weight: running executions and the platform go first.
          sb = this.spawnSandbox(key, true);
        } catch (err) {
          this.opts.log?.warn({ err }, "cannot set up a warm sandbox");
          return;
        }
        const list = pool;
        list.push(sb);
        sb.ended.then(
          () => {
            const i = list.indexOf(sb);
            if (i !== -1) list.splice(i, 1);
          },
          () => undefined,
        );
      }
    }
  }

  private async take(key: PoolKey): Promise<PooledSandbox> {
    for (;;) {
      const sb = this.pools.get(key)?.shift() ?? this.spawnSandbox(key);
      try {
        // A warm sandbox gets its CPU weight back before its job runs (and before its setup, if that
        // is still under way: the execution now waits for it).
        const weight = sb
          .prioritize()
          .catch((err: unknown) =>
            this.opts.log?.warn({ err }, "cannot give a warm sandbox its CPU weight back; it runs at the lowest"),
          );
        await Promise.all([sb.ready, weight]);
      } catch (err) {
        sb.kill();
        throw err;
      }
      if (sb.alive) return sb;
    }
  }

  /**
   * While the fork server works, python jobs that a running interpreter can take go to the tenant's
   * zygote, the others to the runner's.
   */
  private poolKey(req: BackendExecRequest): PoolKey {
    const kind = kindFor(req);
    if (this.forkOff !== undefined) return kind;
    return kind === "python" ? `forked:${req.tenant ?? ""}` : "forked-generic";
  }

  /**
   * Package directories the sandbox user cannot reach are left out of the sandboxes: bubblewrap
   * would refuse every sandbox on such a bind (`--ro-bind-try` forgives only a missing source), so
   * one misplaced directory would stop executions that ask for no packages at all.
   */
  private checkPackageDirs(): Partial<Record<"python" | "javascript", string>> {
    const user = process.getuid?.() === 0 ? { uid: this.opts.uid, gid: this.opts.gid } : undefined;
    const out: Partial<Record<"python" | "javascript", string>> = {};
    for (const language of ["python", "javascript"] as const) {
      const dir = this.opts.packageDirs?.[language];
      const why = dir && user ? unreadableDir(dir, user) : undefined;
      // A directory that is not there yet is bound when it is (bwrap skips a missing source).
      if (!dir || !why?.blocked) continue;
      out[language] =
        `the ${language === "python" ? "python" : "npm"} package directory ${dir} ${why.detail}, the user sandboxes run as: make the directories on the way readable and searchable by others (0755) or move it`;
      this.opts.log?.warn({ dir }, `${out[language]}; executions with ${language} packages from it will fail`);
    }
    return out;
  }

  async exec(req: BackendExecRequest): Promise<BackendExecResult> {
    return this.execIn(this.poolKey(req), req, { fallback: true });
  }

  /**
   * Runs `req` in a sandbox of pool `key`. A forked sandbox that fails to come up is counted against
   * the fork server and, with `fallback`, the execution runs in a bubblewrap sandbox of its kind instead.
   */
  private async execIn(key: PoolKey, req: BackendExecRequest, opts: { fallback: boolean }): Promise<BackendExecResult> {
    if (!this.usable || !this.bwrap || !this.seccomp || !this.runtime) {
      throw new HexrError("sandbox.backend_unavailable", "the namespace backend is not started; run 'hexr sandbox doctor'", {
        kind: "unavailable",
      });
    }
    const unbound = req.install?.origin === "local" ? this.unboundDirs[req.install.language] : undefined;
    if (unbound) throw new HexrError("sandbox.package_install_failed", unbound, { kind: "failed_precondition" });
    let sb: PooledSandbox;
    try {
      if (req.signal?.aborted) throw new HexrError("sandbox.aborted", "the execution was cancelled", { kind: "unavailable" });
      try {
        sb = await this.take(key);
        if (isForked(key)) this.forkFailures = 0;
      } catch (err) {
        if (!isForked(key) || !opts.fallback || (err as HexrError).code === "sandbox.cgroup_failed") throw err;
        this.forkFailed(err);
        key = kindFor(req);
        sb = await this.take(key);
      }
    } catch (err) {
      discardFetched(req);
      throw err;
    }
    return this.runIn(key, sb, req);
  }

  private async runIn(key: PoolKey, sb: PooledSandbox, req: BackendExecRequest): Promise<BackendExecResult> {
    const { limits, now } = this.opts;
    try {
      const written = this.jobFiles.get(sb);
      for (const name of writeJob(sb.jobDir, req, sb.kind)) written?.add(name);
    } catch (err) {
      sb.kill();
      discardFetched(req);
      throw err;
    }

    let timedOut = false;
    let aborted = false;
    let failure: HexrError | undefined;
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number, fire: () => void) => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(fire, ms);
    };
    const onAbort = () => {
      aborted = true;
      sb.kill();
    };
    req.signal?.addEventListener("abort", onAbort, { once: true });

    const released = now();
    let codeStarted: number | undefined;
    if (req.install) {
      arm(req.installTimeoutMs, () => {
        failure = new HexrError(
          "sandbox.package_install_timeout",
          `installing packages took longer than ${fmtSeconds(req.installTimeoutMs)}`,
          {
            kind: "timeout",
          },
        );
        sb.kill();
      });
      sb.onRunner = () => {
        if (codeStarted === undefined && /^start$/m.test(sb.runnerText)) {
          codeStarted = now();
          arm(req.timeoutMs, () => {
            timedOut = true;
            sb.kill();
          });
        }
      };
    } else {
      codeStarted = released;
      arm(req.timeoutMs, () => {
        timedOut = true;
        sb.kill();
      });
    }
    sb.release(req.env);
    // With a warm sandbox of its kind still waiting, the next one is set up once this execution is
    // over and its result is on its way (setImmediate: after the reply), so the setup takes neither
    // CPU nor event-loop time from it; with none left, at once (after the release, so the two overlap).
    this.wanted.add(key);
    if (this.pools.get(key)?.some((p) => p.alive)) void sb.ended.then(() => setImmediate(() => this.refill()));
    else setImmediate(() => this.refill());

    const { exitDoc, spawnError } = await sb.ended;
    const end = now();
    if (timer) clearTimeout(timer);
    req.signal?.removeEventListener("abort", onAbort);
    const oomKills = sb.cgroup?.oomKills() ?? 0;

    if (failure) throw failure;
    if (aborted) throw new HexrError("sandbox.aborted", "the execution was cancelled", { kind: "unavailable" });
    const installFailed = /^install-failed (\d+)\n?([\s\S]*)$/m.exec(sb.runnerText);
    if (installFailed) throw installError(installFailed[2] ?? "");
    if (exitDoc === undefined && !timedOut) {
      const err = sb.setupFailure(spawnError);
      this.opts.log?.error({ id: req.id, err: err.message }, "bubblewrap failed to set up a sandbox");
      throw err;
    }
    let exitCode = exitDoc ?? 137;
    let errText = sb.stderr.text();
    const sep = () => (errText && !errText.endsWith("\n") ? "\n" : "");
    const oomKilled = oomKills > 0;
    if (timedOut) {
      exitCode = 124;
      errText += `${sep()}[hexr: execution killed after the timeout of ${fmtSeconds(req.timeoutMs)}]\n`;
    } else if (oomKilled) {
      if (exitCode !== 0) exitCode = 137;
      errText += `${sep()}[hexr: ${exitCode === 137 ? "execution killed" : "a process was killed"}: memory limit of ${Math.round(
        limits.memoryBytes / 1048576,
      )} MiB exceeded]\n`;
    }
    return {
      stdout: sb.stdout.text(),
      stderr: errText,
      exitCode,
      durationMs: Math.round((end - (codeStarted ?? released)) * 1000) / 1000,
      timedOut,
      oomKilled,
      truncated: { stdout: sb.stdout.truncated, stderr: sb.stderr.truncated },
    };
  }

  private track(p: Promise<void>): void {
    const tracked: Promise<void> = p
      .catch((err: unknown) => this.opts.log?.warn({ err }, "sandbox cleanup failed"))
      .finally(() => this.cleanups.delete(tracked));
    this.cleanups.add(tracked);
  }

  async stop(): Promise<void> {
    this.usable = false;
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    for (const pool of this.pools.values()) for (const sb of pool.splice(0)) sb.kill();
    this.pools.clear();
    this.wanted.clear();
    // A zygote's death ends every sandbox it made (they live in its pid namespace).
    for (const z of this.allZygotes) z.kill();
    this.zygotes.clear();
    this.forkOff = "not started";
    while (this.cleanups.size) await Promise.all([...this.cleanups]);
    await this.cgroups?.close();
    this.cgroups = undefined;
    this.runtime?.remove();
    this.runtime = undefined;
    if (this.devNull !== undefined) closeSync(this.devNull);
    this.devNull = undefined;
  }
}

/**
 * The end of every bubblewrap sandbox's options (a zygote's too): its job directory at /run/hexr/job,
 * /tmp as the working directory, the root read-only, the base environment only, and the spawn
 * protocol's status and block descriptors (./sandbox.ts).
 */
function sandboxTail(jobDir: string): string[] {
  return [
    "--ro-bind",
    jobDir,
    SANDBOX_PATHS.job,
    "--chdir",
    "/tmp",
    "--remount-ro",
    "/",
    "--clearenv",
    ...Object.entries(BASE_ENV).flatMap(([k, v]) => ["--setenv", k, v]),
    "--json-status-fd",
    "4",
    "--block-fd",
    "5",
  ];
}

/** Python jobs the interpreter can run as started (no packages, no startup variables) get a python sandbox. */
function kindFor(req: BackendExecRequest): "python" | "generic" {
  return jobMode(req.language, req.env, { installs: req.install !== undefined }) === "run" ? "python" : "generic";
}

/**
 * Writes the job into a sandbox's job directory before its release; returns the names written
 * (pkgs/ aside). A python stub (isPythonStub) reads only main.py: its variables come with
 * the go. The runner also reads job.sh and the package list.
 */
function writeJob(dir: string, req: BackendExecRequest, kind: SandboxKind): string[] {
  const opts = { mode: 0o644 } as const;
  const names: string[] = [];
  if (req.install?.origin === "fetched") adoptFetched(req.install.sourceDir, join(dir, "pkgs"));
  // Resolved inside the sandbox: ESM and CommonJS both look for node_modules beside main.js.
  if (req.language === "javascript") {
    symlinkSync(SANDBOX_PATHS.nodeModules, join(dir, "node_modules"));
    names.push("node_modules");
  }
  writeFileSync(join(dir, `main.${EXT[req.language]}`), req.code, opts);
  names.push(`main.${EXT[req.language]}`);
  if (isPythonStub(kind)) return names;
  if (req.install) {
    writeFileSync(join(dir, "packages"), req.install.items.map((i) => i + "\n").join(""), opts);
    names.push("packages");
  }
  // The environment is a function the runner calls last, right before it execs the interpreter.
  const env = Object.entries(req.env).map(([k, v]) => `export ${k}=${shellQuote(v)}\n`);
  writeFileSync(join(dir, "job.sh"), `hexr_lang=${req.language}\nhexr_env() {\n:\n${env.join("")}}\n`, opts);
  names.push("job.sh");
  return names;
}

/**
 * Removes a job directory: the names written into it and the directory, with a few synchronous
 * calls (a thread pool round trip each would cost more); anything else there (fetched packages in
 * pkgs/, any number of files) with a recursive removal on the thread pool.
 */
async function removeJobDir(dir: string, names: Iterable<string>): Promise<void> {
  try {
    for (const name of names) unlinkSync(join(dir, name));
    rmdirSync(dir);
  } catch {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Moves an execution's fetched packages into its job directory (seen read-only as
 * /run/hexr/job/pkgs); copied when they live on another filesystem. The sandbox user must read them.
 */
function adoptFetched(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    cpSync(from, to, { recursive: true });
    rmSync(from, { recursive: true, force: true });
  }
  chmodSync(to, 0o755);
}

/** A fetched package directory no sandbox took over (the execution failed before). */
function discardFetched(req: BackendExecRequest): void {
  if (req.install?.origin === "fetched") rmSync(req.install.sourceDir, { recursive: true, force: true });
}

const EXT: Record<SandboxLanguage, string> = { python: "py", shell: "sh", javascript: "js" };

function fmtSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}

function installError(log: string): HexrError {
  const missing = /No matching distribution found for ([^\s]+)/.exec(log);
  const tail = log.trim().split("\n").slice(-5).join("\n").slice(-1500);
  if (missing) {
    return new HexrError(
      "sandbox.package_unavailable",
      `package '${missing[1]}' cannot be had from the configured package directory:\n${tail}`,
      {
        kind: "failed_precondition",
        details: { package: missing[1] },
      },
    );
  }
  return new HexrError("sandbox.package_install_failed", `installing packages failed:\n${tail}`, { kind: "failed_precondition" });
}
