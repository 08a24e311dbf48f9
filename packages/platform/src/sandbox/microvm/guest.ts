/**
 * What runs inside the microVM: `/init` (busybox sh: mounts, virtio modules, the agent's port) and
 * the guest agent (python, PID 1). The agent announces itself once at boot (then the VM is
 * snapshotted); every clone resumes blocked on its virtio-serial port, receives exactly one job,
 * reseeds the kernel RNG and sets the clock, runs the code as uid 65534 in a fresh cgroup with no
 * capabilities, no-new-privs and the platform's seccomp program, streams stdout/stderr back and
 * reports the exit. The host destroys the VM afterwards.
 *
 * Wire protocol on the port: one JSON object per line. Guest → host: `{"t":"ready"}` (boot),
 * `{"t":"started"}`, `{"t":"o"|"e","d":<base64>}`, `{"t":"x","code":n,"oom":n,"timedOut":b,"dropped":[o,e]}`.
 * Host → guest: the job.
 */

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

export function agentScript(): string {
  return String.raw`# hexr guest agent: PID 1 of the microVM, one job per VM.
import base64, ctypes, fcntl, json, os, resource, select, struct, sys, time

PORT = sys.argv[1]
CG = "/hexr/cgroup/job"
libc = ctypes.CDLL(None, use_errno=True)

class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]

def send(fd, obj):
    write_all(fd, (json.dumps(obj, separators=(",", ":")) + "\n").encode())

def read_line(fd):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            time.sleep(0.01)
            continue
        buf += chunk
    return buf

def reseed(seed):
    # Clones share the snapshot's RNG state: mix in the host's bytes and force a reseed.
    fd = os.open("/dev/urandom", os.O_WRONLY)
    try:
        fcntl.ioctl(fd, 0x40085203, struct.pack("ii", len(seed) * 8, len(seed)) + seed)  # RNDADDENTROPY
        fcntl.ioctl(fd, 0x5207)  # RNDRESEEDCRNG
    finally:
        os.close(fd)

def write(path, value):
    with open(path, "w") as f:
        f.write(value)

def child(job, out_w, err_w, bpf):
    try:
        os.setsid()
        write(CG + "/cgroup.procs", str(os.getpid()))
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 65536)
        for cap in range(64):
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP (fails harmlessly past the last cap)
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        for res, v in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, 1024), (resource.RLIMIT_NPROC, job["pids"]),
                       (resource.RLIMIT_FSIZE, job["tmpfsBytes"] + 1048576)):
            resource.setrlimit(res, (v, v))
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            os._exit(126)
        n = len(bpf) // 8
        arr = (SockFilter * n).from_buffer_copy(bpf)
        prog = SockFprog(n, arr)
        if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
            os._exit(126)
        os.chdir("/tmp")
        argv = job["argv"]
        os.execve(argv[0], argv, job["env"])
    except BaseException:
        os._exit(127)

def main():
    port = os.open(PORT, os.O_RDWR)
    send(port, {"t": "ready"})
    job = json.loads(read_line(port))
    send(port, {"t": "started"})
    reseed(base64.b64decode(job["seed"]))
    try:
        time.clock_settime(time.CLOCK_REALTIME, job["now"] / 1000)
    except OSError:
        pass
    os.makedirs("/run/hexr/job", mode=0o755, exist_ok=True)
    path = job["argv"][-1]
    with open(path, "wb") as f:
        f.write(base64.b64decode(job["code"]))
    os.chmod(path, 0o644)
    opts = ("size=%d,mode=1777" % job["tmpfsBytes"]).encode()
    libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0x20 | 0x2 | 0x4, opts)  # MS_REMOUNT|MS_NOSUID|MS_NODEV
    shm = ("size=%d,mode=1777" % min(job["tmpfsBytes"], 64 << 20)).encode()
    libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", 0x20 | 0x2 | 0x4, shm)
    os.makedirs(CG, exist_ok=True)
    write(CG + "/memory.max", str(job["memoryBytes"]))
    write(CG + "/memory.swap.max", "0")
    write(CG + "/pids.max", str(job["pids"]))
    bpf = base64.b64decode(job["seccomp"])
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        child(job, out_w, err_w, bpf)
    os.close(out_w)
    os.close(err_w)
    cap = job["maxOutputBytes"]
    sent = {out_r: 0, err_r: 0}
    dropped = {out_r: 0, err_r: 0}
    tag = {out_r: "o", err_r: "e"}
    open_fds = [out_r, err_r]
    # The host's clock decides the timeout (a TCG guest's clock is not to be trusted): it sends "kill".
    status = None
    timed_out = False
    host = b""
    while open_fds or status is None:
        if status is None:
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                status = st
                write(CG + "/cgroup.kill", "1")  # the main process is done: nothing else survives it
        r, _, _ = select.select(open_fds + [port], [], [], 0.01 if status is None else 0.2)
        for fd in r:
            if fd == port:
                host += os.read(port, 4096)
                if b'"kill"' in host and not timed_out:
                    timed_out = True
                    write(CG + "/cgroup.kill", "1")
                continue
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
                send(port, {"t": tag[fd], "d": base64.b64encode(keep).decode()})
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code
    oom = 0
    for line in open(CG + "/memory.events"):
        k, v = line.split()
        if k == "oom_kill":
            oom = int(v)
    send(port, {"t": "x", "code": code, "oom": oom, "timedOut": timed_out, "dropped": [dropped[out_r], dropped[err_r]]})
    while True:
        time.sleep(3600)

main()
`;
}
