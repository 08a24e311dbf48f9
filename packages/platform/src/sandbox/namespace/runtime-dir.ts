/**
 * The few host files the namespace sandbox sees besides /usr: a synthetic /etc (no host users,
 * no resolver, no secrets) and the runner script. They live in a root-owned, world-readable
 * directory because bubblewrap binds them as the unprivileged sandbox user.
 */

import {
  accessSync,
  chmodSync,
  constants,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pythonStubScript } from "../job-mode.js";

export interface RuntimeDir {
  readonly dir: string;
  readonly etc: string;
  readonly runner: string;
  /** Parent of the per-sandbox job directories. */
  readonly jobs: string;
  /** The python zygote's main.py and fork server library (bound at /run/hexr/job in a zygote). */
  readonly zygote: string;
  remove(): void;
}

/** Per-process limits of everything in a sandbox (rlimits). */
export interface SandboxRlimits {
  /** RLIMIT_NOFILE. */
  nofile: number;
  /** RLIMIT_NPROC (per sandbox: each has its own user namespace). */
  nproc: number;
  /** RLIMIT_FSIZE in bytes. */
  fileSizeBytes: number;
  /** RLIMIT_CPU in seconds: a backstop behind the wall-clock timeout. */
  cpuSeconds: number;
}

/** RLIMIT_FSIZE as sh's `ulimit -f` counts it (512-byte blocks); the python stub sets the same bytes. */
function fileSizeBlocks(l: SandboxRlimits): number {
  return Math.max(1, Math.floor(l.fileSizeBytes / 512));
}

/** Paths inside the sandbox. */
export const SANDBOX_PATHS = {
  runner: "/run/hexr/runner.sh",
  /** The execution's job directory: bound read-only from the host, filled when the sandbox is released. */
  job: "/run/hexr/job",
  code: { python: "/run/hexr/job/main.py", shell: "/run/hexr/job/main.sh", javascript: "/run/hexr/job/main.js" },
  packages: { python: "/opt/hexr/packages/python", javascript: "/opt/hexr/packages/npm" },
  nodeModules: "/tmp/.hexr/node/node_modules",
  /** Packages fetched from an index for this execution alone (moved into the job directory). */
  fetched: "/run/hexr/job/pkgs",
  pythonTarget: "/tmp/.hexr/python",
} as const;

/**
 * The runner (POSIX sh, run by dash) of sandboxes that start a new program for their job (a python
 * sandbox starts its interpreter at once instead, whose stub waits: `pythonStub`). It starts ahead
 * of time inside the finished sandbox, sets the rlimits (inside the sandbox's own user namespace, so
 * RLIMIT_NPROC counts this sandbox's processes only) and waits on fd 7. Once the platform has written
 * the job (job.sh: the language and the user's environment as a function; packages when there are
 * any; main.*) and released it, the runner installs the packages into the private /tmp, reports on
 * fd 8 (`start` when the code begins, `install-failed` otherwise), closes fd 8 so the code never sees
 * it, applies the user's environment and execs the interpreter. Paths are literal: after hexr_env no
 * variable is trusted.
 */
export function runnerScript(l: SandboxRlimits): string {
  const P = SANDBOX_PATHS;
  return `# hexr sandbox runner (generated)
ulimit -c 0
ulimit -n ${l.nofile}
ulimit -p ${l.nproc}
ulimit -f ${fileSizeBlocks(l)}
ulimit -t ${l.cpuSeconds}
read -r hexr_go <&7 || exit 127
exec 7<&-
. ${P.job}/job.sh || exit 127
if [ -s ${P.job}/packages ]; then
  set --
  while IFS= read -r p; do set -- "$@" "$p"; done < ${P.job}/packages
  mkdir -p /tmp/.hexr
  case $hexr_lang in
    python)
      src=${P.packages.python}
      [ -d ${P.fetched} ] && src=${P.fetched}
      /usr/bin/python3 -m pip install --no-index --find-links "$src" --target ${P.pythonTarget} \
        --no-cache-dir --no-build-isolation --disable-pip-version-check --no-warn-script-location --progress-bar off --quiet \
        -- "$@" >/tmp/.hexr/install.log 2>&1
      ;;
    javascript)
      if [ -d ${P.fetched}/node_modules ]; then
        mkdir -p /tmp/.hexr/node && cp -R ${P.fetched}/node_modules /tmp/.hexr/node/ >/tmp/.hexr/install.log 2>&1
      else mkdir -p /tmp/.hexr/node && cd /tmp/.hexr/node && {
        for f in "$@"; do set -- "$@" "${P.packages.javascript}/$f"; shift; done
        /usr/bin/npm install --offline --no-audit --no-fund --ignore-scripts --no-package-lock --no-save --no-update-notifier \
          --loglevel=error --cache /tmp/.hexr/npm-cache --prefix /tmp/.hexr/node -- "$@" >/tmp/.hexr/install.log 2>&1
      }
      fi
      ;;
    *) false ;;
  esac
  st=$?
  if [ $st -ne 0 ]; then
    { echo "install-failed $st"; tail -c 4000 /tmp/.hexr/install.log; } >&8
    exit 125
  fi
  rm -rf /tmp/.hexr/npm-cache
  cd /tmp
fi
echo start >&8
exec 8>&-
case $hexr_lang in
  python)
    hexr_env
    if [ -d ${P.pythonTarget} ]; then export PYTHONPATH=${P.pythonTarget}\${PYTHONPATH:+:$PYTHONPATH}; fi
    exec /usr/bin/python3 ${P.code.python}
    ;;
  shell)
    hexr_env
    exec /bin/sh ${P.code.shell}
    ;;
  javascript)
    hexr_env
    exec /usr/bin/node --experimental-detect-module ${P.code.javascript}
    ;;
esac
echo "hexr: unknown language" >&2
exit 127
`;
}

/**
 * Removes runtime directories `<prefix><pid>-*` below parent whose platform process is gone (killed
 * before it could clean up). The sandbox backend and the package fetcher each keep one.
 */
export function removeStaleRuntimeDirs(parent: string, prefix: string): void {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(/^(\d+)-/.exec(name.slice(prefix.length))?.[1]);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      process.kill(pid, 0);
      continue;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EPERM") continue;
    }
    rmSync(join(parent, name), { recursive: true, force: true });
  }
}

/**
 * A sandbox's synthetic /etc: users root and nobody, loopback hosts, no resolver unless asked, and
 * the dynamic loader's cache so multiarch libraries are found as on the host.
 */
export function writeSyntheticEtc(etc: string, opts: { dns: boolean }): void {
  mkdirSync(etc, { mode: 0o755 });
  const files: Record<string, string> = {
    passwd: "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin\n",
    group: "root:x:0:\nnogroup:x:65534:\n",
    hosts: "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    hostname: "sandbox\n",
    "nsswitch.conf": `passwd: files\ngroup: files\nshadow: files\nhosts: files${opts.dns ? " dns" : ""}\n`,
  };
  for (const [name, content] of Object.entries(files)) writeFileSync(join(etc, name), content, { mode: 0o644 });
  if (existsSync("/etc/ld.so.cache")) {
    copyFileSync("/etc/ld.so.cache", join(etc, "ld.so.cache"));
    chmodSync(join(etc, "ld.so.cache"), 0o644);
  }
  if (existsSync("/usr/lib/os-release")) symlinkSync("../usr/lib/os-release", join(etc, "os-release"));
}

/** `/bin` → `usr/bin` on merged-/usr systems; real directories are bound read-only instead. */
export function rootLinks(): string[] {
  const args: string[] = [];
  for (const name of ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]) {
    const host = `/${name}`;
    let st;
    try {
      st = lstatSync(host);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) args.push("--symlink", readlinkSync(host), host);
    else if (st.isDirectory()) args.push("--ro-bind", host, host);
  }
  return args;
}

/**
 * The bubblewrap options every Hexr sandbox starts with: every namespace unshared, uid/gid 65534,
 * its own session, gone with its parent, and a root of the host's /usr, its merged-/usr links and
 * the given synthetic /etc. No further namespaces can be made inside: the seccomp filter refuses
 * unshare, setns, clone with namespace flags and clone3 (escape suite). bwrap's --disable-userns
 * would add a second user namespace to every sandbox to say the same again, at ~1.9 ms of CPU per
 * sandbox (`perf stat` of bwrap with and without it), a third of bwrap's own cost.
 */
export function confinedRootArgs(etc: string, ids: { uid: number; gid: number } = { uid: 65534, gid: 65534 }): string[] {
  return [
    "--unshare-all",
    "--unshare-user",
    "--die-with-parent",
    "--new-session",
    "--uid",
    String(ids.uid),
    "--gid",
    String(ids.gid),
    "--hostname",
    "sandbox",
    "--ro-bind",
    "/usr",
    "/usr",
    ...rootLinks(),
    "--ro-bind",
    etc,
    "/etc",
  ];
}

const TMPFS_MAGIC = 0x01021994;

/** Free space a tmpfs needs to hold runtime directories: fetched packages pass through them. */
const MIN_TMPFS_FREE = 1024 * 1024 * 1024;

/**
 * Where runtime directories go unless configured: the OS temp dir when it is a tmpfs, else /dev/shm
 * when that is a writable tmpfs, in either case only with at least 1 GiB free (containers often get
 * a 64 MiB /dev/shm, too small for fetched packages); else the OS temp dir. Job directories are
 * made, written and removed for every execution; on a disk filesystem (ext4 /tmp) those calls cost
 * several times the CPU, on the platform's event loop.
 */
export function defaultRuntimeParent(): string {
  for (const dir of [tmpdir(), "/dev/shm"]) {
    try {
      const fs = statfsSync(dir);
      if (fs.type !== TMPFS_MAGIC || fs.bavail * fs.bsize < MIN_TMPFS_FREE) continue;
      accessSync(dir, constants.W_OK);
      return dir;
    } catch {
      // absent or not ours to write
    }
  }
  return tmpdir();
}

export function prepareRuntimeDir(opts: { limits: SandboxRlimits; parent?: string }): RuntimeDir {
  const parent = opts.parent ?? defaultRuntimeParent();
  removeStaleRuntimeDirs(parent, "hexr-sandbox-rt-");
  const dir = mkdtempSync(join(parent, `hexr-sandbox-rt-${process.pid}-`));
  chmodSync(dir, 0o755);
  const etc = join(dir, "etc");
  writeSyntheticEtc(etc, { dns: true });
  const runner = join(dir, "runner.sh");
  writeFileSync(runner, runnerScript(opts.limits), { mode: 0o644 });
  const jobs = join(dir, "jobs");
  mkdirSync(jobs, { mode: 0o755 });
  const zygote = join(dir, "zygote");
  mkdirSync(zygote, { mode: 0o755 });
  return {
    dir,
    etc,
    runner,
    jobs,
    zygote,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * How an interpreter started ahead waits for its job (the python stub's and the zygote's copies):
 * it reports `ready` on fd 8 and reads its go from fd 7 until EOF: `run` and the execution's
 * variables (NUL-separated `K=V`). It closes both descriptors and applies the variables; the platform
 * has meanwhile written the code over main.py. Released without a job (the platform went away), it
 * exits with 127.
 */
const GO_PROTOCOL = String.raw`    try:
        os.write(8, b"ready\n")
        data = b""
        while True:
            chunk = os.read(7, 65536)
            if not chunk:
                break
            data += chunk
        os.close(7)
    except OSError:
        os._exit(127)
    parts = data.split(b"\0")
    if parts[0] != b"run":
        os._exit(127)
    os.close(8)
    for kv in parts[1:]:
        k, _, v = kv.partition(b"=")
        os.environb[k] = v
`;

/** The rlimits as (resource, value) pairs, as the python stub sets them (FSIZE in bytes, as `ulimit -f` blocks). */
function rlimitValues(l: SandboxRlimits): Record<"CORE" | "NOFILE" | "NPROC" | "FSIZE" | "CPU", number> {
  return { CORE: 0, NOFILE: l.nofile, NPROC: l.nproc, FSIZE: fileSizeBlocks(l) * 512, CPU: l.cpuSeconds };
}

/**
 * main.py of a python sandbox until its job comes: the interpreter (started ahead, confined, with the
 * sandbox's base environment) sets the rlimits the runner sets in other sandboxes, waits for its go
 * (GO_PROTOCOL) and runs the code the platform has meanwhile written over main.py as the `__main__`
 * script, reporting an uncaught exception as the interpreter does (without this stub's frame).
 * Python jobs that need more (packages to install, variables read at interpreter startup) go to a
 * sandbox whose runner starts a new interpreter instead (`jobMode`).
 */
export function pythonStub(l: SandboxRlimits): string {
  const limits = Object.entries(rlimitValues(l))
    .map(([name, v]) => `(resource.RLIMIT_${name}, ${v})`)
    .join(", ");
  return pythonStubScript(
    String.raw`    import resource
    for r, v in (${limits}):
        resource.setrlimit(r, (v, v))
` + GO_PROTOCOL,
  );
}

/** Paths in the zygote's own view (its mount namespace), besides SANDBOX_PATHS. */
export const ZYGOTE_PATHS = {
  /** The runtime directory's jobs/, where a sandbox finds its job directory to bind at /run/hexr/job. */
  jobs: "/tmp/jobs",
  /** An empty directory where a sandbox mounts its /proc before moving it over the zygote's. */
  procStage: "/tmp/proc",
  /** The fork server library (hexr_zygote.so), beside the zygote's main.py. */
  library: `${SANDBOX_PATHS.job}/hexr_zygote.so`,
  /** The fork server as an executable (hexr-zygote), the runner's zygote. */
  executable: `${SANDBOX_PATHS.job}/hexr-zygote`,
  /** Each forked sandbox's init (hexr-init). */
  init: `${SANDBOX_PATHS.job}/hexr-init`,
} as const;

/** The file name of the fork server library in the native addon's build directory and in the zygote's directory. */
export const ZYGOTE_LIBRARY = "hexr_zygote.so";

/** The file name of the fork server executable, likewise. */
export const ZYGOTE_EXECUTABLE = "hexr-zygote";

/** The file name of the forked sandboxes' init, likewise. */
export const SANDBOX_INIT = "hexr-init";

/**
 * The runner's zygote (hexr-zygote, native/src/zygote.c): the same fork server as the python
 * zygote's, with the same confinement for each sandbox, but a small program instead of an
 * interpreter; each copy execs the runner, which then waits for its go as in a bubblewrap sandbox.
 * It reads the seccomp program from fd 6 and serves the control socket at fd 9.
 */
export function zygoteArgv(l: SandboxRlimits, ids: { uid: number; gid: number }): string[] {
  const r = rlimitValues(l);
  return [
    ZYGOTE_PATHS.executable,
    ...[ids.uid, ids.gid, r.NOFILE, r.NPROC, r.FSIZE, r.CPU].map(String),
    ZYGOTE_PATHS.jobs,
    ZYGOTE_PATHS.procStage,
    SANDBOX_PATHS.runner,
    ZYGOTE_PATHS.init,
  ];
}

/**
 * Code the python zygote compiles and runs once before it serves, with globals of its own and its
 * output to a StringIO: the parser, the compiler and the interpreter set up state on first use
 * (caches, interned names, free lists), and a copy that finds it already made writes to ~150 fewer
 * of the pages it shares with the zygote (each a ~13 us copy-on-write fault on this kind of VM).
 * Nothing of it is visible to an execution: no module, variable or output is left behind.
 */
const ZYGOTE_WARM_UP = String.raw`import io
def total(n, *, step=2):
    return sum(i * step for i in range(n) if i % 2) + len([x for x in {"a": 1, "b": 2}.values()])
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def __repr__(self):
        return f"Point({self.x!r}, {self.y:.1f})"
try:
    out = io.StringIO()
    print("hello", total(5), Point(1, 2.5), sep=" ", file=out)
except (ValueError, KeyError) as e:
    raise SystemExit(1) from e
`;

/** What the zygote's probe copy runs (and prints) to find the pages a copy writes to: a small program. */
const ZYGOTE_PROBE = "print('hello')\n";

/**
 * main.py of the python zygote (./zygote.ts): an interpreter started once in a bubblewrap sandbox
 * like a python stub's, but holding capabilities in its own user namespace and without the seccomp
 * filter, which it reads from fd 6 to apply to each sandbox. It loads the fork server library, runs
 * ZYGOTE_WARM_UP and imports what a copy's quick exit needs (atexit), collects the garbage, and calls
 * its loop (hexr_zygote_serve, native/src/zygote.c) on the control socket at fd 9, after freezing its
 * objects out of the garbage collector's reach (a collection in a copy would otherwise write to every
 * page it shares with the zygote). The loop returns only in a sandbox's confined copy,
 * which then goes on as a python stub does (GO_PROTOCOL) and leaves with a quick exit. The zygote
 * itself runs no code of any execution; it exits when the platform closes the control socket and
 * the sandboxes it made have ended.
 */
export function zygoteScript(l: SandboxRlimits, ids: { uid: number; gid: number }): string {
  const r = rlimitValues(l);
  return pythonStubScript(
    String.raw`    import ctypes, gc
    os.environ.pop("LD_BIND_NOW", None)  # the zygote's own (bound as it started); not its copies'
    program = b""
    while True:
        chunk = os.read(6, 65536)
        if not chunk:
            break
        program += chunk
    os.close(6)
    class Config(ctypes.Structure):
        _fields_ = [("seccomp", ctypes.c_char_p), ("seccomp_len", ctypes.c_uint32), ("uid", ctypes.c_uint32),
                    ("gid", ctypes.c_uint32), ("init_fd", ctypes.c_int32), ("rlimit_nofile", ctypes.c_uint64),
                    ("rlimit_nproc", ctypes.c_uint64), ("rlimit_fsize", ctypes.c_uint64), ("rlimit_cpu", ctypes.c_uint64),
                    ("jobs_dir", ctypes.c_char_p), ("proc_dir", ctypes.c_char_p), ("populate", ctypes.c_char_p),
                    ("populate_len", ctypes.c_uint32)]
    init_fd = os.open("${ZYGOTE_PATHS.init}", os.O_PATH | os.O_CLOEXEC)
    config = Config(program, len(program), ${ids.uid}, ${ids.gid}, init_fd, ${r.NOFILE}, ${r.NPROC}, ${r.FSIZE}, ${r.CPU},
                    b"${ZYGOTE_PATHS.jobs}", b"${ZYGOTE_PATHS.procStage}")
    lib = ctypes.PyDLL("${ZYGOTE_PATHS.library}", use_errno=True)
    serve = lib.hexr_zygote_serve
    serve.argtypes = (ctypes.c_int, ctypes.POINTER(Config))
    serve.restype = ctypes.c_int
    after_fork = ctypes.pythonapi.PyOS_AfterFork_Child
    after_fork.argtypes = ()
    after_fork.restype = None
    import atexit
    exec(compile(${JSON.stringify(ZYGOTE_WARM_UP)}, "<hexr warm-up>", "exec", dont_inherit=True), {"__name__": "__hexr_warm_up__"})
    gc.collect()
    gc.freeze()
    # A probe: a copy of the zygote that takes a copy's path below (the go, the stub, the quick exit)
    # with a job of its own (ZYGOTE_PROBE on a memfd, output to a pipe nobody reads) and reports, as
    # it exits, the pages it wrote to (zygote.c: hexr_zygote_probe, hexr_zygote_written). Each copy
    # gets those as its own at far less than a fault each: copied as it is forked (pinned, below),
    # or populated in one call before it waits.
    written_r, written_w = os.pipe()
    probed = lib.hexr_zygote_probe()
    if probed == 1:
        os.close(written_r)
        os.close(9)
        go_r, go_w = os.pipe()
        os.write(go_w, b"run\0HEXR_PROBE=1")
        os.close(go_w)
        report_r, report_w = os.pipe()
        out_r, out_w = os.pipe()
        main = os.memfd_create("probe")
        os.write(main, ${JSON.stringify(ZYGOTE_PROBE)}.encode())
        for src, dst in ((go_r, 7), (report_w, 8), (out_w, 1), (out_w, 2)):
            os.dup2(src, dst)
        g["__file__"] = f"/proc/self/fd/{main}"
        quick_exit = os._exit
        os._exit = lambda status: quick_exit(1 if status or lib.hexr_zygote_written(written_w) != 0 else 0)
        served = 1
    else:
        os.close(written_w)
        populate = b"".join(iter(lambda: os.read(written_r, 65536), b""))
        os.close(written_r)
        if probed != 0 or len(populate) % 16:
            populate = b""  # the probe failed: copies take their faults
        # Pinned, those pages are copied into each copy as it is forked; else each copy populates them.
        pin = lib.hexr_zygote_pin
        pin.argtypes = (ctypes.c_char_p, ctypes.c_uint32)
        pinned = pin(populate, len(populate) // 16) if populate else -1
        if pinned >= 0:
            populate = b""
        config.populate = populate
        config.populate_len = len(populate) // 16
        os.write(8, b"ready\n")
        served = serve(9, ctypes.byref(config))
    if served != 1:
        if served < 0:
            os.write(2, b"hexr zygote: " + os.strerror(ctypes.get_errno()).encode() + b"\n")
        os._exit(0 if served == 0 else 70)
    after_fork()
` + GO_PROTOCOL,
    { quickExit: true },
  );
}
