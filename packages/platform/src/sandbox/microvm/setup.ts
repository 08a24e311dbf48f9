/**
 * `hexr sandbox setup`: builds the microVM image from Debian packages and takes the pre-booted
 * snapshot the clones are restored from.
 *
 * 1. download the kernel, busybox-static, python3.11 and Debian's nodejs with their libraries
 *    (`apt-get download`, versions from the mirror: a nodejs installed from elsewhere is not used);
 * 2. unpack them (`dpkg-deb -x`), prune docs, tests and what node does not load, precompile the
 *    python stdlib (hash-checked .pyc);
 * 3. assemble the initramfs (our own cpio writer, gzip-compressed) with /init, the guest agent and
 *    the virtio modules;
 * 4. probe KVM with a real boot under a timeout (a /dev/kvm that cannot boot the kernel is not used),
 *    else TCG;
 * 5. boot the template VM until its agent says ready, stop it and save its device state; its RAM
 *    stays in a file that clones map copy-on-write.
 */

import { HexrError } from "@hexr/core";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import {
  accessSync,
  constants,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { writeCpio, type CpioEntry } from "./cpio.js";
import { agentScript, GUEST_MODULES, initScript, NODE_STUB, nodeStubScript, stubScript } from "./guest.js";
import { hostTscKhz, machineArgs, Qmp, type Accel, type MachineSpec } from "./qemu.js";

const execFileP = promisify(execFile);

/** Debian packages of the guest besides the kernel (python3.11 and the libraries its modules link). */
export const GUEST_PACKAGES = [
  "busybox-static",
  "python3.11-minimal",
  "libpython3.11-minimal",
  "libpython3.11-stdlib",
  "libc6",
  "zlib1g",
  "libexpat1",
  "libffi8",
  "libssl3",
  "libbz2-1.0",
  "liblzma5",
  "libsqlite3-0",
  "libuuid1",
  "libncursesw6",
  "libtinfo6",
  "libreadline8",
  "libcrypt1",
  "libdb5.3",
  "libnsl2",
  "libtirpc3",
  "libgssapi-krb5-2",
  "libk5crypto3",
  "libkrb5-3",
  "libkrb5support0",
  "libkeyutils1",
  "libcom-err2",
  // Debian's node (libnode links ICU, libuv, c-ares, nghttp2, brotli; it loads cjs-module-lexer,
  // undici, acorn and acorn-walk from /usr/share/nodejs). No npm: packages are installed by the agent.
  "nodejs",
  "libnode108",
  "libstdc++6",
  "libgcc-s1",
  "libicu72",
  "libuv1",
  "libc-ares2",
  "libnghttp2-14",
  "libbrotli1",
  "node-cjs-module-lexer",
  "node-undici",
  "node-busboy",
  "node-acorn",
];

/** What node loads from /usr/share/nodejs (built into libnode as paths); the rest of those packages is pruned. */
const NODE_SHARED_KEEP = ["cjs-module-lexer", "undici", "busboy", "streamsearch", "acorn", "acorn-walk"];

export const IMAGE_FILES = {
  kernel: "vmlinuz",
  initrd: "initramfs.cpio.gz",
  mem: "template/mem",
  state: "template/state",
  meta: "meta.json",
} as const;

/**
 * The image format: bumped whenever the guest agent's protocol or the machine changes, so that a
 * backend never restores a snapshot whose agent it cannot talk to (2: clones are configured and
 * warmed up before they wait for a job; 3: node, javascript jobs and package installs).
 */
export const IMAGE_VERSION = 3;

export interface ImageMeta {
  version: number;
  kernelPackage: string;
  qemuVersion: string;
  accel: Accel;
  /** Why KVM is (not) used: the outcome of the probe boot. */
  kvmProbe: string;
  /** The VM's RAM: the memory asked for plus the root filesystem, which lives in RAM. */
  memoryMb: number;
  /** Size of the unpacked root filesystem (the initramfs), in MiB. */
  rootfsMb: number;
  tscKhz: number;
  initrdSha256: string;
  /** Digest of the guest's own scripts (init, agent, stub): a snapshot whose agent differs is stale. */
  guestSha256: string;
  bootMs: number;
  createdAt: string;
}

export interface SetupOptions {
  imageDir: string;
  qemuPath?: string;
  accel?: "auto" | "kvm" | "tcg";
  /** Memory for the kernel, the agent and the jobs; the VM gets this plus the root filesystem's size. */
  memoryMb?: number;
  /** Re-download and rebuild even if files exist. */
  force?: boolean;
  progress?: (step: string, detail?: string) => void;
  /** How long a KVM probe boot may take before KVM is declared unusable. */
  kvmProbeTimeoutMs?: number;
  /** How long the template may take to boot (TCG on a busy machine is slow). */
  bootTimeoutMs?: number;
}

function fail(message: string): HexrError {
  return new HexrError("sandbox.setup_failed", message, { kind: "failed_precondition" });
}

async function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, {
      cwd: opts.cwd,
      timeout: opts.timeoutMs ?? 600_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string; code?: string };
    if (e.code === "ENOENT")
      throw fail(`${cmd} is not installed (the microVM image is built from Debian packages: this needs apt-get and dpkg-deb)`);
    throw fail(`${cmd} ${args.slice(0, 3).join(" ")} failed: ${(e.stderr || e.message).trim().split("\n").slice(-3).join("; ")}`);
  }
}

export async function qemuVersion(qemuPath: string): Promise<string> {
  const out = await run(qemuPath, ["--version"], { timeoutMs: 10_000 });
  return out.split("\n")[0]!.trim();
}

/** `linux-image-amd64` → the versioned kernel package it depends on. */
async function kernelPackage(): Promise<string> {
  const out = await run("apt-cache", ["depends", "linux-image-amd64"]);
  const m = /Depends:\s*(linux-image-[0-9][^\s]*)/.exec(out);
  if (!m) throw fail("cannot find the kernel package linux-image-amd64 depends on (run 'apt-get update' first)");
  return m[1]!;
}

/**
 * The newest version of each package that a configured mirror has: the candidate may be one
 * installed from elsewhere (such as a nodejs .deb of another vendor), which `apt-get download`
 * cannot fetch. One `apt-cache madison` for all of them (each run costs over half a second).
 */
async function mirrorVersions(pkgs: string[]): Promise<Map<string, string>> {
  const out = await run("apt-cache", ["madison", ...pkgs]);
  const versions = new Map<string, string>();
  for (const line of out.split("\n")) {
    const f = line.split("|").map((x) => x.trim());
    // madison lists the versions newest first; "<mirror> <suite> <arch> Packages" marks a binary package.
    if (f.length >= 3 && / Packages$/.test(f[2]!) && !versions.has(f[0]!)) versions.set(f[0]!, f[1]!);
  }
  const missing = pkgs.filter((p) => !versions.has(p));
  if (missing.length) throw fail(`no Debian mirror offers the package(s) ${missing.join(", ")} (run 'apt-get update' first)`);
  return versions;
}

async function download(
  pkgs: string[],
  dir: string,
  force: boolean,
  progress: (s: string, d?: string) => void,
): Promise<Map<string, string>> {
  if (force) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const have = () => readdirSync(dir).filter((f) => f.endsWith(".deb"));
  const find = (p: string) => have().find((f) => f.startsWith(`${p}_`));
  const wanted = pkgs.filter((p) => !find(p));
  if (wanted.length) {
    progress("download", `resolving ${wanted.length} package versions`);
    const versions = await mirrorVersions(wanted);
    const pinned = wanted.map((p) => `${p}=${versions.get(p)!}`);
    progress("download", `${wanted.length} packages: ${wanted.join(" ")}`);
    // One apt-get run for all of them (each run costs a second or more).
    await run("apt-get", ["download", ...pinned], { cwd: dir });
  }
  const files = new Map<string, string>();
  for (const p of pkgs) {
    const file = find(p);
    if (!file) throw fail(`apt-get download ${p} produced no .deb`);
    files.set(p, join(dir, file));
  }
  return files;
}

function prune(root: string): void {
  for (const p of [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bug",
    "usr/lib/python3.11/test",
    "usr/lib/python3.11/idlelib",
    "usr/lib/python3.11/tkinter",
    "usr/lib/python3.11/turtledemo",
    "usr/lib/python3.11/ensurepip",
    "usr/lib/python3.11/lib2to3",
    "usr/lib/python3.11/pydoc_data",
    "usr/lib/python3.11/unittest/test",
    "usr/share/gcc",
    "usr/share/gdb",
    "usr/share/systemtap",
    "usr/share/bash-completion",
    "usr/share/node_modules",
    "usr/bin/acorn",
    "usr/include",
    // ICU's tools and test libraries (node links icui18n, icuuc and icudata only).
    "usr/lib/x86_64-linux-gnu/libicutest.so.72",
    "usr/lib/x86_64-linux-gnu/libicutest.so.72.1",
    "usr/lib/x86_64-linux-gnu/libicutu.so.72",
    "usr/lib/x86_64-linux-gnu/libicutu.so.72.1",
    "usr/lib/x86_64-linux-gnu/libicuio.so.72",
    "usr/lib/x86_64-linux-gnu/libicuio.so.72.1",
    "boot",
    "lib/modules",
    "usr/lib/modules",
    "etc/kernel",
    "root",
    "home",
    "var",
    "srv",
    "mnt",
    "media",
    "opt",
  ]) {
    rmSync(join(root, p), { recursive: true, force: true });
  }
  const shared = join(root, "usr/share/nodejs");
  if (existsSync(shared)) {
    for (const name of readdirSync(shared)) {
      if (!NODE_SHARED_KEEP.includes(name)) rmSync(join(shared, name), { recursive: true, force: true });
    }
  }
}

/** Bytes of the files below root (what the unpacked initramfs takes in the guest's RAM, roughly). */
function treeBytes(root: string): number {
  let n = 0;
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    const p = join(root, entry.name);
    if (entry.isDirectory()) n += treeBytes(p);
    else if (entry.isFile()) n += statSync(p).size;
  }
  return n;
}

function findFile(root: string, name: string): string | undefined {
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    const p = join(root, entry.name);
    if (entry.isDirectory()) {
      const hit = findFile(p, name);
      if (hit) return hit;
    } else if (entry.name === name) return p;
  }
  return undefined;
}

/** Everything under `root` as cpio entries (parents first), plus the given extras. */
function collect(root: string, extra: CpioEntry[]): CpioEntry[] {
  const out: CpioEntry[] = [];
  out.push({ type: "dir", path: ".", mode: 0o755 });
  const walk = (abs: string) => {
    for (const name of readdirSync(abs).sort()) {
      const p = join(abs, name);
      const rel = relative(root, p);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out.push({ type: "symlink", path: rel, target: readlinkSync(p) });
      else if (st.isDirectory()) {
        out.push({ type: "dir", path: rel, mode: st.mode & 0o7777 });
        walk(p);
      } else if (st.isFile()) out.push({ type: "file", path: rel, data: readFileSync(p), mode: st.mode & 0o755 });
    }
  };
  walk(root);
  const seen = new Set(out.map((e) => e.path));
  for (const e of extra) if (!seen.has(e.path)) out.push(e);
  return out;
}

async function buildInitramfs(staging: string, kernelRoot: string, progress: (s: string, d?: string) => void): Promise<Buffer> {
  // Precompile the stdlib with the guest's own interpreter; hash-checked .pyc because cpio mtimes are 0.
  const py = join(staging, "usr/bin/python3.11");
  const loader = join(staging, "lib64/ld-linux-x86-64.so.2");
  if (!existsSync(py) || !existsSync(loader))
    throw fail("python3.11 or the dynamic loader is missing from the unpacked packages");
  if (!existsSync(join(staging, "usr/bin/node"))) throw fail("node is missing from the unpacked nodejs package");
  progress("compile", "python stdlib (.pyc)");
  const libPath = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"].map((d) => join(staging, d)).join(":");
  await execFileP(
    loader,
    [
      "--library-path",
      libPath,
      py,
      "-m",
      "compileall",
      "-q",
      "-j",
      "0",
      "--invalidation-mode",
      "unchecked-hash",
      "-d",
      "/usr/lib/python3.11",
      join(staging, "usr/lib/python3.11"),
    ],
    {
      env: { PYTHONHOME: join(staging, "usr"), PATH: "/usr/bin:/bin" },
      timeout: 600_000,
      maxBuffer: 64 * 1024 * 1024,
    },
  ).catch((err: Error & { stderr?: string }) => {
    // Syntax-error files in the stdlib's own test data are expected; a missing interpreter is not.
    if (!/SyntaxError|Error compiling/.test(err.stderr ?? err.message)) throw fail(`precompiling python failed: ${err.message}`);
  });

  const busybox = join(staging, "bin/busybox");
  const applets = (await execFileP(busybox, ["--list-full"])).stdout.split("\n").filter(Boolean);
  // The archive's root entry sets "/" itself: without it the kernel's rootfs would be world-writable (tmpfs 1777).
  const extra: CpioEntry[] = [{ type: "dir", path: ".", mode: 0o755 }];
  for (const d of [
    "bin",
    "sbin",
    "usr",
    "usr/bin",
    "usr/sbin",
    "proc",
    "sys",
    "dev",
    "tmp",
    "run",
    "etc",
    "hexr",
    "hexr/cgroup",
    "hexr/modules",
  ]) {
    extra.push({ type: "dir", path: d, mode: 0o755 });
  }
  for (const a of applets) {
    if (a === "bin/busybox") continue;
    extra.push({ type: "symlink", path: a, target: "/bin/busybox" });
  }
  extra.push({ type: "symlink", path: "usr/bin/python3", target: "python3.11" });
  extra.push({ type: "file", path: "init", data: Buffer.from(initScript()), mode: 0o755 });
  extra.push({ type: "file", path: "hexr/agent.py", data: Buffer.from(agentScript()), mode: 0o644 });
  extra.push({ type: "file", path: "hexr/stub.py", data: Buffer.from(stubScript()), mode: 0o644 });
  extra.push({ type: "file", path: NODE_STUB.slice(1), data: Buffer.from(nodeStubScript()), mode: 0o644 });
  extra.push({ type: "chardev", path: "dev/console", major: 5, minor: 1, mode: 0o600 });
  extra.push({ type: "chardev", path: "dev/null", major: 1, minor: 3, mode: 0o666 });
  extra.push({
    type: "file",
    path: "etc/passwd",
    data: Buffer.from("root:x:0:0:root:/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/tmp:/bin/false\n"),
  });
  extra.push({ type: "file", path: "etc/group", data: Buffer.from("root:x:0:\nnogroup:x:65534:\n") });
  extra.push({ type: "file", path: "etc/hosts", data: Buffer.from("127.0.0.1\tlocalhost sandbox\n::1\tlocalhost\n") });
  extra.push({ type: "file", path: "etc/hostname", data: Buffer.from("sandbox\n") });
  extra.push({ type: "file", path: "etc/nsswitch.conf", data: Buffer.from("passwd: files\ngroup: files\nhosts: files dns\n") });
  extra.push({
    type: "file",
    path: "etc/os-release",
    data: Buffer.from('PRETTY_NAME="Hexr microVM (Debian 12 packages)"\nNAME="Hexr microVM"\nID=hexr-microvm\nID_LIKE=debian\n'),
  });
  for (const m of GUEST_MODULES) {
    const ko = findFile(kernelRoot, `${m}.ko`);
    if (!ko) throw fail(`kernel module ${m}.ko is missing from the kernel package`);
    extra.push({ type: "file", path: `hexr/modules/${m}.ko`, data: readFileSync(ko), mode: 0o644 });
  }
  progress("initramfs", "assembling");
  return writeCpio(collect(staging, extra));
}

interface Booted {
  child: ChildProcess;
  ready: Promise<void>;
  log: () => string;
}

/** Boots the image and resolves `ready` when the agent says so on its port. */
function boot(qemu: string, spec: MachineSpec, extraArgs: string[]): Booted {
  const child = spawn(qemu, [...machineArgs(spec, { template: true }), ...extraArgs], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
  child.stderr!.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
  const ready = new Promise<void>((resolve, reject) => {
    let done = false;
    let exited = false; // a signal leaves exitCode null: track the event itself
    child.once("exit", (code, signal) => {
      exited = true;
      if (!done)
        reject(
          new Error(
            `qemu exited (${code ?? signal}) before the guest agent was ready: ${log.trim().split("\n").slice(-5).join("; ")}`,
          ),
        );
    });
    const tryConnect = () => {
      if (done || exited) return;
      const s = connect(spec.agentSocket);
      let buf = "";
      s.on("data", (d) => {
        buf += d.toString();
        if (buf.includes('{"t":"ready"}')) {
          done = true;
          s.destroy();
          resolve();
        }
      });
      s.on("error", () => setTimeout(tryConnect, 50));
    };
    tryConnect();
  });
  ready.catch(() => undefined);
  return { child, ready, log: () => log };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`${what} took longer than ${ms / 1000} s`)), ms))),
    ]);
  } finally {
    clearTimeout(t);
  }
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await gone;
}

/** Can this machine boot the image under KVM? A real boot with a timeout decides. */
export async function probeKvm(
  qemu: string,
  spec: Omit<MachineSpec, "accel">,
  timeoutMs: number,
): Promise<{ ok: boolean; detail: string }> {
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    return { ok: false, detail: "/dev/kvm is absent or not accessible" };
  }
  const t0 = Date.now();
  const b = boot(qemu, { ...spec, accel: "kvm" }, []);
  try {
    await withTimeout(b.ready, timeoutMs, "a KVM probe boot");
    return { ok: true, detail: `a KVM boot reached the guest agent in ${Date.now() - t0} ms` };
  } catch (err) {
    return { ok: false, detail: `/dev/kvm exists but a probe boot failed: ${(err as Error).message}` };
  } finally {
    await kill(b.child);
    rmSync(spec.memFile, { force: true });
    rmSync(spec.agentSocket, { force: true });
  }
}

/** Digest of what Hexr itself puts into the guest (the rest comes from Debian packages). */
export function guestDigest(): string {
  return createHash("sha256")
    .update(initScript())
    .update("\0")
    .update(agentScript())
    .update("\0")
    .update(stubScript())
    .digest("hex");
}

/** Why an image cannot be used with this QEMU and this Hexr, or undefined when it can. */
export function staleImage(meta: ImageMeta, qemuVersion: string): string | undefined {
  if (meta.version !== IMAGE_VERSION)
    return `the image was built by another version of Hexr (format ${meta.version}, this one reads ${IMAGE_VERSION})`;
  if (meta.guestSha256 !== guestDigest()) return "the image's guest agent is from another version of Hexr";
  if (meta.qemuVersion !== qemuVersion) return `the snapshot was made with '${meta.qemuVersion}', this is '${qemuVersion}'`;
  return undefined;
}

export function readMeta(imageDir: string): ImageMeta | undefined {
  try {
    return JSON.parse(readFileSync(join(imageDir, IMAGE_FILES.meta), "utf8")) as ImageMeta;
  } catch {
    return undefined;
  }
}

/** Builds (or rebuilds) the image and the template snapshot; returns the metadata. */
export async function setupMicrovm(opts: SetupOptions): Promise<ImageMeta> {
  const progress = opts.progress ?? (() => undefined);
  const qemu = opts.qemuPath ?? "qemu-system-x86_64";
  const askedMb = opts.memoryMb ?? 256;
  const dir = opts.imageDir;
  if (process.arch !== "x64") throw fail(`the microVM image is built for x86_64 (this is ${process.arch})`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  progress("check", "qemu");
  const qv = await qemuVersion(qemu).catch(() => {
    throw fail(`${qemu} is not installed (apt-get install qemu-system-x86)`);
  });

  progress("resolve", "kernel package");
  const kpkg = await kernelPackage();
  const debs = await download([kpkg, ...GUEST_PACKAGES], join(dir, "debs"), !!opts.force, progress);

  const work = join(dir, "build");
  rmSync(work, { recursive: true, force: true });
  const staging = join(work, "root");
  const kroot = join(work, "kernel");
  mkdirSync(staging, { recursive: true });
  mkdirSync(kroot, { recursive: true });
  for (const [i, [pkg, file]] of [...debs.entries()].entries()) {
    progress("unpack", `${i + 1}/${debs.size} ${pkg}`);
    await run("dpkg-deb", ["-x", file, pkg === kpkg ? kroot : staging]);
  }
  prune(staging);
  const rootfsMb = Math.ceil(treeBytes(staging) / 1048576);
  // The root filesystem lives in the guest's RAM: the VM gets it on top of the memory asked for.
  const memoryMb = askedMb + rootfsMb;
  const vmlinuz = readdirSync(join(kroot, "boot")).find((f) => f.startsWith("vmlinuz-"));
  if (!vmlinuz) throw fail(`${kpkg} has no vmlinuz`);
  copyFileSync(join(kroot, "boot", vmlinuz), join(dir, IMAGE_FILES.kernel));
  const cpio = await buildInitramfs(staging, kroot, progress);
  // Compressed: while the kernel unpacks it, the archive and the files it holds are both in the guest's RAM.
  progress("initramfs", `compressing ${(cpio.length / 1048576).toFixed(1)} MiB`);
  const initrd = gzipSync(cpio, { level: 6 });
  writeFileSync(join(dir, IMAGE_FILES.initrd), initrd);
  rmSync(join(dir, "initramfs.cpio"), { force: true }); // the uncompressed archive of format 2 images
  rmSync(work, { recursive: true, force: true });
  progress("initramfs", `${(cpio.length / 1048576).toFixed(1)} MiB, ${(initrd.length / 1048576).toFixed(1)} MiB compressed`);

  mkdirSync(join(dir, "template"), { recursive: true });
  const base: Omit<MachineSpec, "accel"> = {
    kernel: join(dir, IMAGE_FILES.kernel),
    initrd: join(dir, IMAGE_FILES.initrd),
    memoryMb,
    memFile: join(dir, IMAGE_FILES.mem),
    agentSocket: join(dir, "template/agent.sock"),
    tscKhz: hostTscKhz(readFileSync("/proc/cpuinfo", "utf8")),
  };
  let accel: Accel = "tcg";
  let kvmProbe = "not tried (accel = tcg)";
  if ((opts.accel ?? "auto") !== "tcg") {
    progress("probe", "KVM: booting the image under KVM with a timeout");
    // Its own socket and RAM file: nothing of the probe may touch the template's.
    const probe = await probeKvm(
      qemu,
      { ...base, memFile: join(dir, "template/probe.mem"), agentSocket: join(dir, "template/probe.sock") },
      opts.kvmProbeTimeoutMs ?? 20_000,
    );
    kvmProbe = probe.detail;
    if (probe.ok) accel = "kvm";
    else if (opts.accel === "kvm") throw fail(`KVM was asked for but does not work here: ${probe.detail}`);
    progress("probe", probe.ok ? `KVM works: ${probe.detail}` : `using TCG: ${probe.detail}`);
  }

  progress("snapshot", `booting the template VM (${accel})`);
  for (const f of [IMAGE_FILES.mem, IMAGE_FILES.state]) rmSync(join(dir, f), { force: true });
  const qmpSock = join(dir, "template/qmp.sock");
  rmSync(qmpSock, { force: true });
  const t0 = Date.now();
  const b = boot(qemu, { ...base, accel }, ["-qmp", `unix:${qmpSock},server=on,wait=off`]);
  let qmp: Qmp | undefined;
  try {
    await withTimeout(b.ready, opts.bootTimeoutMs ?? 300_000, "booting the template VM");
    const bootMs = Date.now() - t0;
    progress("snapshot", `guest agent ready after ${bootMs} ms; saving the device state`);
    qmp = await Qmp.open(qmpSock);
    await qmp.run("stop");
    await qmp.run("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] });
    await qmp.run("migrate", { uri: `exec:cat > ${join(dir, IMAGE_FILES.state)}` });
    for (let i = 0; ; i++) {
      const st = (await qmp.run("query-migrate")) as { status?: string; "error-desc"?: string };
      if (st.status === "completed") break;
      if (st.status === "failed" || i > 600) throw fail(`saving the template failed: ${st["error-desc"] ?? st.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await qmp.run("quit").catch(() => undefined);
    const meta: ImageMeta = {
      version: IMAGE_VERSION,
      kernelPackage: kpkg,
      qemuVersion: qv,
      accel,
      kvmProbe,
      memoryMb,
      rootfsMb,
      tscKhz: base.tscKhz,
      initrdSha256: createHash("sha256").update(initrd).digest("hex"),
      guestSha256: guestDigest(),
      bootMs,
      createdAt: new Date().toISOString(),
    };
    writeFileSync(join(dir, IMAGE_FILES.meta), JSON.stringify(meta, null, 2) + "\n");
    progress("done", `${statSync(join(dir, IMAGE_FILES.state)).size} bytes of device state, ${memoryMb} MiB RAM file`);
    return meta;
  } catch (err) {
    throw err instanceof HexrError ? err : fail(`${(err as Error).message}\n${b.log().trim().split("\n").slice(-8).join("\n")}`);
  } finally {
    qmp?.close();
    await kill(b.child);
    rmSync(qmpSock, { force: true });
    rmSync(base.agentSocket, { force: true });
  }
}
