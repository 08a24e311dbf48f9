/**
 * A fresh cgroup per execution (memory, pids, CPU quota), on cgroup v1 (one directory per
 * controller hierarchy) or v2 (one unified directory). Everything lives below the platform's own
 * cgroup, in a directory of this instance, so limits of the surrounding container still apply
 * and parallel platforms never touch each other's executions.
 */

import { HexrError } from "@hexr/core";
import { nativeBinding } from "../native.js";
import { randomBytes } from "node:crypto";
import { constants as osConstants } from "node:os";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statfsSync, writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { isAbsolute, join, posix } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export type CgroupVersion = "v1" | "v2";

export interface CgroupLimits {
  memoryBytes: number;
  pids: number;
  /** Cores; 0.5 = half a core. */
  cpus: number;
  /**
   * Made for work that may wait (a sandbox set up ahead of its execution): the lowest CPU weight,
   * so it runs on what running executions and the platform leave, until `prioritize()`.
   */
  background?: boolean;
}

/** CPU weights: v1 cpu.shares, v2 cpu.weight (the kernel's minimum and its default). */
const CPU_WEIGHT = { v1: { background: "2", normal: "1024" }, v2: { background: "1", normal: "100" } } as const;

export interface ExecCgroup {
  readonly name: string;
  /** The directories of this cgroup (one per v1 controller, or one on v2). */
  readonly dirs: readonly string[];
  /**
   * Moves a process in; its future children are born inside. Asynchronous: a migration waits for
   * an RCU grace period in the kernel (~0.1-1 ms each, three of them on v1), which must not stall
   * the platform's event loop.
   */
  add(pid: number): Promise<void>;
  /** OOM kills the kernel performed in this cgroup. */
  oomKills(): number;
  /** Processes currently inside. */
  pids(): number[];
  /** SIGKILLs every process inside until none is left (bounded). */
  killAll(): Promise<void>;
  /** Removes the directories; if one refuses (processes still inside), killAll, then retries (bounded). */
  destroy(): Promise<void>;
  /** Gives a `background` cgroup the default CPU weight (an execution now waits for what runs in it). */
  prioritize(): Promise<void>;
}

export interface CgroupManager {
  readonly version: CgroupVersion;
  /** This instance's parent directories, where per-execution cgroups are created. */
  readonly parents: readonly string[];
  /**
   * A new cgroup with these limits, made in one job on the thread pool (native `cgroupMake`): mkdir
   * waits for the kernel's cgroup lock, which a migration elsewhere can hold across an RCU grace
   * period (made on the event loop, p99 3-4 ms, max ~10 ms of stall here), while one thread pool round
   * trip per call (3 mkdirs and 6 writes with cgroup v1) cost ~1 ms of CPU more per execution.
   */
  create(limits: CgroupLimits): Promise<ExecCgroup>;
  /** Destroys what is left and removes the instance directories. */
  close(): Promise<void>;
  /**
   * Told when `destroy` gives up on a cgroup (~4 s of SIGKILLs, then ~4 s of removal attempts):
   * processes the kernel does not let go of (stuck in uninterruptible sleep) keep it. It stays
   * until a later platform's stale-instance cleanup removes it.
   */
  onLeftBehind?: (c: { name: string; dirs: readonly string[]; pids: number[] }) => void;
}

/** What a cgroup tells its manager. */
interface CgroupOwner {
  gone(c: ExecCgroup): void;
  leftBehind(c: ExecCgroup, dirs: readonly string[]): void;
}

export type CgroupProbe = { ok: true; manager: CgroupManager; detail: string } | { ok: false; detail: string };

export interface OpenCgroupsOptions {
  /** Name of this instance's directory under the platform's own cgroup. */
  instance?: string;
  /** `/proc/self` (tests of the parsing point elsewhere). */
  procSelf?: string;
  /** `/proc/cgroups`, which says which controllers are bound to a v1 hierarchy. */
  procCgroups?: string;
  /**
   * A cgroup v2 directory to create this instance in, instead of this process's own cgroup (and
   * no v1 fallback): lets tests run the v2 code on a hybrid host's unified hierarchy.
   */
  v2Dir?: string;
  /**
   * The v2 controllers that must be available and are enabled for executions (on v2 only; v1 always
   * needs memory, pids and cpu); default memory, pids, cpu. Limits are written only for those named, so anything but the default leaves
   * executions without some limit (the probe's detail says which): for tests on hierarchies
   * that lack them, never for serving.
   */
  v2Controllers?: readonly string[];
  /** false: kill with the per-pid loop alone, as on kernels before 5.14 that lack cgroup.kill (tests). */
  v2KillFile?: boolean;
}

/** The controllers whose limits a per-execution cgroup enforces. */
export const LIMIT_CONTROLLERS = ["memory", "pids", "cpu"] as const;
export type LimitController = (typeof LIMIT_CONTROLLERS)[number];
const CONTROLLERS = LIMIT_CONTROLLERS;
type Controller = LimitController;
const CPU_PERIOD_US = 100_000;
const { ENOENT } = osConstants.errno;
/** CFS refuses quotas below 1 ms. */
const CPU_MIN_QUOTA_US = 1000;
const CGROUP2_SUPER_MAGIC = 0x63677270;
const CONTROLLER_NAME = /^[a-z_][a-z0-9_]{0,31}$/;

/** One file a limit is written to, in the directory of `controller` (v1) or the cgroup's (v2). */
export interface LimitWrite {
  controller: LimitController;
  file: string;
  value: string;
  /** Written only where the kernel has the file (swap accounting may be off). */
  optional?: true;
}

function invalidLimits(message: string, field: string): HexrError {
  return new HexrError("sandbox.invalid_cgroup_limits", `cgroup limits: ${message}`, {
    kind: "invalid_argument",
    details: { errors: [{ path: field, message }] },
  });
}

/** Throws a typed error for limits the kernel would reject or misread (NaN, fractions, ≤ 0). */
export function checkLimits(limits: CgroupLimits): void {
  if (!Number.isSafeInteger(limits.memoryBytes) || limits.memoryBytes <= 0)
    throw invalidLimits(`memoryBytes must be a positive integer, got ${String(limits.memoryBytes)}`, "memoryBytes");
  if (!Number.isSafeInteger(limits.pids) || limits.pids <= 0)
    throw invalidLimits(`pids must be a positive integer, got ${String(limits.pids)}`, "pids");
  if (!Number.isFinite(limits.cpus) || limits.cpus <= 0)
    throw invalidLimits(`cpus must be a positive number, got ${String(limits.cpus)}`, "cpus");
}

/** CFS quota per 100 ms period for `cpus` cores, at least the 1 ms the kernel accepts. */
export function cpuQuotaUs(cpus: number): number {
  return Math.max(CPU_MIN_QUOTA_US, Math.round(cpus * CPU_PERIOD_US));
}

/** What a v1 per-execution cgroup gets written, controller by controller. */
export function v1LimitWrites(limits: CgroupLimits): LimitWrite[] {
  checkLimits(limits);
  const mem = String(limits.memoryBytes);
  return [
    { controller: "memory", file: "memory.limit_in_bytes", value: mem },
    // Without this, swap would extend the limit wherever swap accounting is on.
    { controller: "memory", file: "memory.memsw.limit_in_bytes", value: mem, optional: true },
    { controller: "pids", file: "pids.max", value: String(limits.pids) },
    { controller: "cpu", file: "cpu.cfs_period_us", value: String(CPU_PERIOD_US) },
    { controller: "cpu", file: "cpu.cfs_quota_us", value: String(cpuQuotaUs(limits.cpus)) },
    ...(limits.background ? [{ controller: "cpu" as const, file: "cpu.shares", value: CPU_WEIGHT.v1.background }] : []),
  ];
}

/** What a v2 per-execution cgroup gets written, for the controllers it has. */
export function v2LimitWrites(limits: CgroupLimits, controllers: readonly string[] = CONTROLLERS): LimitWrite[] {
  checkLimits(limits);
  const all: LimitWrite[] = [
    { controller: "memory", file: "memory.max", value: String(limits.memoryBytes) },
    // v2 counts swap separately; 0 keeps the memory limit from being stretched by swapping.
    { controller: "memory", file: "memory.swap.max", value: "0", optional: true },
    { controller: "pids", file: "pids.max", value: String(limits.pids) },
    { controller: "cpu", file: "cpu.max", value: `${cpuQuotaUs(limits.cpus)} ${CPU_PERIOD_US}` },
    ...(limits.background ? [{ controller: "cpu" as const, file: "cpu.weight", value: CPU_WEIGHT.v2.background }] : []),
  ];
  return all.filter((w) => controllers.includes(w.controller));
}

function writeLimit(dir: string, w: LimitWrite): void {
  try {
    // r+: cgroupfs files cannot be created, so a missing one is ENOENT rather than an attempt to make it.
    writeFileSync(join(dir, w.file), w.value, { flag: "r+" });
  } catch (err) {
    if (!(w.optional && (err as NodeJS.ErrnoException).code === "ENOENT")) throw err;
  }
}

interface MountInfo {
  root: string;
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

export function parseMountInfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const sep = line.indexOf(" - ");
    if (sep === -1) continue;
    const left = line.slice(0, sep).split(" ");
    const right = line.slice(sep + 3).split(" ");
    if (left.length < 5 || right.length < 3) continue;
    out.push({
      root: unescapeMount(left[3]!),
      mountPoint: unescapeMount(left[4]!),
      fsType: right[0]!,
      superOptions: right[2]!.split(","),
    });
  }
  return out;
}

const unescapeMount = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** `/proc/self/cgroup`: controller (or "" for v2) → path. */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    if (m[2] === "") out.set("", m[3]!);
    else for (const c of m[2]!.split(",")) out.set(c, m[3]!);
  }
  return out;
}

/** `/proc/cgroups`: controller → id of the v1 hierarchy it is bound to (0: free for cgroup v2). */
export function parseProcCgroups(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([a-z_][a-z0-9_]*)\s+(\d+)\s+\d+\s+([01])$/.exec(line.trim());
    if (m && m[3] === "1") out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** The directory of `cgroupPath` in a hierarchy mounted at `mount` (which shows `mount.root`). */
function dirIn(mount: MountInfo, cgroupPath: string): string {
  const rel = posix.relative(mount.root, cgroupPath);
  if (rel.startsWith("..")) return mount.mountPoint; // our cgroup lies outside what the mount shows (cgroup ns)
  return join(mount.mountPoint, rel);
}

function describeErr(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code} (${e.message})` : String(err);
}

const INSTANCE_NAME = /^hexr-sandbox-(\d+)-[0-9a-f]+$/;
/** Where a v2 platform moved itself when its own cgroup had to give controllers to children. */
const PLATFORM_LEAF_NAME = /^hexr-platform-(\d+)$/;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A short synchronous pause: stale cleanup runs inside the synchronous openCgroups. */
const pauseSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * Removes instance directories left by platforms that died without cleaning up (SIGKILL, crash):
 * kills what still runs in them and removes the empty cgroups (waiting up to about a second for
 * killed processes to leave). On v2 also removes the leaf such a platform had moved itself into.
 */
export function removeStaleInstances(base: string): number {
  let removed = 0;
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return 0;
  }
  for (const name of names) {
    const leaf = PLATFORM_LEAF_NAME.exec(name);
    if (leaf && !pidAlive(Number(leaf[1]))) {
      tryRmdir(join(base, name)); // fails while anything still lives there: then it is not ours to clear
      continue;
    }
    const m = INSTANCE_NAME.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    const dir = join(base, name);
    let children: string[] = [];
    try {
      children = readdirSync(dir, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => join(dir, d.name));
    } catch {
      continue;
    }
    for (const c of children) {
      tryWrite(join(c, "cgroup.kill"), "1"); // v2 (5.14+); v1 has no such file
      killPids(readPids(join(c, "cgroup.procs")));
    }
    for (let i = 0; i < 200 && children.length; i++) {
      children = children.filter((c) => !tryRmdir(c));
      if (children.length) {
        for (const c of children) killPids(readPids(join(c, "cgroup.procs")));
        pauseSync(5);
      }
    }
    if (tryRmdir(dir)) removed++;
  }
  return removed;
}

/** The directories under which this process's instances live (one per v1 controller, or the v2 one). */
export function cgroupBases(procSelf = "/proc/self"): string[] {
  try {
    const mounts = parseMountInfo(readFileSync(join(procSelf, "mountinfo"), "utf8"));
    const own = parseProcCgroup(readFileSync(join(procSelf, "cgroup"), "utf8"));
    const v1 = CONTROLLERS.map((c) => mounts.find((m) => m.fsType === "cgroup" && m.superOptions.includes(c)));
    if (v1.every(Boolean)) return CONTROLLERS.map((c, i) => dirIn(v1[i]!, own.get(c) ?? "/"));
    const unified = mounts.find((m) => m.fsType === "cgroup2");
    return unified ? [dirIn(unified, own.get("") ?? "/")] : [];
  } catch {
    return [];
  }
}

/** Finds a usable cgroup hierarchy, creates this instance's parent directories, and says what it found. */
export function openCgroups(opts: OpenCgroupsOptions = {}): CgroupProbe {
  const procSelf = opts.procSelf ?? "/proc/self";
  const instance = opts.instance ?? `hexr-sandbox-${process.pid}-${randomBytes(3).toString("hex")}`;
  const v2Controllers = checkControllerNames(opts.v2Controllers ?? CONTROLLERS);
  if (opts.v2Dir !== undefined) return openExplicitV2(opts.v2Dir, opts, v2Controllers, instance);
  let mounts: MountInfo[];
  let own: Map<string, string>;
  try {
    mounts = parseMountInfo(readFileSync(join(procSelf, "mountinfo"), "utf8"));
    own = parseProcCgroup(readFileSync(join(procSelf, "cgroup"), "utf8"));
  } catch (err) {
    return { ok: false, detail: `cannot read ${procSelf}/mountinfo or cgroup: ${describeErr(err)}` };
  }

  const v1: Partial<Record<Controller, MountInfo>> = {};
  for (const m of mounts) {
    if (m.fsType !== "cgroup") continue;
    for (const c of CONTROLLERS) if (m.superOptions.includes(c) && !v1[c]) v1[c] = m;
  }
  if (CONTROLLERS.every((c) => v1[c])) {
    const parents: string[] = [];
    try {
      for (const c of CONTROLLERS) {
        const base = dirIn(v1[c]!, own.get(c) ?? "/");
        removeStaleInstances(base);
        const dir = join(base, instance);
        mkdirSync(dir);
        parents.push(dir);
      }
    } catch (err) {
      for (const d of parents) tryRmdir(d);
      return {
        ok: false,
        detail: `cgroup v1 found, but creating a cgroup failed: ${describeErr(err)} (read-only cgroupfs or not root?)`,
      };
    }
    return {
      ok: true,
      manager: new V1Manager(parents),
      detail: `cgroup v1 (memory, pids, cpu) at ${parents.join(", ")}`,
    };
  }

  const unified = mounts.find((m) => m.fsType === "cgroup2");
  if (!unified) {
    const missing = CONTROLLERS.filter((c) => !v1[c]);
    return { ok: false, detail: `no cgroup v2 mount and cgroup v1 lacks ${missing.join(", ")}` };
  }
  return openV2Probe(dirIn(unified, own.get("") ?? "/"), unified.mountPoint, v2Controllers, instance, {
    mounts,
    procCgroups: opts.procCgroups,
    killFile: opts.v2KillFile,
  });
}

interface V2Context {
  mounts?: MountInfo[];
  procCgroups?: string | undefined;
  killFile?: boolean | undefined;
}

function checkControllerNames(controllers: readonly string[]): readonly string[] {
  for (const [i, c] of controllers.entries()) {
    if (!CONTROLLER_NAME.test(c)) {
      throw new HexrError(
        "sandbox.invalid_cgroup_controller",
        `v2Controllers[${i}] '${c.slice(0, 40)}' is not a controller name`,
        {
          kind: "invalid_argument",
          details: { errors: [{ path: `v2Controllers.${i}`, message: "not a controller name" }] },
        },
      );
    }
  }
  return controllers;
}

/** openCgroups on an explicit cgroup v2 directory. */
function openExplicitV2(dir: string, opts: OpenCgroupsOptions, controllers: readonly string[], instance: string): CgroupProbe {
  if (!isAbsolute(dir)) {
    throw new HexrError("sandbox.invalid_cgroup_dir", `v2Dir '${dir.slice(0, 200)}' is not an absolute path`, {
      kind: "invalid_argument",
      details: { errors: [{ path: "v2Dir", message: "not an absolute path" }] },
    });
  }
  let mounts: MountInfo[] | undefined;
  try {
    mounts = parseMountInfo(readFileSync(join(opts.procSelf ?? "/proc/self", "mountinfo"), "utf8"));
  } catch {
    mounts = undefined; // only used to name v1 mount points in the detail
  }
  try {
    if (statfsSync(dir).type !== CGROUP2_SUPER_MAGIC) return { ok: false, detail: `${dir} is not on a cgroup v2 filesystem` };
  } catch (err) {
    return { ok: false, detail: `cgroup v2 directory ${dir}: ${describeErr(err)}` };
  }
  const mount = mounts
    ?.filter((m) => m.fsType === "cgroup2" && (dir === m.mountPoint || dir.startsWith(m.mountPoint + "/")))
    .pop();
  return openV2Probe(dir, mount?.mountPoint ?? dir, controllers, instance, {
    ...(mounts ? { mounts } : {}),
    procCgroups: opts.procCgroups,
    killFile: opts.v2KillFile,
  });
}

/** Checks that `ownDir` offers `controllers`, then creates the instance directory below it. */
function openV2Probe(
  ownDir: string,
  mountPoint: string,
  controllers: readonly string[],
  instance: string,
  ctx: V2Context,
): CgroupProbe {
  let available: string[];
  try {
    available = readControllers(ownDir);
  } catch (err) {
    return {
      ok: false,
      detail: `cgroup v2 at ${mountPoint}: cannot read ${ownDir}/cgroup.controllers: ${describeErr(err)}`,
    };
  }
  const missing = controllers.filter((c) => !available.includes(c));
  if (missing.length) return { ok: false, detail: explainMissing(missing, available, ownDir, mountPoint, ctx) };
  const limited = CONTROLLERS.filter((c) => controllers.includes(c));
  const unlimited = CONTROLLERS.filter((c) => !controllers.includes(c));
  try {
    const parent = openV2(ownDir, instance, controllers);
    const what = controllers.length ? controllers.join(", ") : "no controllers";
    return {
      ok: true,
      manager: new V2Manager(parent, limited, ctx.killFile ?? true),
      detail:
        `cgroup v2 (${what}) at ${parent}` +
        (unlimited.length ? `; executions get NO ${unlimited.join(", ")} limit (not requested)` : ""),
    };
  } catch (err) {
    return { ok: false, detail: `cgroup v2 at ${ownDir}: ${describeErr(err)}` };
  }
}

function readControllers(dir: string): string[] {
  return readFileSync(join(dir, "cgroup.controllers"), "utf8").trim().split(/\s+/).filter(Boolean);
}

/**
 * Says why each missing controller is not offered in `ownDir` and what would give it: bound to a
 * v1 hierarchy (the kernel hands a controller to v2 only once no v1 hierarchy holds it), not
 * delegated by a parent, or not in this kernel at all.
 */
function explainMissing(
  missing: readonly string[],
  available: readonly string[],
  ownDir: string,
  mountPoint: string,
  ctx: V2Context,
): string {
  let v1Ids = new Map<string, number>();
  try {
    v1Ids = parseProcCgroups(readFileSync(ctx.procCgroups ?? "/proc/cgroups", "utf8"));
  } catch {
    // the mount table alone then tells which controllers v1 holds
  }
  let atRoot: string[] = [];
  try {
    atRoot = readControllers(mountPoint);
  } catch {
    // unknown: a controller not in ownDir is then reported as missing from the kernel's v2
  }
  const reasons: string[] = [];
  const fixes = new Set<string>();
  for (const c of missing) {
    const v1Mount = ctx.mounts?.find((m) => m.fsType === "cgroup" && m.superOptions.includes(c));
    const v1Id = v1Ids.get(c) ?? 0;
    if (v1Mount || v1Id > 0) {
      reasons.push(
        v1Mount
          ? `${c} is bound to the cgroup v1 hierarchy at ${v1Mount.mountPoint}`
          : `${c} is bound to cgroup v1 hierarchy ${v1Id} (mounted elsewhere)`,
      );
      fixes.add(
        "boot with cgroup_no_v1=all (or systemd.unified_cgroup_hierarchy=1) so the kernel gives the controllers to cgroup v2, or run where v1 hierarchies hold all of memory, pids and cpu",
      );
    } else if (atRoot.includes(c)) {
      reasons.push(`${c} is not delegated: a parent of ${ownDir} does not enable it in cgroup.subtree_control`);
      fixes.add("enable them in the parents' cgroup.subtree_control (a systemd unit with Delegate=yes does this)");
    } else {
      reasons.push(`${c} is not offered by this kernel's cgroup v2 (disabled at boot with cgroup_disable= or not built in)`);
      fixes.add("use a kernel with the controller enabled");
    }
  }
  return (
    `cgroup v2 at ${mountPoint} lacks the ${missing.join(", ")} controller(s) in ${ownDir}/cgroup.controllers ` +
    `(it offers: ${available.length ? available.join(" ") : "none"}): ${reasons.join("; ")}. ` +
    `Executions would run without those limits, so this hierarchy is not used. To fix: ${[...fixes].join("; ")}`
  );
}

/**
 * On v2 a cgroup with processes cannot hand controllers to children ("no internal processes"), so
 * when our own cgroup refuses, the platform moves itself into a leaf beside the sandbox directory.
 */
function openV2(ownDir: string, instance: string, controllers: readonly string[]): string {
  const enable = controllers.map((c) => `+${c}`).join(" ");
  if (enable) {
    try {
      writeFileSync(join(ownDir, "cgroup.subtree_control"), enable);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EBUSY") throw err;
      const leaf = join(ownDir, `hexr-platform-${process.pid}`);
      if (!existsSync(leaf)) mkdirSync(leaf);
      writeFileSync(join(leaf, "cgroup.procs"), String(process.pid));
      writeFileSync(join(ownDir, "cgroup.subtree_control"), enable);
    }
  }
  removeStaleInstances(ownDir);
  const parent = join(ownDir, instance);
  mkdirSync(parent);
  if (enable) {
    try {
      writeFileSync(join(parent, "cgroup.subtree_control"), enable);
    } catch (err) {
      tryRmdir(parent);
      throw err;
    }
  }
  return parent;
}

function tryRmdir(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT";
  }
}

function readPids(file: string): number[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

function killPids(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

function tryWrite(file: string, value: string): void {
  try {
    writeFileSync(file, value);
  } catch {
    // absent or refused: the caller has another way
  }
}

abstract class BaseCgroup implements ExecCgroup {
  private destroyed: Promise<void> | undefined;
  /** Made with the background CPU weight, not yet prioritized. */
  background = false;

  constructor(
    readonly name: string,
    readonly dirs: readonly string[],
    private readonly owner: CgroupOwner,
  ) {}

  abstract add(pid: number): Promise<void>;
  abstract oomKills(): number;
  abstract pids(): number[];
  protected abstract killOnce(): void;
  /** Where the CPU weight is written, and its default. */
  protected abstract cpuWeight(): LimitWrite & { dir: string };

  async prioritize(): Promise<void> {
    if (!this.background) return;
    this.background = false;
    const w = this.cpuWeight();
    writeLimit(w.dir, w);
  }

  async killAll(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const left = this.pids();
      if (left.length === 0) return;
      this.killOnce();
      killPids(left);
      await sleep(i < 10 ? 2 : 20);
    }
  }

  destroy(): Promise<void> {
    return (this.destroyed ??= (async () => {
      // Mostly its processes are gone by now and the directories go at once (a non-empty one
      // refuses: EBUSY); else they are killed first. A killed process leaves its cgroup a moment
      // after its parent saw it exit.
      let left: readonly string[] = this.dirs;
      for (let i = 0; i < 200 && left.length; i++) {
        if (i === 1) await this.killAll(); // until none is left: later tries only wait for them to leave
        if (i > 0) await sleep(i < 10 ? 2 : 20);
        const errs = await nativeBinding().rmdirs([...left]);
        left = left.filter((_, j) => errs[j] !== 0 && errs[j] !== ENOENT);
      }
      if (left.length) this.owner.leftBehind(this, left);
      this.owner.gone(this);
    })());
  }
}

class V1Cgroup extends BaseCgroup {
  private readonly memory: string;
  private readonly pidsDir: string;

  constructor(name: string, dirs: string[], owner: CgroupOwner) {
    super(name, dirs, owner);
    this.memory = dirs[0]!;
    this.pidsDir = dirs[1]!;
  }

  async add(pid: number): Promise<void> {
    await Promise.all(this.dirs.map((d) => writeFile(join(d, "cgroup.procs"), String(pid))));
  }

  oomKills(): number {
    try {
      const text = readFileSync(join(this.memory, "memory.oom_control"), "utf8");
      const m = /^oom_kill (\d+)$/m.exec(text);
      if (m) return Number(m[1]);
      // Kernels before 4.13 do not count kills; hitting the limit is the best signal left.
      return Number(readFileSync(join(this.memory, "memory.failcnt"), "utf8").trim()) > 0 ? 1 : 0;
    } catch {
      return 0;
    }
  }

  pids(): number[] {
    return readPids(join(this.pidsDir, "cgroup.procs"));
  }

  protected cpuWeight(): LimitWrite & { dir: string } {
    return { dir: this.dirs[2]!, controller: "cpu", file: "cpu.shares", value: CPU_WEIGHT.v1.normal };
  }

  protected killOnce(): void {
    // v1 has no cgroup.kill; killAll signals each pid.
  }
}

class V2Cgroup extends BaseCgroup {
  constructor(
    name: string,
    dirs: string[],
    owner: CgroupOwner,
    private readonly killFile: boolean,
  ) {
    super(name, dirs, owner);
  }

  async add(pid: number): Promise<void> {
    await writeFile(join(this.dirs[0]!, "cgroup.procs"), String(pid));
  }

  oomKills(): number {
    try {
      const m = /^oom_kill (\d+)$/m.exec(readFileSync(join(this.dirs[0]!, "memory.events"), "utf8"));
      return m ? Number(m[1]) : 0;
    } catch {
      return 0;
    }
  }

  pids(): number[] {
    return readPids(join(this.dirs[0]!, "cgroup.procs"));
  }

  protected cpuWeight(): LimitWrite & { dir: string } {
    // optional: a v2 hierarchy without the cpu controller (tests only) has no cpu.weight
    return { dir: this.dirs[0]!, controller: "cpu", file: "cpu.weight", value: CPU_WEIGHT.v2.normal, optional: true };
  }

  protected killOnce(): void {
    if (!this.killFile) return;
    try {
      writeFileSync(join(this.dirs[0]!, "cgroup.kill"), "1"); // Linux 5.14+: atomic, fork-bomb proof
    } catch {
      // older kernel: killAll signals each pid
    }
  }
}

abstract class BaseManager implements CgroupManager {
  abstract readonly version: CgroupVersion;
  protected readonly live = new Set<ExecCgroup>();
  private seq = 0;
  onLeftBehind?: (c: { name: string; dirs: readonly string[]; pids: number[] }) => void;
  private readonly owner: CgroupOwner = {
    gone: (c) => this.live.delete(c),
    leftBehind: (c, dirs) => this.onLeftBehind?.({ name: c.name, dirs, pids: c.pids() }),
  };

  constructor(readonly parents: readonly string[]) {}

  /** Tells this manager's cgroups from another's below the same parent (an `instance` they share). */
  private readonly tag = randomBytes(3).toString("hex");

  protected nextName(): string {
    return `x${++this.seq}-${this.tag}`;
  }

  /** The directories of a new cgroup called `name`, and the limit files each gets. */
  protected abstract plan(name: string, limits: CgroupLimits): { dirs: string[]; writes: Array<[dir: string, w: LimitWrite]> };
  protected abstract wrap(name: string, dirs: string[], owner: CgroupOwner): BaseCgroup;

  async create(limits: CgroupLimits): Promise<ExecCgroup> {
    const name = this.nextName();
    const { dirs, writes } = this.plan(name, limits);
    // In order (v1's memsw limit may not be set below the memory limit).
    await nativeBinding().cgroupMake(
      dirs,
      writes.map(([dir, w]) => join(dir, w.file)),
      writes.map(([, w]) => w.value),
      writes.map(([, w]) => w.optional === true),
    );
    const cg = this.wrap(name, dirs, this.owner);
    cg.background = limits.background === true;
    this.live.add(cg);
    return cg;
  }

  async close(): Promise<void> {
    await Promise.all([...this.live].map((c) => c.destroy()));
    for (const p of this.parents) tryRmdir(p);
  }
}

class V1Manager extends BaseManager {
  readonly version = "v1" as const;

  protected plan(name: string, limits: CgroupLimits): { dirs: string[]; writes: Array<[string, LimitWrite]> } {
    const dirs = this.parents.map((p) => join(p, name)); // memory, pids, cpu (CONTROLLERS' order)
    return { dirs, writes: v1LimitWrites(limits).map((w) => [dirs[CONTROLLERS.indexOf(w.controller)]!, w]) };
  }

  protected wrap(name: string, dirs: string[], owner: CgroupOwner): BaseCgroup {
    return new V1Cgroup(name, dirs, owner);
  }
}

class V2Manager extends BaseManager {
  readonly version = "v2" as const;

  constructor(
    parent: string,
    /** The limits this hierarchy enforces: all three except where a test asked for fewer. */
    private readonly limited: readonly LimitController[],
    private readonly killFile: boolean,
  ) {
    super([parent]);
  }

  protected plan(name: string, limits: CgroupLimits): { dirs: string[]; writes: Array<[string, LimitWrite]> } {
    const dir = join(this.parents[0]!, name);
    return { dirs: [dir], writes: v2LimitWrites(limits, this.limited).map((w) => [dir, w]) };
  }

  protected wrap(name: string, dirs: string[], owner: CgroupOwner): BaseCgroup {
    return new V2Cgroup(name, dirs, owner, this.killFile);
  }
}
