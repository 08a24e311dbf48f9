/**
 * The escape suite: from inside the sandbox, every way out must fail or be contained, and each is
 * asserted precisely (the errno, the exit code, the limit that was hit). It runs through the whole
 * stack (HTTP → service → backend) against every backend that works on this machine.
 */

import type { ExecRequestInput, ExecResult } from "@hexr/core";
import { existsSync, readdirSync, statSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../test-support/platform.js";
import { availableBackends } from "./test-support/backends.js";

const MEMORY_MB = 128;
const PIDS = 64;
const TMPFS_MB = 16;

const CANARY_NAME = "HEXR_ESCAPE_CANARY";
const CANARY_VALUE = `canary-${Math.random().toString(36).slice(2)}`;

const backends = await availableBackends();

it("both backends work on this machine (bubblewrap, cgroups, qemu-system-x86: see `hexr sandbox doctor`)", () => {
  expect(backends.map((b) => b.name)).toEqual(["namespace", "namespace", "microvm"]);
});

for (const backend of backends) {
  describe(`escape suite: ${backend.label}`, () => {
    let p: TestPlatform;
    let outside: Server;
    let outsidePort = 0;
    const outsideIp = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal)?.address;

    beforeAll(async () => {
      process.env[CANARY_NAME] = CANARY_VALUE; // the platform process has it; the sandbox must not
      p = await startTestPlatform({
        config: {
          sandbox: {
            backend: backend.name,
            memoryMb: MEMORY_MB,
            pids: PIDS,
            tmpfsMb: TMPFS_MB,
            maxConcurrent: 4,
            ...backend.config,
          },
        },
      });
      // A server on every interface: reachable from the host, so only isolation can stop the sandbox.
      outside = createServer((s) => s.end("reached\n"));
      await new Promise<void>((r) => outside.listen(0, "0.0.0.0", () => r()));
      outsidePort = (outside.address() as { port: number }).port;
    });
    afterAll(async () => {
      delete process.env[CANARY_NAME];
      outside?.close();
      await p?.dispose();
    });

    async function exec(body: ExecRequestInput): Promise<ExecResult> {
      const res = await p.api("/api/v1/sandbox/execute", { method: "POST", json: body });
      const json = (await res.json()) as ExecResult;
      expect(res.status, JSON.stringify(json)).toBe(200);
      expect(json.backend).toBe(backend.name);
      return json;
    }
    async function py(code: string, timeout = 20): Promise<unknown> {
      const r = await exec({ code, language: "python", timeout });
      expect(r.exitCode, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as unknown;
    }

    it("cannot connect to the platform port on 127.0.0.1", async () => {
      const port = Number(new URL(p.url).port);
      expect((await fetch(`${p.url}/healthz`)).status).toBe(200); // open on the host
      const out = await py(`
import json, socket, errno
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("127.0.0.1", ${port}))
    print(json.dumps("connected"))
except OSError as e:
    print(json.dumps(errno.errorcode.get(e.errno, str(e))))
`);
      expect(out).toBe("ECONNREFUSED");
    });

    it("has no network but loopback: outside addresses are unreachable", async () => {
      expect(outsideIp, "this machine needs a non-loopback IPv4 address").toBeDefined();
      const out = (await py(`
import json, socket, errno
def attempt(host, port):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((host, port))
        return "connected"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
print(json.dumps({
  "host": attempt("${outsideIp}", ${outsidePort}),
  "internet": attempt("1.1.1.1", 443),
  "interfaces": sorted(n for _, n in socket.if_nameindex()),
}))
`)) as Record<string, unknown>;
      expect(out).toEqual({ host: "ENETUNREACH", internet: "ENETUNREACH", interfaces: ["lo"] });
    });

    it("cannot resolve names or send a DNS query", async () => {
      const out = (await py(`
import json, socket, errno
try:
    socket.getaddrinfo("deb.debian.org", 443)
    dns = "resolved"
except socket.gaierror as e:
    dns = "gaierror"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"\\x00" * 12, ("8.8.8.8", 53))
    udp = "sent"
except OSError as e:
    udp = errno.errorcode.get(e.errno, str(e))
print(json.dumps({"dns": dns, "udp": udp}))
`)) as Record<string, unknown>;
      expect(out).toEqual({ dns: "gaierror", udp: "ENETUNREACH" });
    });

    it("cannot open vsock, the one socket family no network namespace isolates", async () => {
      const out = await py(`
import json, socket, errno
try:
    socket.socket(40, socket.SOCK_STREAM)
    print(json.dumps("opened"))
except OSError as e:
    print(json.dumps(errno.errorcode.get(e.errno, str(e))))
`);
      expect(out).toBe("EAFNOSUPPORT");
    });

    it("cannot read /root, the data dir, the admin key or the Workload API socket", async () => {
      const adminKey = join(p.dataDir, "admin.key");
      const socket = p.info.workloadSocket;
      for (const path of ["/root", p.dataDir, adminKey, socket]) expect(existsSync(path), path).toBe(true);
      const out = (await py(`
import json, os, socket, errno
def probe(path):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read()
        return "read"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
def connect(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return "connected"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
print(json.dumps({
  "root": probe("/root"),
  "dataDir": probe(${JSON.stringify(p.dataDir)}),
  "adminKey": probe(${JSON.stringify(adminKey)}),
  "socket": connect(${JSON.stringify(socket)}),
  "shadow": probe("/etc/shadow"),
  "home": probe("/home"),
  "sys": probe("/sys/fs/cgroup"),
}))
`)) as Record<string, unknown>;
      expect(out).toEqual({
        root: "ENOENT",
        dataDir: "ENOENT",
        adminKey: "ENOENT",
        socket: "ENOENT",
        shadow: "ENOENT",
        home: "ENOENT",
        sys: "ENOENT",
      });
    });

    it("sees none of the host's environment variables", async () => {
      expect(process.env[CANARY_NAME]).toBe(CANARY_VALUE);
      const r = await exec({
        code: `import json, os\nprint(json.dumps(dict(os.environ)))`,
        language: "python",
        envVars: { MY_VAR: "hello", QUOTED: 'it\'s "here"\nline2 $HOME `x`' },
      });
      const env = JSON.parse(r.stdout) as Record<string, string>;
      expect(env["MY_VAR"]).toBe("hello");
      expect(env["QUOTED"]).toBe('it\'s "here"\nline2 $HOME `x`');
      expect(Object.keys(env).sort()).toEqual(backend.expectedEnvKeys(["MY_VAR", "QUOTED"]));
      expect(JSON.stringify(env)).not.toContain(CANARY_VALUE);
      for (const k of Object.keys(process.env)) if (!backend.expectedEnvKeys([]).includes(k)) expect(env[k], k).toBeUndefined();
    });

    it("sees only its own processes, none of the host's", async () => {
      const out = (await py(`
import json, os
procs = {}
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            procs[pid] = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode().strip()
        except OSError:
            pass
print(json.dumps({"self": os.getpid(), "procs": procs}))
`)) as { self: number; procs: Record<string, string> };
      const cmdlines = Object.values(out.procs);
      expect(cmdlines.length).toBeLessThanOrEqual(2);
      expect(out.procs[String(out.self)]).toContain("python3");
      for (const c of cmdlines) expect(c).toMatch(backend.ownProcess);
      expect(out.procs[String(process.pid)] ?? "").not.toContain("node");
    });

    it("runs as uid 65534 with no capabilities, no-new-privs and the seccomp filter", async () => {
      const out = (await py(`
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
def sys(nr, *args):
    r = libc.syscall(nr, *args)
    return "ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)
print(json.dumps({
  "uid": os.getuid(), "gid": os.getgid(),
  "capEff": status["CapEff"].strip(), "capBnd": status["CapBnd"].strip(),
  "noNewPrivs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
  "keyctl": sys(250, 0, 0, 0, 0),
  "unshareUser": sys(272, 0x10000000),
  "unshareMount": sys(272, 0x00020000),
  "cloneUser": sys(56, 0x10000000 | 17, 0, 0, 0, 0),
  "clone3": sys(435, 0, 0),
  "setns": sys(308, os.open("/proc/self/ns/user", os.O_RDONLY), 0),
  "mount": sys(165, 0, 0, 0, 0, 0),
  "ptrace": sys(101, 16, 1, 0, 0),
  "bpf": sys(321, 0, 0, 0),
  "setuid0": "ok" if libc.setuid(0) == 0 else errno.errorcode.get(ctypes.get_errno(), "?"),
}))
`)) as Record<string, unknown>;
      expect(out).toEqual({
        uid: 65534,
        gid: 65534,
        capEff: "0000000000000000",
        capBnd: "0000000000000000",
        noNewPrivs: "1",
        seccomp: "2",
        keyctl: "EPERM",
        unshareUser: "EPERM",
        unshareMount: "EPERM",
        cloneUser: "EPERM",
        clone3: "ENOSYS",
        setns: "EPERM",
        mount: "EPERM",
        ptrace: "EPERM",
        bpf: "EPERM",
        setuid0: backend.setuidRootError,
      });
    });

    it("inherits no open file descriptors from the platform", async () => {
      const out = (await py(`
import json, os
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass  # the directory handle of listdir itself
print(json.dumps(fds))
`)) as Record<string, string>;
      for (const [fd, target] of Object.entries(out)) {
        if (Number(fd) <= 2) continue;
        expect(target, `fd ${fd}`).toBe("/dev/null");
      }
      expect(out["0"]).toBe("/dev/null");
    });

    it("cannot write outside /tmp", async () => {
      const out = (await py(`
import json, os, errno
def write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "written"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
targets = ["/escape", "/usr/escape", "/usr/bin/python3", "/etc/passwd", "/etc/escape", "/run/hexr/job/main.py", "/run/hexr/runner.sh",
           "/dev/escape", "/proc/sys/kernel/hostname", "/opt/escape", "/bin/escape"]
res = {t: write(t) for t in targets}
res["/tmp/ok"] = write("/tmp/ok")
print(json.dumps(res))
`)) as Record<string, string>;
      expect(out["/tmp/ok"]).toBe("written");
      for (const [path, what] of Object.entries(out)) {
        if (path === "/tmp/ok") continue;
        expect(["EROFS", "EACCES", "ENOENT", "EPERM"], `${path}: ${what}`).toContain(what);
      }
    });

    it("contains a fork bomb: forks stop at the pids limit and nothing survives", async () => {
      const counted = (await py(`
import json, os, time, errno
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print(json.dumps({"forks": n, "errno": errno.errorcode.get(e.errno)}))
`)) as { forks: number; errno: string };
      expect(counted.errno).toBe("EAGAIN");
      expect(counted.forks).toBeGreaterThan(0);
      expect(counted.forks).toBeLessThan(PIDS);

      const bomb = await exec({ code: "bomb() { bomb | bomb & }; bomb; sleep 60", language: "shell", timeout: 3 });
      expect(bomb.exitCode).toBe(124);
      expect(bomb.timedOut).toBe(true);
      await backend.expectNoLeftovers(p);
      const after = await exec({ code: "echo still fine", language: "shell" });
      expect(after.stdout).toBe("still fine\n");
    });

    it("contains a memory bomb: killed with 137", async () => {
      const r = await exec({ code: `s = "x" * (${MEMORY_MB * 4} * 1024 * 1024)\nprint(len(s))`, language: "python" });
      expect(r.exitCode).toBe(137);
      expect(r.oomKilled).toBe(true);
      expect(r.ok).toBe(false);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(`memory limit of ${MEMORY_MB} MiB exceeded`);
    });

    it("contains an infinite loop: killed at the timeout with 124 and a note", async () => {
      const r = await exec({ code: "print('started', flush=True)\nwhile True:\n    pass", language: "python", timeout: 1 });
      expect(r.exitCode).toBe(124);
      expect(r.timedOut).toBe(true);
      expect(r.stdout).toBe("started\n");
      expect(r.stderr).toContain("[hexr: execution killed after the timeout of 1 s]");
      expect(r.durationMs).toBeGreaterThanOrEqual(1000);
      await backend.expectNoLeftovers(p);
    });

    it("contains a disk filler: /tmp and /dev/shm end at their size", async () => {
      const r = await exec({
        code: `dd if=/dev/zero of=/tmp/fill bs=1M count=${TMPFS_MB * 4} 2>&1
echo "tmp=$(stat -c %s /tmp/fill)"
dd if=/dev/zero of=/dev/shm/fill bs=1M count=${TMPFS_MB * 4} 2>/dev/null
echo "shm=$(stat -c %s /dev/shm/fill)"
df -k /tmp | tail -n 1`,
        language: "shell",
      });
      expect(r.stdout).toContain("No space left on device");
      const tmp = Number(/tmp=(\d+)/.exec(r.stdout)?.[1]);
      const shm = Number(/shm=(\d+)/.exec(r.stdout)?.[1]);
      expect(tmp).toBeGreaterThan(0);
      expect(tmp).toBeLessThanOrEqual(TMPFS_MB * 1024 * 1024);
      expect(shm).toBeLessThanOrEqual(TMPFS_MB * 1024 * 1024);
      expect(r.stdout).toMatch(/^tmpfs\s+16384\s/m);
    });

    it("keeps executions apart: neither a concurrent nor a later one sees another's files", async () => {
      const secret = `secret-${Math.random().toString(36).slice(2)}`;
      const writer = exec({
        code: `import time\nopen("/tmp/${secret}", "w").write("${secret}")\nprint(open("/tmp/${secret}").read(), flush=True)\ntime.sleep(3)`,
        language: "python",
      });
      const reader = py(`
import json, os, time
seen = []
deadline = time.time() + 2
while time.time() < deadline and not seen:
    seen = [f for f in os.listdir("/tmp") if "${secret}" in f]
    time.sleep(0.05)
print(json.dumps({"seen": seen, "tmp": sorted(os.listdir("/tmp")), "procs": sorted(p for p in os.listdir("/proc") if p.isdigit())}))
`);
      const [w, concurrent] = await Promise.all([writer, reader]);
      expect(w.stdout).toBe(`${secret}\n`);
      expect(concurrent).toMatchObject({ seen: [], tmp: [] });
      expect((concurrent as { procs: string[] }).procs.length).toBeLessThanOrEqual(2);
      const later = await py(`import json, os\nprint(json.dumps(sorted(os.listdir("/tmp"))))`);
      expect(later).toEqual([]);
    });
  });
}

// Guards against a suite that silently found nothing to check on a directory listing.
it("keeps the instance cgroups of this process tidy", () => {
  for (const b of backends) {
    for (const dir of b.instanceDirs()) {
      if (!existsSync(dir) || !statSync(dir).isDirectory()) continue;
      expect(readdirSync(dir).filter((n) => /^x\d+-/.test(n))).toEqual([]);
    }
  }
});
