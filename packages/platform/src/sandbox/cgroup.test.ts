import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openCgroups, parseMountInfo, parseProcCgroup, type CgroupManager } from "./cgroup.js";

describe("cgroup discovery parsing", () => {
  it("reads mountinfo, including escaped paths and hybrid hierarchies", () => {
    const text = [
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct",
      "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
      "50 23 0:40 / /mnt/with\\040space rw - ext4 /dev/x rw",
    ].join("\n");
    const m = parseMountInfo(text);
    expect(m).toHaveLength(5);
    expect(m[1]).toMatchObject({
      fsType: "cgroup",
      mountPoint: "/sys/fs/cgroup/cpu,cpuacct",
      superOptions: ["rw", "cpu", "cpuacct"],
    });
    expect(m[2]!.root).toBe("/docker/abc");
    expect(m[3]!.fsType).toBe("cgroup2");
    expect(m[4]!.mountPoint).toBe("/mnt/with space");
  });

  it("reads /proc/self/cgroup for v1 controllers and the v2 path", () => {
    const m = parseProcCgroup("12:pids:/a\n4:cpu,cpuacct:/b\n1:name=systemd:/c\n0::/d\n");
    expect(m.get("pids")).toBe("/a");
    expect(m.get("cpu")).toBe("/b");
    expect(m.get("cpuacct")).toBe("/b");
    expect(m.get("")).toBe("/d");
  });
});

describe("per-execution cgroups on this kernel", () => {
  const probe = openCgroups();
  let manager: CgroupManager;
  afterAll(async () => {
    await manager?.close();
  });

  it("finds a writable hierarchy with memory, pids and cpu", () => {
    expect(probe.ok, probe.detail).toBe(true);
    manager = (probe as { manager: CgroupManager }).manager;
    expect(["v1", "v2"]).toContain(manager.version);
    for (const p of manager.parents) expect(existsSync(p)).toBe(true);
  });

  it("writes the limits, contains a process, kills it and removes the cgroup", async () => {
    const cg = manager.create({ memoryBytes: 64 * 1024 * 1024, pids: 17, cpus: 0.5 });
    const read = (name: string) => {
      for (const d of cg.dirs) if (existsSync(join(d, name))) return readFileSync(join(d, name), "utf8").trim();
      throw new Error(`${name} not found`);
    };
    if (manager.version === "v1") {
      expect(read("memory.limit_in_bytes")).toBe(String(64 * 1024 * 1024));
      expect(read("cpu.cfs_quota_us")).toBe("50000");
    } else {
      expect(read("memory.max")).toBe(String(64 * 1024 * 1024));
      expect(read("cpu.max")).toBe("50000 100000");
    }
    expect(read("pids.max")).toBe("17");

    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on("exit", (_c, sig) => r(sig)));
    cg.add(child.pid!);
    expect(cg.pids()).toEqual([child.pid]);
    await cg.killAll();
    expect(await exited).toBe("SIGKILL");
    await cg.destroy();
    for (const d of cg.dirs) expect(existsSync(d)).toBe(false);
  });

  it("counts the kernel's OOM kill when a process outgrows the memory limit", async () => {
    const cg = manager.create({ memoryBytes: 32 * 1024 * 1024, pids: 16, cpus: 1 });
    // The process waits on stdin until it is inside the cgroup, then touches 200 MiB.
    const child = spawn("/usr/bin/python3", ["-c", "import sys; sys.stdin.read(1); s = b'x' * (200 * 2**20); print(len(s))"], {
      stdio: ["pipe", "pipe", "ignore"],
    });
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on("exit", (_c, sig) => r(sig)));
    cg.add(child.pid!);
    child.stdin!.end("x");
    expect(await exited).toBe("SIGKILL");
    expect(cg.oomKills()).toBeGreaterThanOrEqual(1);
    await cg.destroy();
  });

  it("caps the number of processes", async () => {
    const cg = manager.create({ memoryBytes: 64 * 1024 * 1024, pids: 8, cpus: 1 });
    const child = spawn(
      "/usr/bin/python3",
      [
        "-c",
        "import os, sys, time\nsys.stdin.read(1)\nn = 0\ntry:\n  while True:\n    if os.fork() == 0:\n      time.sleep(30); os._exit(0)\n    n += 1\nexcept OSError as e:\n  print(n, e.errno)",
      ],
      { stdio: ["pipe", "pipe", "ignore"] },
    );
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d));
    const exited = new Promise<void>((r) => child.on("exit", () => r()));
    cg.add(child.pid!);
    child.stdin!.end("x");
    await exited;
    const [forks, errno] = out.trim().split(" ").map(Number);
    expect(errno).toBe(11); // EAGAIN
    expect(forks).toBe(7); // 8 pids: the parent and 7 children
    await cg.destroy(); // kills the sleeping children too
    for (const d of cg.dirs) expect(existsSync(d)).toBe(false);
  });

  it("removes instance directories of platforms that died", async () => {
    const dead = spawnSync("true").pid!; // exited: its pid is free
    const stale = manager.parents.map((p) => join(dirname(p), `hexr-sandbox-${dead}-abcdef`));
    for (const s of stale) {
      mkdirSync(s);
      mkdirSync(join(s, "x1-000000"));
    }
    const again = openCgroups();
    expect(again.ok).toBe(true);
    for (const s of stale) expect(existsSync(s)).toBe(false);
    if (again.ok) await again.manager.close();
  });
});
