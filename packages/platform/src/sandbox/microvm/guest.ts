/**
 * What runs inside the microVM: `/init` (busybox sh: mounts, virtio modules, the agent's port) and
 * the guest agent (python, PID 1). The agent announces itself once at boot (then the VM is
 * snapshotted); every clone resumes blocked on its virtio-serial port and then:
 *
 * 1. receives its configuration (64 bytes of the host's entropy, mixed in and reseeded before
 *    anything in the clone draws randomness; limits; the seccomp program; the warm-up jobs);
 * 2. runs the warm-up jobs (the host's trivial scripts, never user code) exactly as a job runs and
 *    throws them away, so TCG has translated the job path before the clone waits in the pool;
 * 3. starts the job process ahead of the job in a fresh environment (empty /tmp, /dev/shm and job
 *    directory, a new cgroup): confined (uid 65534, no capabilities, no-new-privs, seccomp) and
 *    waiting in the stub (`stubScript`) for its go, and when the configuration says javascript is
 *    in use, node waiting the same way in its preloaded stub (`nodeStubScript`); reports `warm`;
 * 4. receives exactly one job (and its package files, if any), reseeds again, sets the clock, writes
 *    the code, lets the job process go, streams stdout/stderr back and reports the exit. A job with
 *    packages is told "install": its process (already confined, uid 65534) writes the host's
 *    bundle of their files into the execution's /tmp before it execs the interpreter
 *    (`installScript`). The host destroys the VM
 *    afterwards.
 *
 * Wire protocol on the port: one JSON object per line. Guest → host: `{"t":"ready"}` (boot),
 * `{"t":"warm","failures":[...]}`, `{"t":"started"}` (the code runs: at once, or after the
 * install), `{"t":"o"|"e","d":<base64>}`, `{"t":"x","code":n,"oom":n,"timedOut":b,"dropped":[o,e],
 * "installFailed":<base64 log, when the install failed>}`. Host → guest: the configuration, the
 * job, its package bundle as `{"t":"p","d":<base64>}` chunks, and
 * `{"t":"kill"}` at the timeout.
 */

import { pythonStubScript } from "../job-mode.js";

/** Kernel modules the agent's port needs, in load order (Debian builds virtio as modules). */
export const GUEST_MODULES = ["virtio_ring", "virtio", "virtio_mmio", "virtio_console"] as const;

export const AGENT_PORT_NAME = "hexr";

export function initScript(): string {
  return `#!/bin/busybox sh
# hexr microVM init: prepare the machine, then hand PID 1 to the guest agent.
export PATH=/usr/bin:/bin
rmdir /root 2>/dev/null  # left by the kernel's built-in initramfs; the sandbox has no home for root
mount -t proc -o hidepid=2 proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ${GUEST_MODULES.join(" ")}; do insmod /hexr/modules/$m.ko || echo "hexr-init: insmod $m failed"; done
port=""
i=0
while [ -z "$port" ] && [ $i -lt 500 ]; do
  for n in /sys/class/virtio-ports/*/name; do
    [ -f "$n" ] && [ "$(cat "$n")" = "${AGENT_PORT_NAME}" ] && port=/dev/$(basename "$(dirname "$n")")
  done
  [ -z "$port" ] && usleep 10000
  i=$((i + 1))
done
[ -n "$port" ] || { echo "hexr-init: no agent port"; poweroff -f; }
mount -t tmpfs -o size=16m,mode=1777,nosuid,nodev tmpfs /tmp
mkdir -p /dev/shm && mount -t tmpfs -o size=16m,mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t cgroup2 cgroup2 /hexr/cgroup
echo "+memory +pids" > /hexr/cgroup/cgroup.subtree_control
echo 1 > /proc/sys/vm/overcommit_memory
echo 0 > /proc/sys/kernel/printk 2>/dev/null
ip link set lo up
umount /sys
exec /usr/bin/python3 -I /hexr/agent.py "$port"
`;
}

/** Where a job's packages arrive and go (in the execution's own /tmp, as in the namespace sandbox; bundle paths start with python/ or node/). */
export const GUEST_PACKAGE_PATHS = {
  incoming: "/tmp/.hexr/pkgs",
  python: "/tmp/.hexr/python",
  node: "/tmp/.hexr/node/node_modules",
} as const;

/**
 * The install step of a job with packages (run by the stub as uid 65534 inside the job's cgroup and
 * seccomp filter, before it execs the interpreter): it writes out the bundle the host made
 * (microvm/archive.ts: `<x|-> <size> <path>\n` and the bytes, per file) below /tmp/.hexr, refusing
 * paths that would leave python/ or node/, and puts the python packages first on PYTHONPATH. Plain
 * file calls only: under TCG, importing zipfile or tarfile alone takes about a second.
 */
export function installScript(): string {
  const P = GUEST_PACKAGE_PATHS;
  return String.raw`def _hexr_install(env):
    base = b"/tmp/.hexr"
    made = set()
    python = False
    with open("${P.incoming}/bundle", "rb") as f:
        while True:
            line = f.readline()
            if not line:
                break
            flag, size, rel = line.rstrip(b"\n").split(b" ", 2)
            size = int(size)
            parts = rel.split(b"/")
            if parts[0] not in (b"python", b"node") or any(p in (b"", b".", b"..") for p in parts):
                raise ValueError("refusing the path %r" % rel)
            python = python or parts[0] == b"python"
            dest = base + b"/" + rel
            parent = dest.rsplit(b"/", 1)[0]
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755 if flag == b"x" else 0o644)
            try:
                while size > 0:
                    chunk = f.read(min(size, 1 << 16))
                    if not chunk:
                        raise ValueError("the package bundle ends early")
                    size -= len(chunk)
                    while chunk:
                        chunk = chunk[os.write(fd, chunk):]
            finally:
                os.close(fd)
    os.unlink("${P.incoming}/bundle")
    os.rmdir("${P.incoming}")
    if python:
        old = env.get(b"PYTHONPATH")
        env[b"PYTHONPATH"] = b"${P.python}" + (b":" + old if old else b"")
`;
}

/**
 * The job process's first program when it is started ahead of the job: it runs confined, as
 * `/usr/bin/python3 /run/hexr/job/main.py`, and waits on fd 3 for the job's go (mode, argv, env;
 * NUL-separated). "exec" replaces it by the job's program; "install" first installs the job's
 * packages (reporting on fd 5: `start`, or `install-failed` and the error) and then execs it; "run"
 * applies the environment and runs the code, which the agent has meanwhile written over main.py, as
 * the `__main__` module, reporting an uncaught exception the way the interpreter does (without this
 * stub's frame).
 */
export function stubScript(): string {
  const install = installScript()
    .split("\n")
    .map((l) => (l ? "    " + l : l))
    .join("\n");
  return pythonStubScript(String.raw`    os.close(4)  # tells the agent this script has been read and is waiting
    data = b""
    while True:
        chunk = os.read(3, 65536)
        if not chunk:
            break
        data += chunk
    os.close(3)
    parts = data.split(b"\0")
    n = int(parts[1])
    argv = parts[2:2 + n]
    env = dict(p.split(b"=", 1) for p in parts[2 + n:])
${install}
    if parts[0] == b"install":
        try:
            _hexr_install(env)
        except BaseException as e:
            os.write(5, b"install-failed\n" + ("%s: %s" % (type(e).__name__, e)).encode(errors="replace")[-4000:])
            os._exit(125)
        os.write(5, b"start\n")
    os.close(5)
    if parts[0] != b"run":
        os.execve(argv[0], argv, env)
    os.environ.clear()
    for k, v in env.items():
        os.environb[k] = v
`);
}

/** Where node's stub lives in the guest. */
export const NODE_STUB = "/hexr/stub.cjs";

/**
 * Node's stub: preloaded (`node --require /hexr/stub.cjs /run/hexr/job/main.js`), so node is
 * started and confined ahead of the job and waits here, during its bootstrap, before it has looked
 * at main.js. On the go (fd 3: "run", argv and the variables, NUL-separated, as for the python stub)
 * it applies the execution's variables and returns: node then runs main.js exactly as
 * `node main.js` would (the same loader decision, CommonJS or module, the same error reports and
 * exit codes; only `process.execArgv` shows the preload). Variables node reads at startup make a
 * javascript job exec a new node instead (`nodeStartupEnv`).
 */
export function nodeStubScript(): string {
  return String.raw`"use strict";
{
  const fs = require("fs");
  fs.closeSync(4); // tells the agent node is up and waiting
  const chunks = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    let n;
    try {
      n = fs.readSync(3, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === "EAGAIN") continue;
      throw e;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  fs.closeSync(3);
  fs.closeSync(5);
  delete require.cache[__filename]; // the job's require.cache holds its own modules only
  const parts = Buffer.concat(chunks).toString().split("\0");
  if (parts[0] !== "run") process.reallyExit(127); // released without a job
  const n = Number(parts[1]);
  for (const k of Object.keys(process.env)) delete process.env[k];
  for (const kv of parts.slice(2 + n)) {
    const i = kv.indexOf("=");
    process.env[kv.slice(0, i)] = kv.slice(i + 1);
  }
}
`;
}

export function agentScript(): string {
  return String.raw`# hexr guest agent: PID 1 of the microVM, one job per VM.
import base64, ctypes, fcntl, json, os, resource, select, signal, struct, sys, time

CGROOT = "/hexr/cgroup"
JOBDIR = "/run/hexr/job"
STUB = "/hexr/stub.py"
NODE = ["/usr/bin/node", "--require", "${NODE_STUB}", JOBDIR + "/main.js"]
PKGS = "${GUEST_PACKAGE_PATHS.incoming}"
NODE_MODULES = "${GUEST_PACKAGE_PATHS.node}"
PY = ["/usr/bin/python3", JOBDIR + "/main.py"]
MS_NOSUID, MS_NODEV, MNT_DETACH = 0x2, 0x4, 0x2
libc = ctypes.CDLL(None, use_errno=True)

class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]

def write(path, value):
    with open(path, "w") as f:
        f.write(value)

def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)

class Port:
    """The virtio-serial port: JSON lines both ways."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR)
        self.buf = b""

    def send(self, obj):
        write_all(self.fd, (json.dumps(obj, separators=(",", ":")) + "\n").encode())

    def recv(self):
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 65536)
            if not chunk:  # no host connected (yet): the port reads as empty
                time.sleep(0.01)
                continue
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def pending(self):
        """What the host sent meanwhile (the port was readable); None once it hung up."""
        chunk = os.read(self.fd, 65536)
        if not chunk:
            return None
        self.buf += chunk
        out = []
        while b"\n" in self.buf:
            line, _, self.buf = self.buf.partition(b"\n")
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

def reseed(seed):
    # Clones share the snapshot's RNG state: mix in the host's bytes and force a reseed.
    fd = os.open("/dev/urandom", os.O_WRONLY)
    try:
        fcntl.ioctl(fd, 0x40085203, struct.pack("ii", len(seed) * 8, len(seed)) + seed)  # RNDADDENTROPY
        fcntl.ioctl(fd, 0x5207)  # RNDRESEEDCRNG
    finally:
        os.close(fd)

def fresh_tmpfs(target, size):
    """Replaces the tmpfs at target by an empty one of the given size."""
    libc.umount2(target.encode(), MNT_DETACH)
    opts = ("size=%d,mode=1777" % size).encode()
    if libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts) != 0:
        raise OSError(ctypes.get_errno(), "mounting a tmpfs on " + target)

def reap(pid, status):
    """Collects every exited child (orphans come to PID 1); returns the status of pid once it exited."""
    while True:
        try:
            wpid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if wpid == 0:
            return status
        if wpid == pid:
            status = st

def child(cfg, cg, go_r, ready_w, status_w, out_w, err_w, argv):
    try:
        os.setsid()
        write(cg + "/cgroup.procs", str(os.getpid()))
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(go_r, 3)
        os.dup2(ready_w, 4)
        os.dup2(status_w, 5)
        os.closerange(6, 65536)
        for cap in range(64):
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP (fails harmlessly past the last cap)
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        for res, v in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, 1024), (resource.RLIMIT_NPROC, cfg["pids"]),
                       (resource.RLIMIT_FSIZE, cfg["tmpfsBytes"] + 1048576)):
            resource.setrlimit(res, (v, v))
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            os._exit(126)
        if libc.prctl(22, 2, ctypes.byref(cfg["prog"]), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
            os._exit(126)
        os.chdir("/tmp")
        os.execve(argv[0], argv, cfg["env"])
    except BaseException:
        os._exit(127)

class Job:
    """
    The job's process, started ahead of the job in a fresh environment (empty /tmp, /dev/shm and
    job directory, a new cgroup), already confined, waiting for its go: the python stub, and once
    javascript is in use (cfg "node") also node waiting in its preload. The one the job does not
    need is killed before the job starts.
    """

    def __init__(self, cfg, node=False):
        for name in os.listdir(JOBDIR):
            os.unlink(JOBDIR + "/" + name)
        fresh_tmpfs("/tmp", cfg["tmpfsBytes"])
        fresh_tmpfs("/dev/shm", min(cfg["tmpfsBytes"], 64 << 20))
        self.cg = CGROOT + "/job"
        os.mkdir(self.cg)
        write(self.cg + "/memory.max", str(cfg["memoryBytes"]))
        write(self.cg + "/memory.swap.max", "0")
        write(self.cg + "/pids.max", str(cfg["pids"]))
        with open(STUB, "rb") as f:
            write_file(PY[1], f.read())
        go_r, self.go = os.pipe()
        ready_r, ready_w = os.pipe()
        self.status, status_w = os.pipe()
        self.out, out_w = os.pipe()
        self.err, err_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            child(cfg, self.cg, go_r, ready_w, status_w, out_w, err_w, PY)
        os.close(go_r)
        self.node_pid = None
        if node:
            go_r, self.node_go = os.pipe()
            self.node_pid = os.fork()
            if self.node_pid == 0:
                child(cfg, self.cg, go_r, ready_w, status_w, out_w, err_w, NODE)
            os.close(go_r)
        for fd in (ready_w, status_w, out_w, err_w):
            os.close(fd)
        # Waits until the stubs wait (the python one has read main.py) or died: only then may main.py be replaced.
        while os.read(ready_r, 1):
            pass
        os.close(ready_r)

    def start(self, mode, argv, env, code, esm=False):
        """Writes the job's code where its argv names it, then lets the waiting process go."""
        if mode == "node" and not self.node_pid:
            mode = "exec"  # no node started ahead in this clone: the python stub execs one
        keep, drop = (self.node_pid, self.pid) if mode == "node" else (self.pid, self.node_pid)
        if drop:
            os.kill(drop, signal.SIGKILL)
            os.waitpid(drop, 0)
        if mode == "node":
            os.close(self.go)
            self.go = self.node_go
        elif self.node_pid:
            os.close(self.node_go)
        self.pid = keep
        if argv[-1] != PY[1]:
            os.unlink(PY[1])  # the stub has read it (see __init__); the job sees only its own files
        write_file(argv[-1], code)
        if argv[-1].endswith(".js"):
            # As in the namespace sandbox: packages resolve from main.js's directory; a module is scoped as one.
            os.symlink(NODE_MODULES, JOBDIR + "/node_modules")
            if esm:
                write_file(JOBDIR + "/package.json", b'{"type":"module"}\n')
        msg = [b"run" if mode == "node" else mode.encode(), str(len(argv)).encode()] + [a.encode() for a in argv]
        msg += [(k + "=" + v).encode() for k, v in env.items()]
        try:
            write_all(self.go, b"\0".join(msg))
        except BrokenPipeError:
            pass  # it died waiting: its status says how
        os.close(self.go)

    def supervise(self, cfg, wake, emit, port=None, on_start=None):
        """Relays the output until the process and everything it started are gone; returns the exit message."""
        cap = cfg["maxOutputBytes"]
        out_r, err_r, status_r, cg, pid = self.out, self.err, self.status, self.cg, self.pid
        sent = {out_r: 0, err_r: 0}
        dropped = {out_r: 0, err_r: 0}
        tag = {out_r: "o", err_r: "e"}
        open_fds = [out_r, err_r, status_r]
        status = b""
        watch = [wake] + ([port.fd] if port else [])
        # The host's clock decides the timeout (a TCG guest's clock is not to be trusted): it sends "kill".
        exited = None
        timed_out = False
        while open_fds or exited is None:
            if exited is None:
                exited = reap(pid, None)
                if exited is not None:
                    write(cg + "/cgroup.kill", "1")  # the main process is done: nothing else survives it
                    continue
            r, _, _ = select.select(open_fds + watch, [], [])
            for fd in r:
                if fd == wake:
                    os.read(wake, 4096)  # SIGCHLD arrived: reaped at the top of the loop
                elif port is not None and fd == port.fd:
                    msgs = port.pending()
                    if msgs is None:
                        watch.remove(fd)
                    elif any(m.get("t") == "kill" for m in msgs) and not timed_out:
                        timed_out = True
                        write(cg + "/cgroup.kill", "1")
                elif fd == status_r:
                    data = os.read(fd, 65536)
                    if not data:
                        open_fds.remove(fd)
                        os.close(fd)
                        continue
                    status += data
                    if status.startswith(b"start\n") and on_start:
                        on_start()
                        on_start = None
                else:
                    data = os.read(fd, 65536)
                    if not data:
                        open_fds.remove(fd)
                        os.close(fd)
                        continue
                    room = max(0, cap - sent[fd])
                    keep = data[:room]
                    dropped[fd] += len(data) - len(keep)
                    if keep:
                        sent[fd] += len(keep)
                        emit(tag[fd], keep)
        code = os.waitstatus_to_exitcode(exited)
        if code < 0:
            code = 128 - code
        oom = 0
        for line in open(cg + "/memory.events"):
            k, v = line.split()
            if k == "oom_kill":
                oom = int(v)
        x = {"t": "x", "code": code, "oom": oom, "timedOut": timed_out, "dropped": [dropped[out_r], dropped[err_r]]}
        if status.startswith(b"install-failed\n"):
            x["installFailed"] = base64.b64encode(status[len(b"install-failed\n"):]).decode()
        return x

    def remove(self):
        write(self.cg + "/cgroup.kill", "1")
        for _ in range(1000):
            reap(0, None)
            try:
                os.rmdir(self.cg)
                return
            except OSError:
                time.sleep(0.002)
        raise RuntimeError("cannot remove " + self.cg)

def configure(cfg):
    """The clone's own entropy and the settings every job of this backend gets."""
    reseed(base64.b64decode(cfg["seed"]))
    bpf = base64.b64decode(cfg["seccomp"])
    n = len(bpf) // 8
    cfg["filter"] = (SockFilter * n).from_buffer_copy(bpf)
    cfg["prog"] = SockFprog(n, cfg["filter"])
    # Without ASLR a job's programs land where the warm-up's did, so TCG reuses their translations.
    write("/proc/sys/kernel/randomize_va_space", "2" if cfg["aslr"] else "0")
    os.makedirs(JOBDIR, mode=0o755, exist_ok=True)

def receive_packages(port, install):
    """The job's package bundle, streamed after it: written into the execution's /tmp for its process to install."""
    os.makedirs(PKGS, mode=0o755)
    for d in (os.path.dirname(PKGS), PKGS):
        os.chown(d, 65534, 65534)
    left = install["size"]
    fd = os.open(PKGS + "/bundle", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        while left > 0:
            data = base64.b64decode(port.recv()["d"])
            write_all(fd, data)
            left -= len(data)
    finally:
        os.close(fd)

def warm_up(cfg, wake):
    """
    Runs each of the host's warm-up jobs (its own trivial scripts, no user code) exactly as a job
    runs and throws them away, so that TCG has translated the path every job takes before the
    clone waits in the pool.
    """
    failures = []
    for w in cfg["warm"]:
        job = Job(cfg, w["mode"] == "node")
        out = []
        job.start(w["mode"], w["argv"], cfg["env"], base64.b64decode(w["code"]), w.get("esm", False))
        x = job.supervise(cfg, wake, lambda t, d: out.append(d))
        job.remove()
        if x["code"] != 0:
            failures.append("%s exited %d: %s" % (w["argv"][0], x["code"], b"".join(out)[-300:].decode(errors="replace")))
    return failures

def main():
    port = Port(sys.argv[1])
    port.send({"t": "ready"})
    # The snapshot is taken here: every clone resumes waiting for its configuration.
    cfg = port.recv()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    configure(cfg)
    failures = warm_up(cfg, wake_r)
    job = Job(cfg, cfg.get("node", False))
    port.send({"t": "warm", "failures": failures})
    msg = port.recv()
    install = msg.get("install")
    started = lambda: port.send({"t": "started"})
    if not install:
        started()
    reseed(base64.b64decode(msg["seed"]))
    try:
        time.clock_settime(time.CLOCK_REALTIME, msg["now"] / 1000)
    except OSError:
        pass
    if install:
        receive_packages(port, install)
    job.start(msg["mode"], msg["argv"], msg["env"], base64.b64decode(msg["code"]), msg.get("esm", False))
    emit = lambda t, d: port.send({"t": t, "d": base64.b64encode(d).decode()})
    port.send(job.supervise(cfg, wake_r, emit, port, started if install else None))
    while True:
        time.sleep(3600)

main()
`;
}
