import { describe, expect, it } from "vitest";
import {
  AARCH64,
  buildSeccompProgram,
  DENIED_SYSCALLS,
  evaluateSeccomp,
  SECCOMP_RESULT,
  seccompInstructions,
  X86_64,
} from "./seccomp.js";

const EPERM = SECCOMP_RESULT.errno(1);
const ENOSYS = SECCOMP_RESULT.errno(38);
const EAFNOSUPPORT = SECCOMP_RESULT.errno(97);

describe("seccomp program (x86_64)", () => {
  const prog = seccompInstructions(X86_64);
  const run = (name: string, args: number[] = []) =>
    evaluateSeccomp(prog, { nr: X86_64.nr[name] ?? fail(name), arch: X86_64.auditArch, args });
  const fail = (n: string): never => {
    throw new Error(`no nr for ${n}`);
  };

  it("allows ordinary syscalls", () => {
    for (const nr of [
      0 /* read */, 1 /* write */, 2 /* open */, 9 /* mmap */, 57 /* fork */, 59 /* execve */, 231 /* exit_group */,
    ]) {
      expect(evaluateSeccomp(prog, { nr, arch: X86_64.auditArch })).toBe(SECCOMP_RESULT.allow);
    }
  });

  it("denies every listed syscall with EPERM", () => {
    for (const name of DENIED_SYSCALLS) if (X86_64.nr[name] !== undefined) expect(run(name), name).toBe(EPERM);
  });

  it("takes one instruction per denied syscall (the kernel compiles it for every sandbox)", () => {
    const denied = DENIED_SYSCALLS.filter((n) => X86_64.nr[n] !== undefined).length;
    const rest = seccompInstructions({
      ...X86_64,
      nr: Object.fromEntries(Object.entries(X86_64.nr).filter(([n]) => !(DENIED_SYSCALLS as readonly string[]).includes(n))),
    }).length;
    expect(prog.length).toBe(rest + denied + 1); // + their shared return
  });

  it("answers clone3 with ENOSYS so the libc falls back to clone", () => {
    expect(run("clone3")).toBe(ENOSYS);
  });

  it("lets clone make threads and processes but not namespaces", () => {
    const CLONE_THREAD_FLAGS = 0x3d0f00; // what glibc passes for pthread_create
    expect(run("clone", [CLONE_THREAD_FLAGS])).toBe(SECCOMP_RESULT.allow);
    expect(run("clone", [0x11 /* SIGCHLD */])).toBe(SECCOMP_RESULT.allow);
    for (const flag of [0x10000000, 0x20000000, 0x40000000, 0x00020000, 0x04000000, 0x08000000, 0x02000000, 0x80]) {
      expect(run("clone", [0x11 | flag])).toBe(EPERM);
    }
  });

  it("allows unix, inet, inet6 and netlink sockets only (no vsock, no packet)", () => {
    for (const af of [1, 2, 10, 16]) expect(run("socket", [af, 1, 0])).toBe(SECCOMP_RESULT.allow);
    for (const af of [40 /* VSOCK */, 17 /* PACKET */, 38 /* ALG */, 15 /* KEY */, 4 /* IPX */])
      expect(run("socket", [af, 1, 0])).toBe(EAFNOSUPPORT);
  });

  it("denies terminal injection ioctls and allows the rest", () => {
    expect(run("ioctl", [1, 0x5412])).toBe(EPERM);
    expect(run("ioctl", [1, 0x541c])).toBe(EPERM);
    expect(run("ioctl", [1, 0x5401 /* TCGETS */])).toBe(SECCOMP_RESULT.allow);
  });

  it("allows querying personality but not weakening it", () => {
    expect(run("personality", [0xffffffff])).toBe(SECCOMP_RESULT.allow);
    expect(run("personality", [0])).toBe(SECCOMP_RESULT.allow);
    expect(run("personality", [0x0040000 /* ADDR_NO_RANDOMIZE */])).toBe(EPERM);
  });

  it("kills foreign architectures and x32 syscalls", () => {
    expect(evaluateSeccomp(prog, { nr: 0, arch: 0x40000003 /* i386 */ })).toBe(SECCOMP_RESULT.killProcess);
    expect(evaluateSeccomp(prog, { nr: 0x40000000 + 1, arch: X86_64.auditArch })).toBe(SECCOMP_RESULT.killProcess);
  });

  it("encodes struct sock_filter little-endian, 8 bytes per instruction", () => {
    const buf = buildSeccompProgram(X86_64);
    expect(buf.length).toBe(prog.length * 8);
    expect(buf.readUInt16LE(0)).toBe(0x20); // BPF_LD|BPF_W|BPF_ABS
    expect(buf.readUInt32LE(4)).toBe(4); // seccomp_data.arch
    expect(buf.readUInt32LE(buf.length - 4)).toBe(SECCOMP_RESULT.allow);
  });
});

describe("seccomp program (aarch64)", () => {
  const prog = seccompInstructions(AARCH64);
  it("uses the asm-generic numbers", () => {
    expect(evaluateSeccomp(prog, { nr: 219 /* keyctl */, arch: AARCH64.auditArch })).toBe(EPERM);
    expect(evaluateSeccomp(prog, { nr: 63 /* read */, arch: AARCH64.auditArch })).toBe(SECCOMP_RESULT.allow);
    expect(evaluateSeccomp(prog, { nr: 198, arch: AARCH64.auditArch, args: [40] })).toBe(EAFNOSUPPORT);
    expect(evaluateSeccomp(prog, { nr: 63, arch: X86_64.auditArch })).toBe(SECCOMP_RESULT.killProcess);
  });
});
