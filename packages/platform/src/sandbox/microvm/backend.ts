/**
 * The microvm backend: every execution runs in its own QEMU `-M microvm` VM, restored from the
 * pre-booted template that `hexr sandbox setup` saved (device state in a file, guest RAM in a file
 * each clone maps copy-on-write). A small pool of clones is kept restored, warmed up (see guest.ts)
 * and waiting, each with its job process already started and confined; each serves one execution
 * and is destroyed. QEMU itself runs confined: its own seccomp sandbox, uid nobody,
 * chrooted to an empty directory, and inside a host cgroup (memory, pids, CPU quota).
 *
 * Inside the VM the guest agent runs the code as uid 65534 with no capabilities, no-new-privs, the
 * platform's seccomp program and a guest cgroup; the VM has no network device (loopback only), no
 * disk and no shared folder. Packages are picked on the host (./packages.ts), streamed to the agent
 * with the job and installed by the job's own confined process into the execution's /tmp.
 */

import { HexrError, type SandboxLanguage } from "@hexr/core";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { setPriority, tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "pino";
import { openCgroups, type CgroupManager, type ExecCgroup } from "../cgroup.js";
import { HostSandbox } from "../host-sandbox.js";
import { buildSeccompProgram, X86_64 } from "../namespace/seccomp.js";
import { CappedOutput } from "../output.js";
import type {
  BackendCheck,
  BackendExecRequest,
  BackendExecResult,
  BackendHealth,
  SandboxBackend,
  SandboxLimits,
} from "../types.js";
import { machineArgs, Qmp, type MachineSpec } from "./qemu.js";
import { IMAGE_FILES, qemuVersion, readMeta, staleImage, type ImageMeta } from "./setup.js";
import { confinementProbeRequest, isConfined } from "../confinement.js";
import { jobMode, type JobMode } from "../job-mode.js";
import { isEsModule } from "./javascript-format.js";
import { MAX_PACKAGE_BYTES, packagePayload, type PackagePayload } from "./packages.js";

export interface MicrovmBackendOptions {
  imageDir: string;
  limits: SandboxLimits;
  qemuPath?: string;
  /** Clones kept restored and waiting. */
  poolSize?: number;
  /** `auto` uses what setup found; `kvm`/`tcg` require the snapshot to have been made that way. */
  accel?: "auto" | "kvm" | "tcg";
  /** The host-side confinement of pip's resolver (python packages from a local directory): bubblewrap and the user it runs as. */
  resolver?: { bwrapPath?: string; uid?: number; gid?: number };
  log?: Logger;
  now?: () => number;
}

export const MICROVM_LANGUAGES: SandboxLanguage[] = ["python", "shell", "javascript"];

const ARGV: Record<SandboxLanguage, string[]> = {
  python: ["/usr/bin/python3", "/run/hexr/job/main.py"],
  shell: ["/bin/sh", "/run/hexr/job/main.sh"],
  javascript: ["/usr/bin/node", "/run/hexr/job/main.js"],
};

/** Raw bytes per package chunk on the port (base64 in a JSON line). */
const CHUNK_BYTES = 48 * 1024;

const BASE_ENV: Record<string, string> = {
  PATH: "/usr/local/bin:/usr/bin:/bin",
  HOME: "/tmp",
  TMPDIR: "/tmp",
  USER: "nobody",
  LANG: "C.UTF-8",
  PWD: "/tmp",
  PYTHONUNBUFFERED: "1",
  PYTHONDONTWRITEBYTECODE: "1",
};

/** Memory the guest kernel and agent keep for themselves (besides the root filesystem, which lives in RAM). */
const GUEST_RESERVE_MB = 64;
/**
 * The warm-up jobs every clone runs before it waits in the pool: the host's own trivial scripts,
 * through exactly the path a job takes (a python job run by the pre-started interpreter, a shell job
 * exec'd by it). Node gets no warm-up job: once javascript is in use, every clone starts node ahead
 * (~2 s of TCG per clone), which translates its startup; a warm-up run on top measured +3.2 s per
 * clone for ~0.2 s less javascript latency.
 */
const WARM_UP: Array<{ mode: JobMode; language: SandboxLanguage; code: string }> = [
  { mode: "run", language: "python", code: "import sys\nprint('hello')\nsys.stderr.write('hello\\n')\n" },
  { mode: "exec", language: "shell", code: "echo hello\necho hello >&2\n" },
];

/** Variables node, V8, libuv, OpenSSL, ICU or the C library read at startup: a node started ahead would ignore them. */
const NODE_STARTUP_ENV = /^(NODE_|UV_|V8_|OPENSSL_|SSL_|LC_|LD_|MALLOC_|GLIBC_)|^(LANG|LANGUAGE|TZ|HOME|ICU_DATA)$/;

/**
 * How the job process runs a job: python as jobMode says; javascript in the node started ahead
 * ("node") unless it needs packages installed or sets a startup variable; "install" first installs.
 */
function modeFor(req: BackendExecRequest, installs: boolean): JobMode | "node" | "install" {
  if (installs) return "install";
  if (req.language === "javascript") return Object.keys(req.env).some((k) => NODE_STARTUP_ENV.test(k)) ? "exec" : "node";
  return jobMode(req.language, req.env);
}

/**
 * Restoring and warming clones runs at this nice value, so that executions (their clone is set back
 * to 0 when taken) keep the CPU when the pool refills beside them.
 */
const REFILL_NICE = 10;
/** When the pool is refilled during an execution that has not ended yet. */
const REFILL_DELAY_MS = 250;
/** How long a clone's warm-up may take (TCG on a loaded machine is slow; a normal one takes ~1 s). */
const WARM_UP_TIMEOUT_MS = 120_000;
/** How long after the timeout the host waits for the agent's own kill before destroying the VM. */
const BACKSTOP_MS = 15_000;

interface GuestMessage {
  t: string;
  failures?: string[];
  d?: string;
  code?: number;
  oom?: number;
  timedOut?: boolean;
  dropped?: [number, number];
  installFailed?: string;
}

/** How long one clone took to become ready, in milliseconds. */
export interface CloneTiming {
  /** QEMU started, device state loaded, agent connected. */
  restoreMs: number;
  /** The agent's warm-up (throwaway runs of the job path) until it reported ready. */
  warmMs: number;
}

/** One restored VM with its agent connection. */
class Clone {
  readonly messages: GuestMessage[] = [];
  timing: CloneTiming = { restoreMs: 0, warmMs: 0 };
  onMessage: (() => void) | undefined;
  readonly exited: Promise<void>;
  private buf = "";

  constructor(
    readonly qemu: ChildProcess,
    readonly sock: Socket,
    readonly dir: string,
    readonly cgroup: ExecCgroup | undefined,
  ) {
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf("\n")) !== -1) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        try {
          this.messages.push(JSON.parse(line) as GuestMessage);
        } catch {
          continue;
        }
        this.onMessage?.();
      }
    });
    sock.on("error", () => undefined);
    this.exited = new Promise((r) => {
      if (qemu.exitCode !== null || qemu.signalCode !== null) r();
      else qemu.once("exit", () => r());
    });
  }

  get alive(): boolean {
    return this.qemu.exitCode === null && this.qemu.signalCode === null;
  }

  async destroy(): Promise<void> {
    this.sock.destroy();
    if (this.alive) this.qemu.kill("SIGKILL");
    await this.exited;
    await this.cgroup?.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class MicrovmBackend implements SandboxBackend {
  readonly name = "microvm" as const;
  readonly installsPackages = true;
  private readonly opts: Required<Omit<MicrovmBackendOptions, "log">> & Pick<MicrovmBackendOptions, "log">;
  private state: BackendHealth = { backend: "microvm", available: false, checks: [], summary: "not started" };
  private meta: ImageMeta | undefined;
  private spec: Omit<MachineSpec, "agentSocket"> = { kernel: "", initrd: "", memoryMb: 0, accel: "tcg", memFile: "", tscKhz: 0 };
  private runDir: string | undefined;
  private chroot = "";
  private cgroups: CgroupManager | undefined;
  private hostSandbox: HostSandbox | undefined;
  private seccomp = "";
  private usable = false;
  private poolOn = false;
  /** Clones restored, warmed up and waiting for an execution. */
  private readonly ready: Clone[] = [];
  /** Restores (with their warm-ups) under way. */
  private readonly starting = new Set<Promise<void>>();
  /** Executions waiting for a clone. */
  private readonly waiters: Array<{ resolve: (c: Clone) => void; reject: (err: unknown) => void }> = [];
  private readonly live = new Set<Clone>();
  /** Destructions of used clones still finishing (the result was already returned). */
  private readonly ending = new Set<Promise<void>>();
  private readonly timings: CloneTiming[] = [];
  /** Set by the first javascript execution: clones restored from then on start node ahead too. */
  private warmJavascript = false;

  constructor(opts: MicrovmBackendOptions) {
    this.opts = {
      qemuPath: "qemu-system-x86_64",
      poolSize: 2,
      accel: "auto",
      resolver: {},
      now: () => performance.now(),
      ...opts,
    };
  }

  health(): BackendHealth {
    return this.state;
  }

  languages(): SandboxLanguage[] {
    return MICROVM_LANGUAGES;
  }

  /** The image's metadata (setup's findings), once started. */
  image(): ImageMeta | undefined {
    return this.meta;
  }

  async start(): Promise<BackendHealth> {
    await this.stop();
    const checks: BackendCheck[] = [];
    const fail = (summary: string): BackendHealth => {
      this.usable = false;
      return (this.state = { backend: "microvm", available: false, checks, summary });
    };
    let qv: string;
    try {
      qv = await qemuVersion(this.opts.qemuPath);
      checks.push({ name: "qemu", ok: true, severity: "error", detail: qv });
    } catch {
      checks.push({
        name: "qemu",
        ok: false,
        severity: "error",
        detail: `${this.opts.qemuPath} not found: apt-get install qemu-system-x86`,
      });
      return fail("QEMU is not installed (apt-get install qemu-system-x86)");
    }
    const dir = this.opts.imageDir;
    const meta = readMeta(dir);
    const missing = Object.values(IMAGE_FILES).filter((f) => !existsSync(join(dir, f)));
    if (!meta || missing.length) {
      checks.push({
        name: "image",
        ok: false,
        severity: "error",
        detail: `no microVM image in ${dir} (missing ${missing.join(", ") || "meta.json"}): run 'hexr sandbox setup'`,
      });
      return fail("the microVM image is not built: run 'hexr sandbox setup'");
    }
    checks.push({
      name: "image",
      ok: true,
      severity: "error",
      detail: `${meta.kernelPackage}, ${meta.memoryMb} MiB, built ${meta.createdAt}`,
    });
    const stale = staleImage(meta, qv);
    if (stale) {
      checks.push({ name: "snapshot", ok: false, severity: "error", detail: `${stale}: run 'hexr sandbox setup' again` });
      return fail(`the microVM image is out of date (${stale}): run 'hexr sandbox setup' again`);
    }
    if (this.opts.accel !== "auto" && this.opts.accel !== meta.accel) {
      checks.push({
        name: "accel",
        ok: false,
        severity: "error",
        detail: `sandbox.microvm.accel is ${this.opts.accel} but the snapshot was made for ${meta.accel}`,
      });
      return fail(`the snapshot was made for ${meta.accel}: run 'hexr sandbox setup' with that accelerator`);
    }
    checks.push({
      name: "accel",
      ok: true,
      severity: "error",
      detail: `${meta.accel.toUpperCase()} (KVM probe at setup: ${meta.kvmProbe})`,
    });
    this.meta = meta;
    this.spec = {
      kernel: join(dir, IMAGE_FILES.kernel),
      initrd: join(dir, IMAGE_FILES.initrd),
      memoryMb: meta.memoryMb,
      accel: meta.accel,
      memFile: join(dir, IMAGE_FILES.mem),
      tscKhz: meta.tscKhz,
    };
    this.runDir = mkdtempSync(join(tmpdir(), "hexr-microvm-"));
    this.chroot = join(this.runDir, "empty");
    mkdirSync(this.chroot, { mode: 0o755 });
    this.seccomp = buildSeccompProgram(X86_64).toString("base64");
    const cg = openCgroups();
    if (cg.ok) {
      this.cgroups = cg.manager;
      checks.push({ name: "cgroups", ok: true, severity: "warning", detail: `QEMU processes are confined by ${cg.detail}` });
    } else {
      checks.push({
        name: "cgroups",
        ok: false,
        severity: "warning",
        detail: `${cg.detail}; QEMU runs without a host cgroup (the VM's own memory size still bounds the guest)`,
      });
    }

    this.usable = true;
    try {
      const t0 = this.opts.now();
      const probe = await this.exec(confinementProbeRequest(60_000));
      if (!isConfined(probe)) {
        checks.push({
          name: "probe",
          ok: false,
          severity: "error",
          detail: `a probe execution was not confined (exit ${probe.exitCode}): ${(probe.stderr || probe.stdout).slice(0, 300)}`,
        });
        return fail("the microVM probe was not confined as required");
      }
      checks.push({
        name: "probe",
        ok: true,
        severity: "error",
        detail: `a restored clone ran a probe in ${Math.round(this.opts.now() - t0)} ms: uid 65534, no capabilities, no-new-privs, seccomp, no network device`,
      });
    } catch (err) {
      checks.push({ name: "probe", ok: false, severity: "error", detail: (err as Error).message });
      return fail(`a probe execution failed: ${(err as Error).message}`);
    }
    this.state = {
      backend: "microvm",
      available: true,
      checks,
      summary: `QEMU microVM clones of a pre-booted snapshot (${meta.accel.toUpperCase()}; ${MICROVM_LANGUAGES.join(", ")})`,
    };
    this.poolOn = true;
    return this.state;
  }

  /** Restores one clone and connects to its agent. */
  private async restore(): Promise<Clone> {
    const t0 = this.opts.now();
    const dir = mkdtempSync(join(this.runDir!, "clone-"));
    const agentSocket = join(dir, "agent.sock");
    const qmpSocket = join(dir, "qmp.sock");
    const stateFd = openSync(join(this.opts.imageDir, IMAGE_FILES.state), "r");
    let qemu: ChildProcess;
    try {
      qemu = spawn(
        this.opts.qemuPath,
        [
          ...machineArgs({ ...this.spec, agentSocket }, { template: false }),
          "-qmp",
          `unix:${qmpSocket},server=on,wait=off`,
          "-incoming",
          "defer",
          "-sandbox",
          "on,obsolete=deny,spawn=deny,resourcecontrol=deny",
          "-runas",
          "nobody",
          "-chroot",
          this.chroot,
        ],
        { stdio: ["ignore", "ignore", "pipe", stateFd], env: {} },
      );
    } finally {
      closeSync(stateFd);
    }
    let log = "";
    qemu.stderr!.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-2000)));
    let cgroup: ExecCgroup | undefined;
    const fail = (why: string) =>
      new HexrError(
        "sandbox.backend_failed",
        `a microVM clone failed to start (${why}${log ? `: ${log.trim()}` : ""}); run 'hexr sandbox doctor'`,
        {
          kind: "unavailable",
        },
      );
    let qmp: Qmp | undefined;
    try {
      if (this.cgroups && qemu.pid) {
        cgroup = await this.cgroups.create({
          memoryBytes: (this.spec.memoryMb + 256) * 1048576,
          pids: 64,
          cpus: this.opts.limits.cpus,
        });
        await cgroup.add(qemu.pid);
      }
      qmp = await Qmp.open(qmpSocket, 15_000);
      renice(qemu.pid, REFILL_NICE);
      await qmp.run("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] });
      await qmp.run("migrate-incoming", { uri: "fd:3" });
      for (let i = 0; ; i++) {
        const st = (await qmp.run("query-migrate")) as { status?: string };
        if (st.status === "completed") break;
        if (st.status === "failed" || i > 5000 || qemu.exitCode !== null) throw fail(`restore ${st.status ?? "did not finish"}`);
        await new Promise((r) => setTimeout(r, 2));
      }
      await qmp.run("cont");
      const sock = await new Promise<Socket>((resolve, reject) => {
        const s = connect(agentSocket, () => resolve(s));
        s.once("error", reject);
      });
      const clone = new Clone(qemu, sock, dir, cgroup);
      this.live.add(clone);
      void clone.exited.then(() => this.live.delete(clone));
      const restored = this.opts.now();
      try {
        await this.warmUp(clone);
      } catch (err) {
        await clone.destroy();
        throw fail((err as Error).message);
      }
      clone.timing = { restoreMs: restored - t0, warmMs: this.opts.now() - restored };
      return clone;
    } catch (err) {
      qemu.kill("SIGKILL");
      await cgroup?.destroy();
      rmSync(dir, { recursive: true, force: true });
      throw err instanceof HexrError ? err : fail((err as Error).message);
    } finally {
      qmp?.close();
    }
  }

  /**
   * Sends the clone its configuration and waits until its agent has run the warm-up: the job path
   * (fork, cgroup, seccomp, setuid, exec of python and sh with the host's own trivial scripts) run
   * once as throwaway children, so TCG has translated it before an execution waits on it. No user
   * code has run in the clone; the agent then gives the job an empty /tmp, /dev/shm and a new cgroup.
   */
  private warmUp(clone: Clone): Promise<void> {
    const { limits } = this.opts;
    const cfg = {
      t: "config",
      // The clone's own entropy, before anything in it draws randomness (the pre-started interpreter's hash seed).
      seed: randomBytes(64).toString("base64"),
      env: BASE_ENV,
      seccomp: this.seccomp,
      memoryBytes: this.memoryBytes(),
      pids: limits.pids,
      tmpfsBytes: limits.tmpfsBytes,
      maxOutputBytes: limits.maxOutputBytes,
      // ASLR stays on under KVM; under TCG it would defeat the warm-up (see the docs).
      aslr: this.spec.accel !== "tcg",
      // Once javascript is in use, node is started ahead in every clone, beside the python stub.
      node: this.warmJavascript,
      warm: WARM_UP.map((w) => ({
        mode: w.mode,
        argv: ARGV[w.language],
        code: Buffer.from(w.code).toString("base64"),
      })),
    };
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => done(new Error(`the warm-up took longer than ${WARM_UP_TIMEOUT_MS / 1000} s`)),
        WARM_UP_TIMEOUT_MS,
      );
      const done = (err?: Error) => {
        clearTimeout(timer);
        clone.onMessage = undefined;
        if (err) reject(err);
        else resolve();
      };
      clone.onMessage = () => {
        const m = clone.messages.shift();
        if (m?.t !== "warm") return done(new Error(`the guest agent answered '${m?.t}' instead of finishing its warm-up`));
        if (m.failures?.length) return done(new Error(`the warm-up failed: ${m.failures.join("; ")}`));
        done();
      };
      void clone.exited.then(() => done(new Error("the VM exited during its warm-up")));
      clone.sock.write(JSON.stringify(cfg) + "\n");
    });
  }

  private memoryBytes(): number {
    const free = this.spec.memoryMb - GUEST_RESERVE_MB - (this.meta?.rootfsMb ?? 0);
    return Math.min(this.opts.limits.memoryBytes, free * 1048576);
  }

  /** How the pool stands, and how long the last clones took to restore and warm up. */
  poolStats(): { size: number; ready: number; starting: number; recent: CloneTiming[] } {
    return { size: this.opts.poolSize, ready: this.ready.length, starting: this.starting.size, recent: [...this.timings] };
  }

  /** Starts restoring clones until the pool (plus the executions waiting) is covered. */
  private refill(): void {
    if (!this.usable) return;
    const want = (this.poolOn ? this.opts.poolSize : 0) + this.waiters.length;
    while (this.ready.length + this.starting.size < want) {
      const p: Promise<void> = this.restore().then(
        (clone) => {
          this.starting.delete(p);
          this.timings.push(clone.timing);
          if (this.timings.length > 50) this.timings.shift();
          const w = this.waiters.shift();
          if (w) w.resolve(clone);
          else if (this.usable && this.poolOn) this.ready.push(clone);
          else void clone.destroy();
          this.refill();
        },
        (err: unknown) => {
          this.starting.delete(p);
          this.opts.log?.warn({ err }, "cannot restore a microVM clone");
          // An execution waiting gets the error rather than waiting on restores that keep failing.
          this.waiters.shift()?.reject(err);
        },
      );
      this.starting.add(p);
    }
  }

  /** A ready clone, or the next one to finish its warm-up. */
  private async take(signal?: AbortSignal): Promise<Clone> {
    for (;;) {
      const c = this.ready.shift();
      if (!c) break;
      if (c.alive) return c;
      await c.destroy();
    }
    const clone = new Promise<Clone>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.refill();
    if (!signal) return clone;
    // A cancelled execution stops waiting; the clone it would have had joins the pool.
    return new Promise<Clone>((resolve, reject) => {
      const onAbort = () => reject(new HexrError("sandbox.aborted", "the execution was cancelled", { kind: "unavailable" }));
      signal.addEventListener("abort", onAbort, { once: true });
      clone.then(
        (c) => {
          signal.removeEventListener("abort", onAbort);
          if (!signal.aborted) resolve(c);
          else if (this.usable && this.poolOn)
            this.ready.push(c); // never used: as good as any other
          else void c.destroy();
        },
        (err: unknown) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      );
    });
  }

  /** Kills the VM now; its files and cgroup are removed in the background (stop() waits for that). */
  private discard(clone: Clone): void {
    const p = clone.destroy().finally(() => this.ending.delete(p));
    this.ending.add(p);
  }

  /** Where pip's resolver runs for python packages from a local directory (made on first use). */
  private resolver(): HostSandbox {
    const r = this.opts.resolver;
    this.hostSandbox ??= new HostSandbox({
      prefix: "hexr-mvresolve-",
      purpose: "python package resolution",
      ...(r.bwrapPath ? { bwrapPath: r.bwrapPath } : {}),
      ...(r.uid !== undefined ? { uid: r.uid } : {}),
      ...(r.gid !== undefined ? { gid: r.gid } : {}),
      limits: { memoryBytes: 512 * 1024 * 1024, pids: 64, cpus: 1 },
      ...(this.opts.log ? { log: this.opts.log } : {}),
    });
    return this.hostSandbox;
  }

  async exec(req: BackendExecRequest): Promise<BackendExecResult> {
    if (!this.usable || !this.runDir) {
      throw new HexrError("sandbox.backend_unavailable", "the microvm backend is not started; run 'hexr sandbox doctor'", {
        kind: "unavailable",
      });
    }
    const argv = ARGV[req.language];
    if (req.language === "javascript") this.warmJavascript = true;
    let payload: PackagePayload | undefined;
    if (req.install) {
      const t0 = this.opts.now();
      // Picking the files counts against the install timeout, as the install itself does.
      payload = await packagePayload(req.install, {
        resolver: this.resolver(),
        maxBytes: Math.min(MAX_PACKAGE_BYTES, this.opts.limits.tmpfsBytes),
        timeoutMs: req.installTimeoutMs,
        ...(req.signal ? { signal: req.signal } : {}),
      });
      req = { ...req, installTimeoutMs: Math.max(1000, req.installTimeoutMs - (this.opts.now() - t0)) };
    }
    if (req.signal?.aborted) throw new HexrError("sandbox.aborted", "the execution was cancelled", { kind: "unavailable" });
    const clone = await this.take(req.signal);
    renice(clone.qemu.pid, 0);
    // Restoring a clone blocks this thread for a while (spawning QEMU, moving it into its cgroup,
    // which under cgroup v1 waits for an RCU grace period): do it once a short execution is over,
    // or soon into a long one.
    const early = setTimeout(() => this.refill(), REFILL_DELAY_MS);
    try {
      return await this.runIn(clone, req, argv, payload);
    } finally {
      clearTimeout(early);
      setImmediate(() => this.refill());
      this.discard(clone);
    }
  }

  private runIn(clone: Clone, req: BackendExecRequest, argv: string[], payload?: PackagePayload): Promise<BackendExecResult> {
    const { limits, now } = this.opts;
    const memoryBytes = this.memoryBytes();
    const stdout = new CappedOutput("stdout", limits.maxOutputBytes);
    const stderr = new CappedOutput("stderr", limits.maxOutputBytes);
    const job = {
      t: "job",
      mode: modeFor(req, payload !== undefined),
      code: Buffer.from(req.code).toString("base64"),
      argv,
      env: { ...BASE_ENV, ...req.env },
      esm: req.language === "javascript" && isEsModule(req.code),
      seed: randomBytes(64).toString("base64"),
      now: Date.now(),
      ...(payload ? { install: { size: payload.bundle.length } } : {}),
    };
    return new Promise<BackendExecResult>((resolve, reject) => {
      const sent = now();
      let started: number | undefined;
      let read = 0;
      let settled = false;
      const timers: { backstop?: NodeJS.Timeout; kill?: NodeJS.Timeout; install?: NodeJS.Timeout } = {};
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timers.backstop);
        clearTimeout(timers.kill);
        clearTimeout(timers.install);
        req.signal?.removeEventListener("abort", onAbort);
        fn();
      };
      const onAbort = () =>
        finish(() => reject(new HexrError("sandbox.aborted", "the execution was cancelled", { kind: "unavailable" })));
      req.signal?.addEventListener("abort", onAbort, { once: true });
      const killedAtTimeout = () =>
        finish(() =>
          resolve({
            stdout: stdout.text(),
            stderr: `${stderr.text()}[hexr: execution killed after the timeout of ${fmtSeconds(req.timeoutMs)}]\n`,
            exitCode: 124,
            durationMs: Math.round((now() - (started ?? sent)) * 1000) / 1000,
            timedOut: true,
            oomKilled: false,
            truncated: { stdout: stdout.truncated, stderr: stderr.truncated },
          }),
        );
      if (payload) {
        // The install (sending the files included) has its own time; the code's timeout starts with the code.
        timers.install = setTimeout(
          () =>
            finish(() =>
              reject(
                new HexrError(
                  "sandbox.package_install_timeout",
                  `installing packages took longer than ${fmtSeconds(req.installTimeoutMs)}`,
                  { kind: "timeout" },
                ),
              ),
            ),
          req.installTimeoutMs,
        );
      } else timers.backstop = setTimeout(killedAtTimeout, req.timeoutMs + BACKSTOP_MS);
      clone.onMessage = () => {
        for (; read < clone.messages.length; read++) {
          const m = clone.messages[read]!;
          if (m.t === "started") {
            started = now();
            clearTimeout(timers.install);
            timers.backstop ??= setTimeout(killedAtTimeout, req.timeoutMs + BACKSTOP_MS);
            timers.kill = setTimeout(() => clone.sock.write('{"t":"kill"}\n'), req.timeoutMs);
          } else if (m.t === "o" && m.d) stdout.push(Buffer.from(m.d, "base64"));
          else if (m.t === "e" && m.d) stderr.push(Buffer.from(m.d, "base64"));
          else if (m.t === "x" && m.installFailed !== undefined) {
            const log = Buffer.from(m.installFailed, "base64").toString();
            finish(() => reject(installError(log)));
          } else if (m.t === "x") {
            const end = now();
            stdout.addDropped(m.dropped?.[0] ?? 0);
            stderr.addDropped(m.dropped?.[1] ?? 0);
            let exitCode = m.code ?? 1;
            let errText = stderr.text();
            const sep = () => (errText && !errText.endsWith("\n") ? "\n" : "");
            const oomKilled = (m.oom ?? 0) > 0;
            if (m.timedOut) {
              exitCode = 124;
              errText += `${sep()}[hexr: execution killed after the timeout of ${fmtSeconds(req.timeoutMs)}]\n`;
            } else if (oomKilled) {
              if (exitCode !== 0) exitCode = 137;
              errText += `${sep()}[hexr: ${exitCode === 137 ? "execution killed" : "a process was killed"}: memory limit of ${Math.round(
                memoryBytes / 1048576,
              )} MiB exceeded]\n`;
            }
            finish(() =>
              resolve({
                stdout: stdout.text(),
                stderr: errText,
                exitCode,
                durationMs: Math.round((end - (started ?? sent)) * 1000) / 1000,
                timedOut: !!m.timedOut,
                oomKilled,
                truncated: { stdout: stdout.truncated, stderr: stderr.truncated },
              }),
            );
          }
        }
      };
      void clone.exited.then(() =>
        finish(() =>
          reject(
            new HexrError("sandbox.backend_failed", "the microVM exited before reporting a result; run 'hexr sandbox doctor'", {
              kind: "unavailable",
            }),
          ),
        ),
      );
      clone.sock.write(JSON.stringify(job) + "\n");
      const data = payload?.bundle ?? Buffer.alloc(0);
      for (let off = 0; off < data.length; off += CHUNK_BYTES) {
        clone.sock.write(`{"t":"p","d":"${data.subarray(off, off + CHUNK_BYTES).toString("base64")}"}\n`);
      }
      clone.onMessage();
    });
  }

  async stop(): Promise<void> {
    this.usable = false;
    this.poolOn = false;
    for (const w of this.waiters.splice(0)) {
      w.reject(new HexrError("sandbox.shutting_down", "the microvm backend is stopping", { kind: "unavailable" }));
    }
    // Killing every VM also ends the warm-ups under way; restores that finish now destroy their clone.
    await Promise.all([...this.ready.splice(0), ...this.live].map((c) => c.destroy()));
    await Promise.all([...this.starting]);
    await Promise.all([...this.live].map((c) => c.destroy()));
    await Promise.all([...this.ending]);
    await this.cgroups?.close();
    this.cgroups = undefined;
    await this.hostSandbox?.stop();
    this.hostSandbox = undefined;
    if (this.runDir) rmSync(this.runDir, { recursive: true, force: true });
    this.runDir = undefined;
  }
}

/** Sets the nice value of every thread of a process (setpriority on Linux applies to one thread). */
function renice(pid: number | undefined, nice: number): void {
  if (!pid) return;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) setPriority(Number(tid), nice);
  } catch {
    // gone, or not allowed: the clone still works, only less favoured over the executions
  }
}

/** A failed install as the caller sees it (the host already named any package that cannot be had). */
function installError(log: string): HexrError {
  const tail = log.trim().split("\n").slice(-5).join("\n").slice(-1500);
  return new HexrError("sandbox.package_install_failed", `installing packages failed:\n${tail}`, { kind: "failed_precondition" });
}

function fmtSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}
