/**
 * The fork server (zygote.ts, native/src/zygote.c) through the namespace backend: forked sandboxes,
 * from a python zygote or the runner's, are confined as bubblewrap ones are; python copies end as a
 * new interpreter does and never share a zygote across tenants; and the backend falls back to
 * bubblewrap sandboxes when the fork server fails.
 */

import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BackendExecRequest, BackendExecResult } from "../types.js";
import { NamespaceBackend, type NamespaceBackendOptions } from "./backend.js";

const MiB = 1024 * 1024;
const LIMITS = { memoryBytes: 256 * MiB, pids: 64, cpus: 1, tmpfsBytes: 16 * MiB, maxOutputBytes: 64 * 1024 };
let seq = 0;

function request(code: string, over: Partial<BackendExecRequest> = {}): BackendExecRequest {
  return { id: `z${++seq}`, code, language: "python", timeoutMs: 30_000, installTimeoutMs: 0, env: {}, tenant: "acme", ...over };
}

async function started(opts: Partial<NamespaceBackendOptions> = {}): Promise<NamespaceBackend> {
  const b = new NamespaceBackend({ limits: LIMITS, warmPool: 1, ...opts });
  const h = await b.start();
  expect(h.available, h.summary).toBe(true);
  return b;
}

/**
 * Pids of this process's zygotes (the host's view: comm `hexr-zygote`, descended from us). A
 * zygote's own children keep its name for a while (its probe until it exits, a sandbox's first
 * process until it execs hexr-init) and are not counted; one whose zygote is gone is.
 */
function ourZygotes(): number[] {
  const parent = (pid: number) => Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  const isZygoteNamed = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "hexr-zygote";
    } catch {
      return false; // gone meanwhile
    }
  };
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      if (!isZygoteNamed(pid) || isZygoteNamed(parent(pid))) continue;
      for (let p = parent(pid); p > 1; p = parent(p)) {
        if (p === process.pid) {
          out.push(pid);
          break;
        }
      }
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** What pid 1 of the sandbox is: the fork server's init (`hexr-init`) or bubblewrap's (`bwrap`). */
const INIT = "print(open('/proc/1/comm').read().strip())";

describe("fork server", () => {
  let b: NamespaceBackend;
  beforeAll(async () => {
    b = await started();
  });
  afterAll(() => b.stop());

  it("is proven at start and leaves no zygote running until a python execution comes", () => {
    const check = b.health().checks.find((c) => c.name === "fork-server");
    expect(check?.ok, check?.detail).toBe(true);
    expect(b.forkServerState()).toMatchObject({ active: true });
  });

  it("forks python executions from the tenant's zygote, and the others from the runner's", async () => {
    // A copy of the zygote's interpreter: hash randomization was on when it started.
    const flags = `${INIT}\nimport sys\nprint(sys.flags.hash_randomization)`;
    expect((await b.exec(request(flags))).stdout).toBe("hexr-init\n1\n");
    expect(ourZygotes()).toHaveLength(1);
    expect(b.forkServerState().zygotes).toBe(1);
    // A variable read at startup: a new interpreter, started by the runner in a copy of the runner's zygote.
    expect((await b.exec(request(flags, { env: { PYTHONHASHSEED: "0" } }))).stdout).toBe("hexr-init\n0\n");
    expect((await b.exec(request("cat /proc/1/comm", { language: "shell" }))).stdout).toBe("hexr-init\n");
    expect(
      (
        await b.exec(
          request("console.log(require('fs').readFileSync('/proc/1/comm', 'utf8').trim())", { language: "javascript" }),
        )
      ).stdout,
    ).toBe("hexr-init\n");
    expect(ourZygotes()).toHaveLength(2);
    expect(b.forkServerState().zygotes).toBe(2);
  });

  // The same program in a python zygote's copy, and in a new interpreter the runner starts in a copy
  // of the runner's zygote (a startup variable sends it there).
  // A python stub's variables come with its go; the runner reads them from job.sh.
  it.each([
    ["a forked interpreter", {}, ["main.py"]],
    ["the runner's copy", { PYTHONHASHSEED: "0" }, ["job.sh", "main.py"]],
  ])("confines %s as a bubblewrap sandbox's", async (_, env: Record<string, string>, job: string[]) => {
    const r = await b.exec(
      request(
        `
import json, os, socket
status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)
def tryopen(p, mode):
    try:
        open(p, mode).close()
        return "opened"
    except OSError as e:
        return e.strerror
def tryls(p):
    try:
        return sorted(os.listdir(p))
    except OSError as e:
        return e.strerror
def loopback(family, addr):
    srv = socket.socket(family)
    srv.bind((addr, 0))
    srv.listen()
    c = socket.create_connection((addr, srv.getsockname()[1]), timeout=5)
    conn, _ = srv.accept()
    c.sendall(b"ping")
    return conn.recv(4).decode()
def dumpable():
    import ctypes
    return ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
def unshare():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.unshare(0x10000000) == 0 or os.strerror(ctypes.get_errno())
print(json.dumps({
    "ids": [os.getuid(), os.getgid(), os.geteuid()],
    "caps": [status["CapEff"].strip(), status["CapPrm"].strip(), status["CapBnd"].strip(), status["CapAmb"].strip()],
    "nnp": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), "me": [os.getpid(), os.getppid()],
    "ifaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]),
    "host": socket.gethostname(), "tmp": tryls("/tmp"), "shm": tryls("/dev/shm"), "pts": tryls("/dev/pts"),
    "run": tryls("/run/hexr"), "job": tryls("/run/hexr/job"), "jobs": tryls("/tmp/jobs"),
    "mounts": [l.split()[4] for l in open("/proc/self/mountinfo")], "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
    "env": sorted(os.environ), "cwd": os.getcwd(), "unshare": unshare(),
    "loopback": [loopback(socket.AF_INET, "127.0.0.1"), loopback(socket.AF_INET6, "::1")],
    "init": [tryopen("/proc/1/mem", "r+b"), tryopen("/proc/1/environ", "rb"), open("/proc/1/status").read().split("Seccomp:")[1].split()[0]],
    "dumpable": dumpable(),
}))`,
        { env },
      ),
    );
    expect(r.stderr).toBe("");
    const v = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(v).toMatchObject({
      ids: [65534, 65534, 65534],
      caps: ["0000000000000000", "0000000000000000", "0000000000000000", "0000000000000000"],
      nnp: "1",
      seccomp: "2",
      pids: [1, 2],
      me: [2, 1],
      ifaces: ["lo"],
      host: "sandbox",
      tmp: [],
      shm: [],
      pts: ["ptmx"],
      run: ["job", "runner.sh"],
      job,
      jobs: "No such file or directory",
      cwd: "/tmp",
      unshare: "Operation not permitted",
      loopback: ["ping", "ping"],
      // The sandbox's init (pid 1) held capabilities while it set the sandbox up: no way into it.
      init: ["Permission denied", "Permission denied", "2"],
      dumpable: 1,
    });
    // Only 0-2 (the directory listing's own descriptor aside): nothing of the zygote or the platform.
    expect((v["fds"] as number[]).filter((fd) => fd <= 2)).toEqual([0, 1, 2]);
    expect((v["fds"] as number[]).length).toBe(4);
    expect(v["mounts"]).toEqual(
      expect.arrayContaining(["/", "/usr", "/etc", "/proc", "/dev", "/dev/pts", "/dev/shm", "/tmp", "/run/hexr/job"]),
    );
    expect(v["env"]).toEqual(
      [
        "HOME",
        "LANG",
        "PATH",
        "PWD",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "TMPDIR",
        "USER",
        ...Object.keys(env),
      ].sort(),
    );
  });

  it("gives each execution fresh file systems and processes, never another's", async () => {
    const leave = await b.exec(
      request(
        "import os, subprocess\nopen('/tmp/left', 'w').write('x')\nopen('/dev/shm/left', 'w').write('x')\nsubprocess.Popen(['sleep', '30'])\nprint('ok')",
      ),
    );
    expect(leave.stdout).toBe("ok\n");
    const look = await b.exec(
      request(
        "import os\nprint(os.listdir('/tmp'), os.listdir('/dev/shm'), sorted(p for p in os.listdir('/proc') if p.isdigit()))",
      ),
    );
    expect(look.stdout).toBe("[] [] ['1', '2']\n");
  });

  it("ends as a new interpreter does: exit statuses, atexit, threads, finalizers, flushing", async () => {
    const fresh = await started({ forkServer: false });
    try {
      const programs = [
        "print('plain')",
        "import sys\nsys.exit(3)",
        "import sys\nsys.exit(256 + 7)",
        "import sys\nsys.exit('a message')",
        "import sys\nsys.exit(None)",
        "raise SystemExit(True)",
        "raise ValueError('boom')",
        "raise KeyboardInterrupt",
        "import atexit\natexit.register(print, 'at exit')\nprint('main')",
        "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()\nprint('main')",
        "class D:\n    def __del__(self):\n        print('finalized')\nd = D()\nprint('main')",
        "import sys\nsys.stdout.write('no newline')",
        "import sys\nsys.stderr.write('to stderr')\nsys.exit(2)",
        "import atexit, sys\natexit.register(lambda: sys.exit(5))\nprint('main')",
      ];
      for (const code of programs) {
        const [forked, bwrap] = await Promise.all([b.exec(request(code)), fresh.exec(request(code))]);
        // Addresses in reprs differ between any two processes.
        const pick = (x: BackendExecResult) => ({
          stdout: x.stdout,
          stderr: x.stderr.replace(/0x[0-9a-f]+/g, "0x…"),
          exitCode: x.exitCode,
        });
        expect(pick(forked), code).toEqual(pick(bwrap));
      }
      expect((await fresh.exec(request(INIT))).stdout).toBe("bwrap\n");
    } finally {
      await fresh.stop();
    }
  });

  it("runs the whole of a long script, however the copy reads it", async () => {
    // ~600 KB of source: the copy reads main.py in chunks of its size, until end of file.
    const code = `x = 0\n${"x += 1  # padding padding padding padding padding padding padding\n".repeat(9000)}print(x)`;
    expect(code.length).toBeGreaterThan(500_000);
    expect(await b.exec(request(code))).toMatchObject({ stdout: "9000\n", exitCode: 0 });
  });

  it("never shares a zygote across tenants: one tenant's executions share its hash seed, another's differ", async () => {
    const seed = async (tenant: string) => (await b.exec(request("print(hash('hexr'))", { tenant }))).stdout;
    const [a1, a2, other, operator] = [await seed("acme"), await seed("acme"), await seed("globex"), await seed("")];
    expect(a1).toBe(a2);
    expect(new Set([a1, other, operator]).size).toBe(3);
    expect(b.forkServerState().zygotes).toBeGreaterThanOrEqual(3);
  });

  it("replaces a zygote that died: its sandboxes end, the next execution gets a new one", async () => {
    await b.exec(request("print(1)", { tenant: "initech" }));
    const before = ourZygotes();
    const count = b.forkServerState().zygotes;
    expect(before).toHaveLength(count);
    for (const pid of before) process.kill(pid, "SIGKILL");
    for (let i = 0; i < 100 && b.forkServerState().zygotes > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(b.forkServerState().zygotes).toBe(0);
    const r = await b.exec(request("print('again')", { tenant: "initech" }));
    expect(r.stdout).toBe("again\n");
    for (let i = 0; i < 100 && !ourZygotes().some((p) => !before.includes(p)); i++) await new Promise((r) => setTimeout(r, 50));
    expect(ourZygotes().some((p) => !before.includes(p))).toBe(true);
    expect((await b.exec(request(INIT, { tenant: "initech" }))).stdout).toBe("hexr-init\n");
  });
});

describe("fork server: lifetimes", () => {
  it("serves a burst of sandboxes from a zygote still starting (more than the socket's queue holds)", async () => {
    const b = await started({ warmPool: 0 });
    try {
      const results = await Promise.all(
        Array.from({ length: 24 }, (_, i) => b.exec(request(`${INIT}\nprint(${i})`, { tenant: "burst" }))),
      );
      expect(results.map((r) => r.stdout)).toEqual(results.map((_, i) => `hexr-init\n${i}\n`));
      expect(b.forkServerState()).toMatchObject({ active: true });
    } finally {
      await b.stop();
    }
  });

  it("replaces zygotes in the middle of a burst without failing a sandbox", async () => {
    const b = await started({ warmPool: 0, forkServer: { maxForks: 3 } });
    try {
      const results = await Promise.all(Array.from({ length: 16 }, () => b.exec(request(INIT, { tenant: "rotating" }))));
      expect(results.map((r) => r.stdout)).toEqual(results.map(() => "hexr-init\n"));
      expect(b.forkServerState()).toMatchObject({ active: true });
    } finally {
      await b.stop();
    }
  });

  it("replaces a zygote after maxForks sandboxes (a new hash seed)", async () => {
    const b = await started({ warmPool: 0, forkServer: { maxForks: 2 } });
    try {
      const seeds: string[] = [];
      for (let i = 0; i < 3; i++) seeds.push((await b.exec(request("print(hash('hexr'))"))).stdout);
      expect(seeds[0]).toBe(seeds[1]);
      expect(seeds[2]).not.toBe(seeds[0]);
    } finally {
      await b.stop();
    }
  });

  it("stops a tenant's zygote and warm sandboxes when it has been idle", async () => {
    const b = await started({ forkServer: { idleMs: 300 } });
    try {
      await b.exec(request("print(1)"));
      expect(ourZygotes().length).toBeGreaterThan(0);
      // The processes go first; the backend counts a zygote gone once it has seen its pipes close.
      const gone = () => ourZygotes().length === 0 && b.forkServerState().zygotes === 0;
      for (let i = 0; i < 100 && !gone(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(ourZygotes()).toEqual([]);
      expect(b.forkServerState()).toMatchObject({ active: true, zygotes: 0 });
      expect((await b.exec(request(INIT))).stdout).toBe("hexr-init\n");
    } finally {
      await b.stop();
    }
    expect(ourZygotes()).toEqual([]);
  });

  it("falls back to new interpreters when zygotes fail, and turns the fork server off after three failures", async () => {
    const b = await started({ warmPool: 0 });
    try {
      // A zygote that exits at once, as one would that cannot start.
      const rt = (b as unknown as { runtime: { zygote: string } }).runtime;
      writeFileSync(join(rt.zygote, "main.py"), "raise SystemExit(3)\n");
      for (let i = 0; i < 3; i++) {
        const r = await b.exec(request(INIT, { tenant: `t${i}` }));
        expect(r.stdout).toBe("bwrap\n");
      }
      const state = b.forkServerState();
      expect(state.active).toBe(false);
      expect(state.reason).toMatch(/^disabled after 3 failed sandboxes in a row \(last: .*fork server/);
      expect((await b.exec(request(INIT))).stdout).toBe("bwrap\n");
      expect((await b.exec(request("cat /proc/1/comm", { language: "shell" }))).stdout).toBe("bwrap\n");
    } finally {
      await b.stop();
    }
  });

  it("falls back to a bubblewrap sandbox when the runner's zygote fails", async () => {
    const b = await started({ warmPool: 0 });
    try {
      const rt = (b as unknown as { runtime: { zygote: string } }).runtime;
      // Renamed over it: the probe's zygote may still run the executable.
      writeFileSync(join(rt.zygote, "broken"), "#!/bin/sh\necho 'cannot start' >&2\nexit 3\n", { mode: 0o755 });
      renameSync(join(rt.zygote, "broken"), join(rt.zygote, "hexr-zygote"));
      const r = await b.exec(request("cat /proc/1/comm", { language: "shell" }));
      expect(r).toMatchObject({ stdout: "bwrap\n", exitCode: 0 });
      // One failure is not three: the fork server stays on, and python still forks.
      expect(b.forkServerState()).toMatchObject({ active: true });
      expect((await b.exec(request(INIT))).stdout).toBe("hexr-init\n");
    } finally {
      await b.stop();
    }
  });

  it.each([
    ["forked", {}],
    ["in bubblewrap processes", { forkServer: false }],
  ])("removes each execution's job directory, whatever went into it (%s)", async (_, opts: Partial<NamespaceBackendOptions>) => {
    const b = await started({ warmPool: 0, ...opts });
    try {
      const jobs = (b as unknown as { runtime: { jobs: string } }).runtime.jobs;
      // main.py only; job.sh too (the runner's); node_modules (a symlink) too; a shell job.
      await Promise.all(
        [
          request("print(1)"),
          request("print(2)", { env: { PYTHONHASHSEED: "0" } }),
          request("console.log(3)", { language: "javascript" }),
          request("echo 4", { language: "shell" }),
        ].map(async (req, i) => expect((await b.exec(req)).stdout).toBe(`${i + 1}\n`)),
      );
      let left = readdirSync(jobs);
      for (let i = 0; i < 100 && left.length; i++) {
        await new Promise((r) => setTimeout(r, 50)); // removed once each sandbox's processes are gone
        left = readdirSync(jobs);
      }
      expect(left).toEqual([]);
    } finally {
      await b.stop();
    }
  });

  it("pins the pages its copies write to, or leaves them to the copies when it cannot (RLIMIT_MEMLOCK 0)", async () => {
    const pinned = (pid: number) => Number(/^VmPin:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
    // Soft and hard limit: bytes or "unlimited", as prlimit takes them back.
    const limits = /^Max locked memory\s+(\S+)\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"))!;
    let uring = true; // io_uring, which pins them, may be turned off (Linux 6.6+)
    try {
      uring = readFileSync("/proc/sys/kernel/io_uring_disabled", "utf8").trim() === "0";
    } catch {
      // older kernels cannot turn it off
    }
    for (const memlock of [limits[1]!, "0"]) {
      // Only the zygote this round starts counts (the suite's shared backend has one too, and the
      // last round's may still be on its way out).
      const before = new Set(ourZygotes());
      // Inherited by the zygote this backend starts (bwrap, then the interpreter).
      execFileSync("prlimit", ["--pid", String(process.pid), `--memlock=${memlock}:${limits[2]}`]);
      const b = await started({ warmPool: 0 });
      try {
        expect((await b.exec(request("print(sum(range(10)))"))).stdout).toBe("45\n");
        const fresh = ourZygotes().filter((pid) => !before.has(pid));
        expect(fresh).toHaveLength(1);
        const zygote = fresh[0]!;
        if (memlock === "0" || !uring) expect(pinned(zygote)).toBe(0);
        else expect(pinned(zygote)).toBeGreaterThan(0);
        expect((await b.exec(request("print(sum(range(10)))"))).stdout).toBe("45\n");
      } finally {
        execFileSync("prlimit", ["--pid", String(process.pid), `--memlock=${limits[1]}:${limits[2]}`]);
        await b.stop();
      }
    }
  });

  it("can be turned off, and says so in the health checks", async () => {
    const b = await started({ forkServer: false });
    try {
      expect(b.health().checks.find((c) => c.name === "fork-server")).toMatchObject({
        ok: true,
        detail: expect.stringContaining("disabled (sandbox.namespace.forkServer: false)"),
      });
      expect((await b.exec(request(INIT))).stdout).toBe("bwrap\n");
      expect(ourZygotes()).toEqual([]);
    } finally {
      await b.stop();
    }
  });
});
