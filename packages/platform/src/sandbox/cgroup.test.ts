import { isHexrError } from "@hexr/core";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  cpuQuotaUs,
  openCgroups,
  parseMountInfo,
  parseProcCgroup,
  parseProcCgroups,
  v1LimitWrites,
  v2LimitWrites,
  type CgroupManager,
  type CgroupProbe,
  type ExecCgroup,
} from "./cgroup.js";
import { gatedPython, pidAlive, populated, readCg, ScratchV2, v2PathOf } from "./test-support/cgroup-v2.js";

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

  it("reads /proc/cgroups: which controllers a v1 hierarchy holds", () => {
    const m = parseProcCgroups("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nhugetlb\t0\t1\t1\nrdma\t0\t1\t0\n");
    expect(m.get("cpu")).toBe(1);
    expect(m.get("hugetlb")).toBe(0);
    expect(m.has("rdma")).toBe(false); // disabled at boot
  });
});

describe("limit values written to the kernel", () => {
  const limits = { memoryBytes: 64 * 1024 * 1024, pids: 17, cpus: 0.5 };

  it("v2: memory.max, memory.swap.max, pids.max and cpu.max as quota and period", () => {
    expect(v2LimitWrites(limits)).toEqual([
      { controller: "memory", file: "memory.max", value: "67108864" },
      { controller: "memory", file: "memory.swap.max", value: "0", optional: true },
      { controller: "pids", file: "pids.max", value: "17" },
      { controller: "cpu", file: "cpu.max", value: "50000 100000" },
    ]);
    expect(v2LimitWrites({ ...limits, cpus: 2 }).at(-1)!.value).toBe("200000 100000");
  });

  it("v2: writes only for the controllers the hierarchy has", () => {
    expect(v2LimitWrites(limits, ["pids", "hugetlb"]).map((w) => w.file)).toEqual(["pids.max"]);
    expect(v2LimitWrites(limits, [])).toEqual([]);
  });

  it("v1: memory and memsw limits, pids.max, CFS period and quota", () => {
    expect(v1LimitWrites(limits)).toEqual([
      { controller: "memory", file: "memory.limit_in_bytes", value: "67108864" },
      { controller: "memory", file: "memory.memsw.limit_in_bytes", value: "67108864", optional: true },
      { controller: "pids", file: "pids.max", value: "17" },
      { controller: "cpu", file: "cpu.cfs_period_us", value: "100000" },
      { controller: "cpu", file: "cpu.cfs_quota_us", value: "50000" },
    ]);
  });

  it("background cgroups start at the lowest CPU weight (v1 cpu.shares 2, v2 cpu.weight 1)", () => {
    const bg = { ...limits, background: true };
    expect(v1LimitWrites(bg).at(-1)).toEqual({ controller: "cpu", file: "cpu.shares", value: "2" });
    expect(v2LimitWrites(bg).at(-1)).toEqual({ controller: "cpu", file: "cpu.weight", value: "1" });
    expect(v2LimitWrites(bg, ["memory", "pids"]).map((w) => w.file)).not.toContain("cpu.weight");
  });

  it("rounds the CPU quota and keeps it at or above the kernel's 1 ms minimum", () => {
    expect(cpuQuotaUs(0.5)).toBe(50_000);
    expect(cpuQuotaUs(1.234567)).toBe(123_457);
    expect(cpuQuotaUs(0.001)).toBe(1000);
    expect(cpuQuotaUs(0.0001)).toBe(1000);
  });

  it.each([
    [{ memoryBytes: 0 }, "memoryBytes"],
    [{ memoryBytes: 1.5 }, "memoryBytes"],
    [{ pids: -1 }, "pids"],
    [{ pids: Number.NaN }, "pids"],
    [{ cpus: 0 }, "cpus"],
    [{ cpus: Number.POSITIVE_INFINITY }, "cpus"],
  ])("rejects %o with a typed error naming %s", (bad, field) => {
    for (const fn of [v1LimitWrites, v2LimitWrites]) {
      let err: unknown;
      try {
        fn({ ...limits, ...bad });
      } catch (e) {
        err = e;
      }
      expect(isHexrError(err) && err.code).toBe("sandbox.invalid_cgroup_limits");
      expect(isHexrError(err) && err.kind).toBe("invalid_argument");
      expect(isHexrError(err) && err.details).toEqual({ errors: [{ path: field, message: expect.stringContaining(field) }] });
    }
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
    const cg = await manager.create({ memoryBytes: 64 * 1024 * 1024, pids: 17, cpus: 0.5 });
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
    await cg.add(child.pid!);
    expect(cg.pids()).toEqual([child.pid]);
    await cg.killAll();
    expect(await exited).toBe("SIGKILL");
    await cg.destroy();
    for (const d of cg.dirs) expect(existsSync(d)).toBe(false);
  });

  it("a background cgroup has the lowest CPU weight until prioritized", async () => {
    const cg = await manager.create({ memoryBytes: 64 * 1024 * 1024, pids: 8, cpus: 1, background: true });
    const [file, low, normal] = manager.version === "v1" ? ["cpu.shares", "2", "1024"] : ["cpu.weight", "1", "100"];
    const weight = () =>
      readFileSync(
        join(
          cg.dirs.find((d) => existsSync(join(d, file)))!,
          file,
        ),
        "utf8",
      ).trim();
    expect(weight()).toBe(low);
    await cg.prioritize();
    expect(weight()).toBe(normal);
    await cg.destroy();
    const plain = await manager.create({ memoryBytes: 64 * 1024 * 1024, pids: 8, cpus: 1 });
    expect(
      readFileSync(
        join(
          plain.dirs.find((d) => existsSync(join(d, file)))!,
          file,
        ),
        "utf8",
      ).trim(),
    ).toBe(normal);
    await plain.destroy();
  });

  it("counts the kernel's OOM kill when a process outgrows the memory limit", async () => {
    const cg = await manager.create({ memoryBytes: 32 * 1024 * 1024, pids: 16, cpus: 1 });
    // The process waits on stdin until it is inside the cgroup, then touches 200 MiB.
    const child = spawn("/usr/bin/python3", ["-c", "import sys; sys.stdin.read(1); s = b'x' * (200 * 2**20); print(len(s))"], {
      stdio: ["pipe", "pipe", "ignore"],
    });
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on("exit", (_c, sig) => r(sig)));
    await cg.add(child.pid!);
    child.stdin!.end("x");
    expect(await exited).toBe("SIGKILL");
    expect(cg.oomKills()).toBeGreaterThanOrEqual(1);
    await cg.destroy();
  });

  it("caps the number of processes", async () => {
    const cg = await manager.create({ memoryBytes: 64 * 1024 * 1024, pids: 8, cpus: 1 });
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
    await cg.add(child.pid!);
    child.stdin!.end("x");
    await exited;
    const [forks, errno] = out.trim().split(" ").map(Number);
    expect(errno).toBe(11); // EAGAIN
    expect(forks).toBe(7); // 8 pids: the parent and 7 children
    await cg.destroy(); // kills the sleeping children too
    for (const d of cg.dirs) expect(existsSync(d)).toBe(false);
  });

  it("tells its owner about a cgroup it cannot remove, and keeps what it could not", async () => {
    const cg = await manager.create({ memoryBytes: 64 * 1024 * 1024, pids: 8, cpus: 1 });
    // A cgroup with a child cgroup cannot be removed (EBUSY), as one with an unkillable process cannot.
    const stuck = join(cg.dirs[0]!, "held");
    mkdirSync(stuck);
    const told: Array<{ name: string; dirs: readonly string[]; pids: number[] }> = [];
    manager.onLeftBehind = (c) => told.push(c);
    try {
      await cg.destroy();
    } finally {
      manager.onLeftBehind = undefined;
      rmdirSync(stuck);
      rmdirSync(cg.dirs[0]!);
    }
    expect(told).toEqual([{ name: cg.name, dirs: [cg.dirs[0]], pids: [] }]);
    for (const d of cg.dirs.slice(1)) expect(existsSync(d)).toBe(false);
  }, 15_000);

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

/**
 * The v2 code on this host's own cgroup2 hierarchy. On a hybrid host it has none of memory, pids
 * and cpu (v1 hierarchies hold them), so these tests open it with the controllers it has and
 * exercise what v2 does without them: directories, cgroup.procs, cgroup.events, cgroup.kill,
 * removal, delegation via subtree_control, and the report of what is missing.
 */
describe("cgroup v2 on this kernel's unified hierarchy", () => {
  let scratch: ScratchV2;
  const managers: CgroupManager[] = [];
  const open = (dir: string, more: Parameters<typeof openCgroups>[0] = {}): CgroupManager => {
    const probe = openCgroups({ v2Dir: dir, v2Controllers: [], ...more });
    expect(probe.ok, probe.detail).toBe(true);
    const m = (probe as Extract<CgroupProbe, { ok: true }>).manager;
    managers.push(m);
    return m;
  };
  const limits = { memoryBytes: 64 * 1024 * 1024, pids: 64, cpus: 0.5 };

  beforeAll(() => {
    scratch = new ScratchV2();
  });
  afterAll(async () => {
    for (const m of managers) await m.close();
    await scratch?.cleanup();
  });

  describe("without memory, pids and cpu", () => {
    it("reports the missing controllers, why they are missing and what to do, and creates nothing", () => {
      const dir = scratch.dir("missing");
      const probe = openCgroups({ v2Dir: dir });
      expect(probe.ok).toBe(false);
      const v1 = parseMountInfo(readFileSync("/proc/self/mountinfo", "utf8")).filter((m) => m.fsType === "cgroup");
      const boundTo = (c: string) => v1.find((m) => m.superOptions.includes(c))?.mountPoint;
      expect(probe.detail).toContain(`lacks the memory, pids, cpu controller(s) in ${dir}/cgroup.controllers`);
      for (const c of ["memory", "pids", "cpu"]) {
        // This host binds each to a v1 hierarchy; the detail names the mount point.
        expect(boundTo(c), `${c} on v1`).toBeDefined();
        expect(probe.detail).toContain(`${c} is bound to the cgroup v1 hierarchy at ${boundTo(c)}`);
      }
      expect(probe.detail).toContain("Executions would run without those limits");
      expect(probe.detail).toContain("cgroup_no_v1=all");
      expect(readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory())).toEqual([]);
    });

    it("finds the same through /proc/self on a host whose only cgroup mount is cgroup2", () => {
      // This host's mountinfo without the v1 mounts and its cgroup file with our v2 path set to a
      // scratch dir: the discovery path of openCgroups() then reaches the real unified hierarchy.
      const dir = scratch.dir("discovered");
      const fakeSelf = mkdtempSync(join(tmpdir(), "hexr-procself-"));
      const mountinfo = readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .filter((l) => !/ - cgroup /.test(l))
        .join("\n");
      writeFileSync(join(fakeSelf, "mountinfo"), mountinfo);
      writeFileSync(join(fakeSelf, "cgroup"), `0::/${dir.slice(scratch.mount.length + 1)}\n`);
      const probe = openCgroups({ procSelf: fakeSelf });
      expect(probe.ok).toBe(false);
      expect(probe.detail).toContain(`in ${dir}/cgroup.controllers`);
      // Without the v1 mounts in view, /proc/cgroups still tells that v1 holds them.
      const ids = parseProcCgroups(readFileSync("/proc/cgroups", "utf8"));
      for (const c of ["memory", "pids", "cpu"])
        expect(probe.detail).toContain(`${c} is bound to cgroup v1 hierarchy ${ids.get(c)}`);
    });

    it("rejects a directory that is not on cgroup2, and bad controller names", () => {
      expect(openCgroups({ v2Dir: tmpdir(), v2Controllers: [] })).toEqual({
        ok: false,
        detail: `${tmpdir()} is not on a cgroup v2 filesystem`,
      });
      for (const [opts, code] of [
        [{ v2Dir: scratch.root, v2Controllers: ["memory", "+pids"] }, "sandbox.invalid_cgroup_controller"],
        [{ v2Dir: "relative/dir" }, "sandbox.invalid_cgroup_dir"],
      ] as const) {
        let err: unknown;
        try {
          openCgroups(opts);
        } catch (e) {
          err = e;
        }
        expect(isHexrError(err) && [err.code, err.kind]).toEqual([code, "invalid_argument"]);
      }
    });
  });

  describe("per-execution cgroups", () => {
    let manager: CgroupManager;
    beforeAll(() => {
      manager = open(scratch.dir("exec"));
    });

    it("opens an instance directory and says which limits are not enforced", () => {
      expect(manager.version).toBe("v2");
      expect(manager.parents).toHaveLength(1);
      expect(dirname(manager.parents[0]!)).toBe(join(scratch.root, "exec"));
      expect(existsSync(manager.parents[0]!)).toBe(true);
      const again = openCgroups({ v2Dir: join(scratch.root, "exec"), v2Controllers: [] });
      expect(again.ok && again.detail).toMatch(/^cgroup v2 \(no controllers\) at .*; executions get NO memory, pids, cpu limit/);
      if (again.ok) managers.push(again.manager);
    });

    it("contains a process tree: children are born inside, populated follows it, killAll empties it", async () => {
      const cg = await manager.create(limits);
      const dir = cg.dirs[0]!;
      expect(existsSync(dir)).toBe(true);
      expect(existsSync(join(dir, "memory.max"))).toBe(false); // no memory controller: nothing to write
      expect(populated(dir)).toBe(false);
      // 3 children with one grandchild each, forked only once the parent is inside.
      const py = gatedPython(
        "import os, time\npids = [os.getpid()]\nfor _ in range(3):\n  r, w = os.pipe()\n  c = os.fork()\n  if c == 0:\n    g = os.fork()\n    if g == 0:\n      time.sleep(60); os._exit(0)\n    os.write(w, str(g).encode()); time.sleep(60); os._exit(0)\n  pids += [c, int(os.read(r, 20))]\nprint(' '.join(map(str, pids)), flush=True)\ntime.sleep(60)",
      );
      await cg.add(py.child.pid!);
      expect(v2PathOf(py.child.pid!)).toBe(dir.slice(scratch.mount.length));
      py.start();
      const tree = (await py.lines()).split(" ").map(Number);
      expect(tree).toHaveLength(7);
      expect(cg.pids().sort()).toEqual([...tree].sort());
      for (const p of tree) expect(v2PathOf(p)).toBe(dir.slice(scratch.mount.length));
      expect(populated(dir)).toBe(true);
      expect(populated(manager.parents[0]!)).toBe(true); // populated counts descendants

      const exited = new Promise<NodeJS.Signals | null>((r) => py.child.on("exit", (_c, sig) => r(sig)));
      await cg.killAll();
      expect(await exited).toBe("SIGKILL");
      expect(cg.pids()).toEqual([]);
      expect(populated(dir)).toBe(false);
      expect(tree.filter(pidAlive)).toEqual([]);
      await cg.destroy();
      expect(existsSync(dir)).toBe(false);
    });

    // A process that keeps forking and one that hops to a new pid (fork, parent exits) are what
    // defeats killing by pid lists; cgroup.kill is atomic, the fallback loop must still win.
    it.each([
      ["cgroup.kill", true],
      ["the per-pid loop (kernels before 5.14)", false],
    ])("killAll with %s stops processes that fork while being killed", async (_how, killFile) => {
      const m = killFile ? manager : open(scratch.dir(`loop`), { v2KillFile: false });
      const cg = await m.create(limits);
      const dir = cg.dirs[0]!;
      // Bounded (no pids controller here): up to 400 sleepers, plus 8 pid hoppers.
      const py = gatedPython(
        "import os, time\nfor _ in range(8):\n  if os.fork() == 0:\n    while True:\n      if os.fork() != 0: os._exit(0)\nprint('go', flush=True)\nfor _ in range(400):\n  if os.fork() == 0:\n    time.sleep(60); os._exit(0)\n  time.sleep(0.002)\ntime.sleep(60)",
      );
      await cg.add(py.child.pid!);
      py.start();
      await py.lines(); // hopping and forking are under way
      expect(cg.pids().length).toBeGreaterThanOrEqual(2);
      await cg.killAll();
      expect(cg.pids()).toEqual([]);
      expect(populated(dir)).toBe(false);
      await cg.destroy();
      expect(existsSync(dir)).toBe(false);
    });

    it("destroy kills what is inside and removes the directory; close removes the instance", async () => {
      const m = open(scratch.dir("close"));
      const live: ExecCgroup[] = [await m.create(limits), await m.create(limits)];
      const sleepers: number[] = [];
      for (const cg of live) {
        const c = spawn("sleep", ["60"], { stdio: "ignore" });
        await cg.add(c.pid!);
        sleepers.push(c.pid!);
      }
      await live[0]!.destroy();
      expect(existsSync(live[0]!.dirs[0]!)).toBe(false);
      expect(pidAlive(sleepers[0]!)).toBe(false);
      expect(pidAlive(sleepers[1]!)).toBe(true);
      await m.close(); // destroys the one left
      expect(existsSync(live[1]!.dirs[0]!)).toBe(false);
      expect(existsSync(m.parents[0]!)).toBe(false);
      expect(pidAlive(sleepers[1]!)).toBe(false);
    });

    it("removes instances of platforms that died, killing what still runs there", async () => {
      const base = scratch.dir("stale");
      const dead = spawnSync("true").pid!;
      const stale = join(base, `hexr-sandbox-${dead}-abcdef`);
      mkdirSync(join(stale, "x1-000000"), { recursive: true });
      const orphan = spawn("sleep", ["60"], { stdio: "ignore" });
      writeFileSync(join(stale, "x1-000000", "cgroup.procs"), String(orphan.pid));
      const gone = new Promise<NodeJS.Signals | null>((r) => orphan.on("exit", (_c, sig) => r(sig)));
      const leaf = scratch.dir("stale", `hexr-platform-${dead}`);
      const alive = scratch.dir("stale", `hexr-sandbox-${process.pid}-abcdef`); // ours: left alone
      open(base);
      expect(await gone).toBe("SIGKILL");
      expect(existsSync(stale)).toBe(false);
      expect(existsSync(leaf)).toBe(false);
      expect(existsSync(alive)).toBe(true);
    });
  });

  // hugetlb is the one controller this kernel gives cgroup v2, so it stands in for memory/pids/cpu
  // to exercise delegation: subtree_control, the no-internal-processes rule and the leaf move.
  describe("delegating a controller (hugetlb)", () => {
    beforeAll(() => {
      scratch.enable("hugetlb");
    });

    it("enables the controller for the instance and each execution", async () => {
      const m = open(scratch.dir("deleg"), { v2Controllers: ["hugetlb"] });
      expect(readCg(m.parents[0]!, "cgroup.controllers")).toBe("hugetlb");
      expect(readCg(m.parents[0]!, "cgroup.subtree_control")).toBe("hugetlb");
      const cg = await m.create(limits);
      expect(readCg(cg.dirs[0]!, "cgroup.controllers")).toBe("hugetlb");
      expect(existsSync(join(cg.dirs[0]!, "memory.max"))).toBe(false);
    });

    it("moves itself into a leaf when its own cgroup holds processes (no internal processes)", async () => {
      const own = scratch.dir("busy");
      writeFileSync(join(own, "cgroup.procs"), String(process.pid)); // the platform lives in its cgroup
      // The kernel's rule the code works around: this write fails while a process is inside.
      let refused: unknown;
      try {
        writeFileSync(join(own, "cgroup.subtree_control"), "+hugetlb");
      } catch (e) {
        refused = e;
      }
      expect((refused as NodeJS.ErrnoException).code).toBe("EBUSY");

      const m = open(own, { v2Controllers: ["hugetlb"] });
      const leaf = join(own, `hexr-platform-${process.pid}`);
      expect(v2PathOf("self")).toBe(leaf.slice(scratch.mount.length));
      expect(readCg(own, "cgroup.subtree_control")).toBe("hugetlb");
      const cg = await m.create(limits);
      const c = spawn("sleep", ["60"], { stdio: "ignore" });
      await cg.add(c.pid!);
      expect(populated(cg.dirs[0]!)).toBe(true);
      await cg.destroy();
      expect(existsSync(cg.dirs[0]!)).toBe(false);
    });

    it("says a controller is not delegated when a parent does not enable it", () => {
      const inner = scratch.dir("nodeleg", "inner"); // nodeleg enables nothing for inner
      const probe = openCgroups({ v2Dir: inner, v2Controllers: ["hugetlb"] });
      expect(probe.ok).toBe(false);
      expect(probe.detail).toContain(
        `hugetlb is not delegated: a parent of ${inner} does not enable it in cgroup.subtree_control`,
      );
      expect(probe.detail).toContain("(it offers: none)");
      expect(probe.detail).toContain("To fix: enable them in the parents' cgroup.subtree_control");
    });

    it("says a controller is not in this kernel at all", () => {
      // rdma is not built into this kernel: /proc/cgroups does not list it.
      expect(parseProcCgroups(readFileSync("/proc/cgroups", "utf8")).has("rdma")).toBe(false);
      const probe = openCgroups({ v2Dir: scratch.dir("deleg"), v2Controllers: ["hugetlb", "rdma"] });
      expect(probe.ok).toBe(false);
      expect(probe.detail).toContain("lacks the rdma controller(s)");
      expect(probe.detail).toContain("(it offers: hugetlb)");
      expect(probe.detail).toContain("rdma is not offered by this kernel's cgroup v2");
      expect(probe.detail).toMatch(/To fix: use a kernel with the controller enabled$/);
    });
  });
});
