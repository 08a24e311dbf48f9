/**
 * A scratch corner of the host's cgroup v2 hierarchy for tests of the v2 code on a hybrid host
 * (v1 hierarchies for the controllers, cgroup2 with few or none). Everything is created below one
 * directory of this process and is killed and removed afterwards, so the host's own cgroups are
 * never touched; the one global change (a controller enabled at the root) is undone.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseMountInfo } from "../cgroup.js";

/** Where cgroup2 is mounted here (a test failing on a host without it says so). */
export function unifiedMount(): string {
  const m = parseMountInfo(readFileSync("/proc/self/mountinfo", "utf8")).find((x) => x.fsType === "cgroup2");
  if (!m) throw new Error("no cgroup2 mount on this host: the v2 tests need one (hybrid or unified)");
  return m.mountPoint;
}

export function readCg(dir: string, file: string): string {
  return readFileSync(join(dir, file), "utf8").trim();
}

/** `populated` from cgroup.events: whether any process lives in the cgroup or below. */
export function populated(dir: string): boolean {
  return /^populated 1$/m.test(readCg(dir, "cgroup.events"));
}

/** This process's cgroup v2 path, from /proc/<pid>/cgroup. */
export function v2PathOf(pid: number | "self"): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("0::"));
  if (!line) throw new Error(`no cgroup v2 line in /proc/${pid}/cgroup`);
  return line.slice(3);
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie has left its cgroup and cannot run; it only waits for its parent.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

export class ScratchV2 {
  readonly root: string;
  private enabledAtRoot: string[] = [];
  /** This process's own v2 cgroup, to return to after a test moved it. */
  private readonly home: string;

  constructor(readonly mount = unifiedMount()) {
    this.home = join(mount, v2PathOf("self"));
    this.root = join(mount, `hexr-cgtest-${process.pid}-${randomBytes(3).toString("hex")}`);
    mkdirSync(this.root);
  }

  dir(...parts: string[]): string {
    const d = join(this.root, ...parts);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** Enables `controller` in the hierarchy root's subtree_control (undone by cleanup) and in the scratch root's. */
  enable(controller: string): void {
    const rootCtl = join(this.mount, "cgroup.subtree_control");
    if (!readCg(this.mount, "cgroup.subtree_control").split(" ").includes(controller)) {
      writeFileSync(rootCtl, `+${controller}`);
      this.enabledAtRoot.push(controller);
    }
    writeFileSync(join(this.root, "cgroup.subtree_control"), `+${controller}`);
  }

  /** Kills everything below the scratch root, removes it, and disables what `enable` turned on at the root. */
  async cleanup(): Promise<void> {
    const all = (d: string): string[] => [
      ...readdirSync(d, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .flatMap((e) => all(join(d, e.name))),
      d,
    ];
    if (existsSync(this.root)) {
      const dirs = all(this.root);
      // This process may have been moved in (delegation tests): back home.
      writeFileSync(join(this.home, "cgroup.procs"), String(process.pid));
      for (let i = 0; i < 200; i++) {
        for (const d of dirs) if (existsSync(d)) writeFileSync(join(d, "cgroup.kill"), "1");
        if (dirs.every((d) => !existsSync(d) || !populated(d))) break;
        await sleep(10);
      }
      for (const d of dirs) if (existsSync(d)) rmdirSync(d);
    }
    for (const c of this.enabledAtRoot.splice(0)) writeFileSync(join(this.mount, "cgroup.subtree_control"), `-${c}`);
  }
}

/** Runs a python program that waits for one byte on stdin (so it can be moved into a cgroup first). */
export function gatedPython(code: string): { child: ChildProcess; start(): void; lines(): Promise<string> } {
  const child = spawn("/usr/bin/python3", ["-c", `import sys\nsys.stdin.read(1)\n${code}`], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  let out = "";
  const firstLine = new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl !== -1) resolve(out.slice(0, nl));
    });
    child.on("exit", () => reject(new Error(`python exited before printing a line: ${out}`)));
  });
  firstLine.catch(() => {});
  return { child, start: () => child.stdin!.end("x"), lines: () => firstLine };
}
