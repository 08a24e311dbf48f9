/**
 * A seccomp-BPF program, assembled here (no libseccomp) and handed to bubblewrap with `--seccomp FD`.
 *
 * Policy: default allow, with a deny list of the syscalls that widen the kernel attack surface or
 * reach outside the sandbox (module loading, kexec, bpf, perf, userfaultfd, keyrings, io_uring,
 * mounts and namespaces, ptrace and cross-process memory access), argument filters for `clone`
 * (no namespace flags), `socket` (only unix, inet, inet6, netlink: above all no AF_VSOCK, which no
 * network namespace isolates), `ioctl` (no TIOCSTI/TIOCLINUX terminal injection) and `personality`,
 * `clone3` answered with ENOSYS so libcs fall back to the filterable `clone`, and any foreign
 * architecture or x32 syscall killed.
 */

import { arch as hostArch } from "node:os";

// struct sock_filter opcodes (linux/filter.h, linux/bpf_common.h).
const BPF_LD_W_ABS = 0x20;
const BPF_JMP_JEQ_K = 0x15;
const BPF_JMP_JGE_K = 0x35;
const BPF_JMP_JSET_K = 0x45;
const BPF_RET_K = 0x06;

// seccomp return actions (linux/seccomp.h).
const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const RET_ALLOW = 0x7fff0000;

const EPERM = 1;
const ENOSYS = 38;
const EAFNOSUPPORT = 97;

// struct seccomp_data offsets: nr, arch, instruction_pointer, args[6] (u64, little-endian: low word first).
const OFF_NR = 0;
const OFF_ARCH = 4;
const argLow = (i: number) => 16 + 8 * i;

const CLONE_NAMESPACE_FLAGS =
  0x00000080 /* NEWTIME */ |
  0x00020000 /* NEWNS */ |
  0x02000000 /* NEWCGROUP */ |
  0x04000000 /* NEWUTS */ |
  0x08000000 /* NEWIPC */ |
  0x10000000 /* NEWUSER */ |
  0x20000000 /* NEWPID */ |
  0x40000000; /* NEWNET */

const AF_UNIX = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const AF_NETLINK = 16;

const TIOCSTI = 0x5412;
const TIOCLINUX = 0x541c;

/** personality() values that do not weaken the process (query, PER_LINUX and its 32-bit/UNAME26 flavours). */
const PERSONALITY_ALLOWED = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

export interface SyscallTable {
  auditArch: number;
  /** Syscalls with nr >= this are rejected (x32 ABI on x86_64). */
  nrLimit?: number;
  nr: Record<string, number>;
}

/** Syscalls denied with EPERM (names common to the tables below; a name absent from a table is skipped). */
export const DENIED_SYSCALLS = [
  "kexec_load",
  "kexec_file_load",
  "init_module",
  "finit_module",
  "delete_module",
  "create_module",
  "get_kernel_syms",
  "query_module",
  "reboot",
  "swapon",
  "swapoff",
  "acct",
  "syslog",
  "settimeofday",
  "clock_settime",
  "clock_adjtime",
  "quotactl",
  "quotactl_fd",
  "nfsservctl",
  "lookup_dcookie",
  "vhangup",
  "uselib",
  "_sysctl",
  "iopl",
  "ioperm",
  "modify_ldt",
  "mount",
  "umount2",
  "pivot_root",
  "chroot",
  "unshare",
  "setns",
  "open_tree",
  "move_mount",
  "fsopen",
  "fsconfig",
  "fsmount",
  "fspick",
  "mount_setattr",
  "bpf",
  "perf_event_open",
  "userfaultfd",
  "keyctl",
  "add_key",
  "request_key",
  "io_uring_setup",
  "io_uring_enter",
  "io_uring_register",
  "fanotify_init",
  "open_by_handle_at",
  "name_to_handle_at",
  "ptrace",
  "process_vm_readv",
  "process_vm_writev",
  "kcmp",
  "pidfd_getfd",
  "process_madvise",
] as const;

export const X86_64: SyscallTable = {
  auditArch: 0xc000003e,
  nrLimit: 0x40000000,
  nr: {
    ioctl: 16,
    socket: 41,
    clone: 56,
    ptrace: 101,
    syslog: 103,
    uselib: 134,
    personality: 135,
    vhangup: 153,
    modify_ldt: 154,
    pivot_root: 155,
    _sysctl: 156,
    chroot: 161,
    acct: 163,
    settimeofday: 164,
    mount: 165,
    umount2: 166,
    swapon: 167,
    swapoff: 168,
    reboot: 169,
    iopl: 172,
    ioperm: 173,
    create_module: 174,
    init_module: 175,
    delete_module: 176,
    get_kernel_syms: 177,
    query_module: 178,
    quotactl: 179,
    nfsservctl: 180,
    lookup_dcookie: 212,
    clock_settime: 227,
    kexec_load: 246,
    add_key: 248,
    request_key: 249,
    keyctl: 250,
    unshare: 272,
    perf_event_open: 298,
    fanotify_init: 300,
    name_to_handle_at: 303,
    open_by_handle_at: 304,
    clock_adjtime: 305,
    setns: 308,
    process_vm_readv: 310,
    process_vm_writev: 311,
    kcmp: 312,
    finit_module: 313,
    kexec_file_load: 320,
    bpf: 321,
    userfaultfd: 323,
    io_uring_setup: 425,
    io_uring_enter: 426,
    io_uring_register: 427,
    open_tree: 428,
    move_mount: 429,
    fsopen: 430,
    fsconfig: 431,
    fsmount: 432,
    fspick: 433,
    clone3: 435,
    pidfd_getfd: 438,
    process_madvise: 440,
    mount_setattr: 442,
    quotactl_fd: 443,
  },
};

/** arm64 uses the asm-generic numbering. */
export const AARCH64: SyscallTable = {
  auditArch: 0xc00000b7,
  nr: {
    lookup_dcookie: 18,
    ioctl: 29,
    umount2: 39,
    mount: 40,
    pivot_root: 41,
    nfsservctl: 42,
    chroot: 51,
    vhangup: 58,
    quotactl: 60,
    acct: 89,
    personality: 92,
    unshare: 97,
    kexec_load: 104,
    init_module: 105,
    delete_module: 106,
    clock_settime: 112,
    syslog: 116,
    ptrace: 117,
    reboot: 142,
    settimeofday: 170,
    socket: 198,
    add_key: 217,
    request_key: 218,
    keyctl: 219,
    clone: 220,
    swapon: 224,
    swapoff: 225,
    perf_event_open: 241,
    fanotify_init: 262,
    name_to_handle_at: 264,
    open_by_handle_at: 265,
    clock_adjtime: 266,
    setns: 268,
    process_vm_readv: 270,
    process_vm_writev: 271,
    kcmp: 272,
    finit_module: 273,
    bpf: 280,
    userfaultfd: 282,
    kexec_file_load: 294,
    io_uring_setup: 425,
    io_uring_enter: 426,
    io_uring_register: 427,
    open_tree: 428,
    move_mount: 429,
    fsopen: 430,
    fsconfig: 431,
    fsmount: 432,
    fspick: 433,
    clone3: 435,
    pidfd_getfd: 438,
    process_madvise: 440,
    mount_setattr: 442,
    quotactl_fd: 443,
  },
};

export function syscallTableFor(nodeArch: string = hostArch()): SyscallTable | undefined {
  if (nodeArch === "x64") return X86_64;
  if (nodeArch === "arm64") return AARCH64;
  return undefined;
}

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

const stmt = (code: number, k: number): Insn => ({ code, jt: 0, jf: 0, k });
const jump = (code: number, k: number, jt: number, jf: number): Insn => ({ code, jt, jf, k });
const ret = (k: number): Insn => stmt(BPF_RET_K, k >>> 0);

/** The filter as instructions (exported for tests that inspect it). */
export function seccompInstructions(table: SyscallTable): Insn[] {
  const p: Insn[] = [];
  p.push(stmt(BPF_LD_W_ABS, OFF_ARCH));
  p.push(jump(BPF_JMP_JEQ_K, table.auditArch >>> 0, 1, 0));
  p.push(ret(RET_KILL_PROCESS));
  p.push(stmt(BPF_LD_W_ABS, OFF_NR));
  if (table.nrLimit !== undefined) {
    p.push(jump(BPF_JMP_JGE_K, table.nrLimit, 0, 1));
    p.push(ret(RET_KILL_PROCESS));
  }
  // One comparison per denied syscall, all jumping to one return: the kernel compiles the program
  // for every sandbox (twice for a forked one: its init and its code's process), in time that grows
  // with its length.
  const denied = DENIED_SYSCALLS.map((name) => table.nr[name]).filter((nr): nr is number => nr !== undefined);
  if (denied.length > 256) throw new Error("too many denied syscalls for one jump table");
  denied.forEach((nr, i) => {
    const last = i === denied.length - 1;
    p.push(jump(BPF_JMP_JEQ_K, nr, last ? 0 : denied.length - 1 - i, last ? 1 : 0));
  });
  if (denied.length) p.push(ret(RET_ERRNO | EPERM));
  const clone3 = table.nr["clone3"];
  if (clone3 !== undefined) {
    p.push(jump(BPF_JMP_JEQ_K, clone3, 0, 1));
    p.push(ret(RET_ERRNO | ENOSYS));
  }
  // Each argument block loads an argument (clobbering the accumulator), so it must end in a return.
  const block = (nr: number | undefined, body: Insn[]) => {
    if (nr === undefined) return;
    p.push(jump(BPF_JMP_JEQ_K, nr, 0, body.length));
    p.push(...body);
  };
  block(table.nr["clone"], [
    stmt(BPF_LD_W_ABS, argLow(0)),
    jump(BPF_JMP_JSET_K, CLONE_NAMESPACE_FLAGS, 0, 1),
    ret(RET_ERRNO | EPERM),
    ret(RET_ALLOW),
  ]);
  const families = [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK];
  block(table.nr["socket"], [
    stmt(BPF_LD_W_ABS, argLow(0)),
    ...families.map((f, i) => jump(BPF_JMP_JEQ_K, f, families.length - i, 0)),
    ret(RET_ERRNO | EAFNOSUPPORT),
    ret(RET_ALLOW),
  ]);
  // The kernel's tty layer takes the request as an unsigned int, so the low word is what counts.
  block(table.nr["ioctl"], [
    stmt(BPF_LD_W_ABS, argLow(1)),
    jump(BPF_JMP_JEQ_K, TIOCSTI, 1, 0),
    jump(BPF_JMP_JEQ_K, TIOCLINUX, 0, 1),
    ret(RET_ERRNO | EPERM),
    ret(RET_ALLOW),
  ]);
  block(table.nr["personality"], [
    stmt(BPF_LD_W_ABS, argLow(0)),
    ...PERSONALITY_ALLOWED.map((v, i) => jump(BPF_JMP_JEQ_K, v >>> 0, PERSONALITY_ALLOWED.length - i, 0)),
    ret(RET_ERRNO | EPERM),
    ret(RET_ALLOW),
  ]);
  p.push(ret(RET_ALLOW));
  if (p.length > 4096) throw new Error("seccomp program too long");
  return p;
}

/** The program as `struct sock_filter[]` bytes, native (little-endian) order, as bwrap reads it. */
export function buildSeccompProgram(table: SyscallTable): Buffer {
  const insns = seccompInstructions(table);
  const buf = Buffer.alloc(insns.length * 8);
  insns.forEach((ins, i) => {
    buf.writeUInt16LE(ins.code, i * 8);
    buf.writeUInt8(ins.jt, i * 8 + 2);
    buf.writeUInt8(ins.jf, i * 8 + 3);
    buf.writeUInt32LE(ins.k >>> 0, i * 8 + 4);
  });
  return buf;
}

/**
 * Runs the program over a synthetic `seccomp_data` — a tiny classic-BPF interpreter, so tests can
 * check the filter's decisions without a kernel (the escape suite checks them with one).
 */
export function evaluateSeccomp(insns: Insn[], data: { nr: number; arch: number; args?: number[] }): number {
  const args = data.args ?? [];
  const word = (off: number): number => {
    if (off === OFF_NR) return data.nr >>> 0;
    if (off === OFF_ARCH) return data.arch >>> 0;
    const i = (off - 16) / 8;
    if (Number.isInteger(i) && i >= 0 && i < 6) return (args[i] ?? 0) >>> 0;
    throw new Error(`unsupported load offset ${off}`);
  };
  let acc = 0;
  for (let pc = 0; pc < insns.length; pc++) {
    const ins = insns[pc]!;
    switch (ins.code) {
      case BPF_LD_W_ABS:
        acc = word(ins.k);
        break;
      case BPF_JMP_JEQ_K:
        pc += acc === ins.k >>> 0 ? ins.jt : ins.jf;
        break;
      case BPF_JMP_JGE_K:
        pc += acc >= ins.k >>> 0 ? ins.jt : ins.jf;
        break;
      case BPF_JMP_JSET_K:
        pc += (acc & ins.k) !== 0 ? ins.jt : ins.jf;
        break;
      case BPF_RET_K:
        return ins.k >>> 0;
      default:
        throw new Error(`unknown opcode ${ins.code}`);
    }
  }
  throw new Error("program fell off the end");
}

export const SECCOMP_RESULT = { allow: RET_ALLOW, killProcess: RET_KILL_PROCESS, errno: (e: number) => (RET_ERRNO | e) >>> 0 };
