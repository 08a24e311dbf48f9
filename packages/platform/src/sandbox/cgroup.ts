/**
 * A fresh cgroup per execution (memory, pids, CPU quota), on cgroup v1 (one directory per
 * controller hierarchy) or v2 (one unified directory). Everything lives below the platform's own
 * cgroup, in a directory of this instance, so limits of the surrounding container still apply
 * and parallel platforms never touch each other's executions.
 */

import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join, posix } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export type CgroupVersion = "v1" | "v2";

export interface CgroupLimits {
  memoryBytes: number;
  pids: number;
  /** Cores; 0.5 = half a core. */
  cpus: number;
}

export interface ExecCgroup {
  readonly name: string;
  /** The directories of this cgroup (one per v1 controller, or one on v2). */
  readonly dirs: readonly string[];
  /** Moves a process in; its future children are born inside. */
  add(pid: number): void;
  /** OOM kills the kernel performed in this cgroup. */
  oomKills(): number;
  /** Processes currently inside. */
  pids(): number[];
  /** SIGKILLs every process inside until none is left (bounded). */
  killAll(): Promise<void>;
  /** killAll, then removes the directories. */
  destroy(): Promise<void>;
}

export interface CgroupManager {
  readonly version: CgroupVersion;
  /** This instance's parent directories, where per-execution cgroups are created. */
  readonly parents: readonly string[];
  create(limits: CgroupLimits): ExecCgroup;
  /** Destroys what is left and removes the instance directories. */
  close(): Promise<void>;
}

export type CgroupProbe = { ok: true; manager: CgroupManager; detail: string } | { ok: false; detail: string };

export interface OpenCgroupsOptions {
  /** Name of this instance's directory under the platform's own cgroup. */
  instance?: string;
  /** `/proc/self` (tests of the parsing point elsewhere). */
  procSelf?: string;
}

const CONTROLLERS = ["memory", "pids", "cpu"] as const;
type Controller = (typeof CONTROLLERS)[number];
const CPU_PERIOD_US = 100_000;

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

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes instance directories left by platforms that died without cleaning up (SIGKILL, crash):
 * kills what still runs in them and removes the empty cgroups.
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
      killPids(readPids(join(c, "cgroup.procs")));
      tryRmdir(c);
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
  const ownDir = dirIn(unified, own.get("") ?? "/");
  let available: string[];
  try {
    available = readFileSync(join(ownDir, "cgroup.controllers"), "utf8").trim().split(/\s+/);
  } catch (err) {
    return {
      ok: false,
      detail: `cgroup v2 at ${unified.mountPoint}: cannot read ${ownDir}/cgroup.controllers: ${describeErr(err)}`,
    };
  }
  const missing = CONTROLLERS.filter((c) => !available.includes(c));
  if (missing.length) {
    return {
      ok: false,
      detail:
        `cgroup v2 at ${unified.mountPoint} lacks the ${missing.join(", ")} controller(s) in ${ownDir}` +
        (CONTROLLERS.some((c) => v1[c]) ? " (they are bound to cgroup v1 hierarchies)" : ""),
    };
  }
  try {
    const parent = openV2(ownDir, instance);
    return { ok: true, manager: new V2Manager(parent), detail: `cgroup v2 (memory, pids, cpu) at ${parent}` };
  } catch (err) {
    return { ok: false, detail: `cgroup v2 at ${ownDir}: ${describeErr(err)}` };
  }
}

/**
 * On v2 a cgroup with processes cannot hand controllers to children ("no internal processes"), so
 * when our own cgroup refuses, the platform moves itself into a leaf beside the sandbox directory.
 */
function openV2(ownDir: string, instance: string): string {
  const enable = "+memory +pids +cpu";
  try {
    writeFileSync(join(ownDir, "cgroup.subtree_control"), enable);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EBUSY") throw err;
    const leaf = join(ownDir, `hexr-platform-${process.pid}`);
    if (!existsSync(leaf)) mkdirSync(leaf);
    writeFileSync(join(leaf, "cgroup.procs"), String(process.pid));
    writeFileSync(join(ownDir, "cgroup.subtree_control"), enable);
  }
  removeStaleInstances(ownDir);
  const parent = join(ownDir, instance);
  mkdirSync(parent);
  try {
    writeFileSync(join(parent, "cgroup.subtree_control"), enable);
  } catch (err) {
    tryRmdir(parent);
    throw err;
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

function writeIfExists(file: string, value: string): void {
  if (existsSync(file)) writeFileSync(file, value);
}

abstract class BaseCgroup implements ExecCgroup {
  private destroyed: Promise<void> | undefined;

  constructor(
    readonly name: string,
    readonly dirs: readonly string[],
    private readonly onGone: (c: ExecCgroup) => void,
  ) {}

  abstract add(pid: number): void;
  abstract oomKills(): number;
  abstract pids(): number[];
  protected abstract killOnce(): void;

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
      await this.killAll();
      // A killed process leaves its cgroup a moment after its parent saw it exit.
      for (let i = 0; i < 200; i++) {
        if (this.dirs.every((d) => tryRmdir(d))) break;
        await sleep(i < 10 ? 2 : 20);
      }
      this.onGone(this);
    })());
  }
}

class V1Cgroup extends BaseCgroup {
  private readonly memory: string;
  private readonly pidsDir: string;

  constructor(name: string, dirs: string[], onGone: (c: ExecCgroup) => void) {
    super(name, dirs, onGone);
    this.memory = dirs[0]!;
    this.pidsDir = dirs[1]!;
  }

  add(pid: number): void {
    for (const d of this.dirs) writeFileSync(join(d, "cgroup.procs"), String(pid));
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

  protected killOnce(): void {
    // v1 has no cgroup.kill; killAll signals each pid.
  }
}

class V2Cgroup extends BaseCgroup {
  add(pid: number): void {
    writeFileSync(join(this.dirs[0]!, "cgroup.procs"), String(pid));
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

  protected killOnce(): void {
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

  constructor(readonly parents: readonly string[]) {}

  protected nextName(): string {
    return `x${++this.seq}-${randomBytes(3).toString("hex")}`;
  }

  abstract create(limits: CgroupLimits): ExecCgroup;

  async close(): Promise<void> {
    await Promise.all([...this.live].map((c) => c.destroy()));
    for (const p of this.parents) tryRmdir(p);
  }
}

class V1Manager extends BaseManager {
  readonly version = "v1" as const;

  create(limits: CgroupLimits): ExecCgroup {
    const name = this.nextName();
    const [memParent, pidsParent, cpuParent] = this.parents as [string, string, string];
    const dirs = [join(memParent, name), join(pidsParent, name), join(cpuParent, name)];
    const made: string[] = [];
    try {
      for (const d of dirs) {
        mkdirSync(d);
        made.push(d);
      }
      const [mem, pids, cpu] = dirs as [string, string, string];
      writeFileSync(join(mem, "memory.limit_in_bytes"), String(limits.memoryBytes));
      // Without this, swap would extend the limit wherever swap accounting is on.
      writeIfExists(join(mem, "memory.memsw.limit_in_bytes"), String(limits.memoryBytes));
      writeFileSync(join(pids, "pids.max"), String(limits.pids));
      writeFileSync(join(cpu, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
      writeFileSync(join(cpu, "cpu.cfs_quota_us"), String(Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US))));
    } catch (err) {
      for (const d of made.reverse()) tryRmdir(d);
      throw err;
    }
    const cg = new V1Cgroup(name, dirs, (c) => this.live.delete(c));
    this.live.add(cg);
    return cg;
  }
}

class V2Manager extends BaseManager {
  readonly version = "v2" as const;

  constructor(parent: string) {
    super([parent]);
  }

  create(limits: CgroupLimits): ExecCgroup {
    const name = this.nextName();
    const dir = join(this.parents[0]!, name);
    mkdirSync(dir);
    try {
      writeFileSync(join(dir, "memory.max"), String(limits.memoryBytes));
      writeIfExists(join(dir, "memory.swap.max"), "0");
      writeFileSync(join(dir, "pids.max"), String(limits.pids));
      writeFileSync(join(dir, "cpu.max"), `${Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US))} ${CPU_PERIOD_US}`);
    } catch (err) {
      tryRmdir(dir);
      throw err;
    }
    const cg = new V2Cgroup(name, [dir], (c) => this.live.delete(c));
    this.live.add(cg);
    return cg;
  }
}
