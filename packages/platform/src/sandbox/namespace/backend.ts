/**
 * The namespace backend: each execution is a fresh bubblewrap sandbox with every namespace
 * unshared (network: loopback only), a read-only root made of /usr and its merged-/usr symlinks,
 * a synthetic /etc, private size-capped tmpfs /tmp and /dev/shm, uid 65534 inside and out, no
 * capabilities, no-new-privs, a seccomp filter, a fresh cgroup (memory, pids, CPU quota) and
 * rlimits. A timeout SIGKILLs the sandbox's pid-namespace init and every process of its cgroup.
 *
 * Sandboxes are set up ahead of time (a small warm pool) and wait with only their first process
 * started: the runner, or in a python sandbox the interpreter in its stub (neither reads anything
 * of a job before the release); an execution takes one, writes its job into the
 * sandbox's read-only job directory, releases it, and the sandbox is destroyed when the code ends.
 * Each sandbox serves one execution.
 *
 * Spawn protocol: bwrap is started without forking the platform (./spawn.ts) and gets exactly
 * these descriptors: it reads its options from fd 3 (an in-memory file, so nothing shows in `ps`),
 * reports the sandbox pid on fd 4 (`--json-status-fd`) and then waits on fd 5 (`--block-fd`); by
 * then the platform has moved that pid into the sandbox's cgroup and unblocks it. fd 6 carries the
 * seccomp program. The first process then starts inside the finished sandbox, sets the rlimits,
 * waits for its go on fd 7 (the release; it closes fd 7 and reads the job), and reports on fd 8.
 */

import { HexrError, type SandboxLanguage } from "@hexr/core";
import { execFile } from "node:child_process";
import {
  chmodSync,
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Socket } from "node:net";
import { promisify } from "node:util";
import type { Logger } from "pino";
import { openCgroups, type CgroupManager, type ExecCgroup } from "../cgroup.js";
import { CappedOutput } from "../output.js";
import type {
  BackendCheck,
  BackendExecRequest,
  BackendExecResult,
  BackendHealth,
  SandboxBackend,
  SandboxLimits,
} from "../types.js";
import { confinedRootArgs, prepareRuntimeDir, pythonStub, SANDBOX_PATHS, type RuntimeDir } from "./runtime-dir.js";
import { jobMode } from "../job-mode.js";
import { buildSeccompProgram, syscallTableFor } from "./seccomp.js";
import { NativeProcess, SandboxKill } from "./spawn.js";
import { confinementProbeRequest, isConfined } from "../confinement.js";
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
  log?: Logger;
  /** Monotonic milliseconds. */
  now?: () => number;
}

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

interface StatusDoc {
  "child-pid"?: number;
  "exit-code"?: number;
}

/** A python sandbox's interpreter is started ahead and waits in a stub; a generic one waits in the runner. */
type SandboxKind = "python" | "generic";

/** What one sandbox reports when its process tree is gone. */
interface SandboxEnd {
  exitDoc: number | undefined;
  spawnError: Error | undefined;
}

/**
 * One sandbox, set up and blocked until `release`. Output collection starts at spawn so nothing
 * the code writes can be missed.
 */
class Sandbox {
  readonly kind: SandboxKind;
  readonly proc: NativeProcess | undefined;
  readonly stdout: CappedOutput;
  readonly stderr: CappedOutput;
  readonly jobDir: string;
  readonly ready: Promise<void>;
  readonly ended: Promise<SandboxEnd>;
  /** Set once made (`cgroupMade`); the cleanup waits for it, so a cgroup made late is removed too. */
  cgroup: ExecCgroup | undefined;
  readonly cgroupMade: Promise<ExecCgroup | undefined>;
  runnerText = "";
  onRunner: (() => void) | undefined;
  private readonly pipes: Array<Socket | undefined>;
  private released = false;
  private dead = false;
  private readonly killer: SandboxKill;

  constructor(
    kind: SandboxKind,
    bwrap: string,
    args: string[],
    seccomp: Buffer,
    devNull: number,
    jobDir: string,
    cgroups: CgroupManager | undefined,
    limits: SandboxLimits,
    runAs: { uid: number; gid: number } | undefined,
    /** Set up ahead of its execution: the lowest CPU weight until `prioritize`. */
    background: boolean,
  ) {
    this.kind = kind;
    this.jobDir = jobDir;
    this.stdout = new CappedOutput("stdout", limits.maxOutputBytes);
    this.stderr = new CappedOutput("stderr", limits.maxOutputBytes);
    let spawnError: Error | undefined;
    try {
      // A python sandbox starts its interpreter at once (the stub waits); others start the runner.
      const first = kind === "python" ? [INTERPRETERS.python, SANDBOX_PATHS.code.python] : ["/bin/sh", SANDBOX_PATHS.runner];
      this.proc = new NativeProcess(bwrap, [bwrap, "--args", "3", "--", ...first], {
        // 0 stdin, 1/2 output, 3 options, 4 status, 5 block, 6 seccomp, 7 the go, 8 reports (runner or stub)
        fds: [
          { fd: devNull },
          "read",
          "read",
          { data: Buffer.from(args.map((a) => a + "\0").join("")) },
          "read",
          "write",
          { data: seccomp },
          "write",
          "read",
        ],
        ...(runAs ? { runAs } : {}),
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
    this.cgroupMade = cgroups
      ? cgroups.create({ memoryBytes: limits.memoryBytes, pids: limits.pids, cpus: limits.cpus, background }).then((cg) => {
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
      let statusBuf = "";
      this.pipes[4]?.setEncoding("utf8");
      this.pipes[4]?.on("data", (chunk: string) => {
        statusBuf += chunk;
        let nl: number;
        while ((nl = statusBuf.indexOf("\n")) !== -1) {
          const line = statusBuf.slice(0, nl).trim();
          statusBuf = statusBuf.slice(nl + 1);
          let doc: StatusDoc;
          try {
            doc = JSON.parse(line) as StatusDoc;
          } catch {
            continue;
          }
          if (typeof doc["child-pid"] === "number" && this.killer.pid === undefined) {
            const pid = doc["child-pid"];
            if (!this.killer.reported(pid)) continue; // killed before it was reported: killed now
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
        }
      });
      void exited.then(() => reject(this.setupFailure(spawnError)));
    });
    // A python sandbox is ready once its interpreter waits in the stub (it has read main.py by then).
    const stubReady =
      kind === "python"
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
  }

  get alive(): boolean {
    return !this.dead && !this.released;
  }

  setupFailure(spawnError: Error | undefined): HexrError {
    const why = spawnError
      ? spawnError.message
      : this.stderr.text().trim().split("\n").slice(-3).join("; ") || "bubblewrap exited without diagnostics";
    return new HexrError("sandbox.backend_failed", `the namespace sandbox failed to start (${why}); run 'hexr sandbox doctor'`, {
      kind: "unavailable",
    });
  }

  /** The default CPU weight for a sandbox set up in the background, now that an execution waits for it. */
  async prioritize(): Promise<void> {
    await (await this.cgroupMade.catch(() => undefined))?.prioritize();
  }

  /** Lets the sandbox run its job (written just before); a python sandbox's stub also gets the variables. */
  release(env: Record<string, string>): void {
    this.released = true;
    if (this.kind === "python") this.pipes[7]?.end(["run", ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join("\0"));
    else this.pipes[7]?.end("go\n");
  }

  kill(): void {
    this.killer.kill();
    void this.cgroup?.killAll();
  }
}

export class NamespaceBackend implements SandboxBackend {
  readonly name = "namespace" as const;
  readonly installsPackages = true;
  private readonly opts: Required<Omit<NamespaceBackendOptions, "log" | "runtimeParent" | "packageDirs">> &
    Pick<NamespaceBackendOptions, "log" | "runtimeParent" | "packageDirs">;
  private bwrap: string | undefined;
  private seccomp: Buffer | undefined;
  private runtime: RuntimeDir | undefined;
  private cgroups: CgroupManager | undefined;
  private devNull: number | undefined;
  private staticArgs: string[] = [];
  /** main.py of a python sandbox until its job comes. */
  private stub = "";
  private state: BackendHealth = { backend: "namespace", available: false, checks: [], summary: "not started" };
  private readonly cleanups = new Set<Promise<void>>();
  /** Warm sandboxes per kind; a kind is kept warm once an execution has used it. */
  private readonly pools: Record<SandboxKind, Sandbox[]> = { python: [], generic: [] };
  private readonly wanted = new Set<SandboxKind>();
  private seq = 0;
  /** True from the probe on, while the backend is started and the probe did not fail. */
  private usable = false;
  /** Package directories left out of the sandboxes, and why (the sandbox user cannot reach them). */
  private unboundDirs: Partial<Record<"python" | "javascript", string>> = {};

  constructor(opts: NamespaceBackendOptions) {
    this.opts = {
      bwrapPath: "bwrap",
      uid: 65534,
      gid: 65534,
      cgroups: "required",
      warmPool: 2,
      now: () => performance.now(),
      ...opts,
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
    // The warm pool fills after the first execution: platforms that never execute pay nothing.
    this.state = {
      backend: "namespace",
      available: true,
      checks,
      summary: `bubblewrap sandbox ready (${this.cgroups ? `cgroup ${this.cgroups.version}` : "DEGRADED: no cgroup"}; ${langs.join(", ")})`,
    };
    return this.state;
  }

  private buildStaticArgs(): string[] {
    const { limits } = this.opts;
    const rt = this.runtime!;
    const args = [
      ...confinedRootArgs(rt.etc),
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

  private spawnSandbox(kind: SandboxKind, background = false): Sandbox {
    const id = `s${++this.seq}`;
    const jobDir = join(this.runtime!.jobs, id);
    mkdirSync(jobDir, { mode: 0o755 });
    if (kind === "python") writeFileSync(join(jobDir, `main.${EXT.python}`), this.stub, { mode: 0o644 });
    const args = [
      ...this.staticArgs,
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
      "--seccomp",
      "6",
    ];
    const runAs = process.getuid?.() === 0 ? { uid: this.opts.uid, gid: this.opts.gid } : undefined;
    const sb = new Sandbox(
      kind,
      this.bwrap!,
      args,
      this.seccomp!,
      this.devNull!,
      jobDir,
      this.cgroups,
      this.opts.limits,
      runAs,
      background,
    );
    // Whatever happens to it, a sandbox's cgroup and job directory go when its processes are gone.
    this.track(
      sb.ended.then(async () => {
        try {
          await (await sb.cgroupMade.catch(() => undefined))?.destroy();
        } finally {
          await rm(jobDir, { recursive: true, force: true });
        }
      }),
    );
    return sb;
  }

  private refill(): void {
    if (!this.usable || !this.state.available) return; // not during the probe: a doctor run needs no pool
    for (const kind of this.wanted) {
      const pool = this.pools[kind];
      for (let i = pool.length - 1; i >= 0; i--) if (!pool[i]!.alive) pool.splice(i, 1);
      while (pool.length < this.opts.warmPool) {
        let sb: Sandbox;
        try {
          // Set up at the lowest CPU weight: running executions and the platform go first.
          sb = this.spawnSandbox(kind, true);
        } catch (err) {
          this.opts.log?.warn({ err }, "cannot set up a warm sandbox");
          return;
        }
        pool.push(sb);
        sb.ended.then(
          () => {
            const i = pool.indexOf(sb);
            if (i !== -1) pool.splice(i, 1);
          },
          () => undefined,
        );
      }
    }
  }

  private async take(kind: SandboxKind): Promise<Sandbox> {
    for (;;) {
      const sb = this.pools[kind].shift() ?? this.spawnSandbox(kind);
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
    if (!this.usable || !this.bwrap || !this.seccomp || !this.runtime) {
      throw new HexrError("sandbox.backend_unavailable", "the namespace backend is not started; run 'hexr sandbox doctor'", {
        kind: "unavailable",
      });
    }
    const unbound = req.install?.origin === "local" ? this.unboundDirs[req.install.language] : undefined;
    if (unbound) throw new HexrError("sandbox.package_install_failed", unbound, { kind: "failed_precondition" });
    let sb: Sandbox;
    try {
      if (req.signal?.aborted) throw new HexrError("sandbox.aborted", "the execution was cancelled", { kind: "unavailable" });
      sb = await this.take(kindFor(req));
    } catch (err) {
      discardFetched(req);
      throw err;
    }
    return this.runIn(sb, req);
  }

  private async runIn(sb: Sandbox, req: BackendExecRequest): Promise<BackendExecResult> {
    const { limits, now } = this.opts;
    try {
      writeJob(sb.jobDir, req);
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
    this.wanted.add(sb.kind);
    if (this.pools[sb.kind].some((p) => p.alive)) void sb.ended.then(() => setImmediate(() => this.refill()));
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
    for (const pool of Object.values(this.pools)) for (const sb of pool.splice(0)) sb.kill();
    this.wanted.clear();
    while (this.cleanups.size) await Promise.all([...this.cleanups]);
    await this.cgroups?.close();
    this.cgroups = undefined;
    this.runtime?.remove();
    this.runtime = undefined;
    if (this.devNull !== undefined) closeSync(this.devNull);
    this.devNull = undefined;
  }
}

/** Python jobs the interpreter can run as started (no packages, no startup variables) get a python sandbox. */
function kindFor(req: BackendExecRequest): SandboxKind {
  return jobMode(req.language, req.env, { installs: req.install !== undefined }) === "run" ? "python" : "generic";
}

/** The job as the runner reads it; written before the sandbox is released. */
function writeJob(dir: string, req: BackendExecRequest): void {
  const opts = { mode: 0o644 } as const;
  if (req.install?.origin === "fetched") adoptFetched(req.install.sourceDir, join(dir, "pkgs"));
  // Resolved inside the sandbox: ESM and CommonJS both look for node_modules beside main.js.
  if (req.language === "javascript") symlinkSync(SANDBOX_PATHS.nodeModules, join(dir, "node_modules"));
  writeFileSync(join(dir, `main.${EXT[req.language]}`), req.code, opts);
  if (req.install) writeFileSync(join(dir, "packages"), req.install.items.map((i) => i + "\n").join(""), opts);
  // The environment is a function the runner calls last, right before it execs the interpreter.
  const env = Object.entries(req.env).map(([k, v]) => `export ${k}=${shellQuote(v)}\n`);
  writeFileSync(join(dir, "job.sh"), `hexr_lang=${req.language}\nhexr_env() {\n:\n${env.join("")}}\n`, opts);
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
