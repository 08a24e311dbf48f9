// hexr-init: the init (pid 1) of a sandbox the fork server makes (native/src/zygote.c). The zygote's
// vfork child sets the sandbox up as pid 1 of its new pid namespace, forks the code process (C, pid 2),
// takes the sandbox's confinement itself (no capability, no-new-privs, the seccomp filter) and execs
// this program, which releases the zygote and leaves a process of 16 KiB resident where a copy of the
// zygote's memory would otherwise stay for the execution's length (on small VMs, making and tearing
// down that copy costs more than all the init's work).
//
//   hexr-init <status-fd> <code-pid>
//
// It reaps every process of the sandbox until the code process exits, then reports that exit code on
// the status descriptor as bubblewrap does ({"exit-code":N}) and exits with it, which tears the
// sandbox down. Built freestanding (no C library: raw system calls only), so the exec maps nothing but
// this file. The zygote execs it from a file it cannot read, so the kernel makes it non-dumpable from
// the start: no process of the sandbox can trace it or open its /proc/1/mem.
#include <linux/prctl.h>
#include <linux/wait.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>

static long sys(long n, long a, long b, long c, long d) {
#if defined(__x86_64__)
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = 0;  // prctl wants its unused arguments zero
  register long r9 __asm__("r9") = 0;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
#elif defined(__aarch64__)
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = 0;
  register long x5 __asm__("x5") = 0;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
  return x0;
#else
#error "hexr-init: written for x86_64 and aarch64"
#endif
}

static __attribute__((noreturn)) void leave(int code) {
  for (;;) sys(SYS_exit_group, code, 0, 0, 0);
}

// A decimal argument; -1 when it is not one.
static long number(const char* s) {
  long v = 0;
  if (!s || !*s) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > 1000000000L) return -1;
    v = v * 10 + (*s - '0');
  }
  return v;
}

__attribute__((used)) void init_start(long* sp) {
  long argc = sp[0];
  char** argv = (char**)(sp + 1);
  sys(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0);
  sys(SYS_prctl, PR_SET_NAME, (long)"hexr-init", 0, 0);
  long status_fd = argc == 3 ? number(argv[1]) : -1;
  long code_pid = argc == 3 ? number(argv[2]) : -1;
  if (status_fd < 0 || code_pid <= 0) leave(126);
  uint64_t none = 0;
  sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, 8);
  for (;;) {
    int st = 0;
    long p = sys(SYS_wait4, -1, (long)&st, __WALL, 0);
    if (p == -4) continue;  // EINTR
    if (p < 0) leave(127);
    if (p != code_pid) continue;
    // The wait status: the low 7 bits the signal that ended it (0: it exited), the next 8 its exit code.
    int code = (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f);
    char line[24] = "{\"exit-code\":";
    int len = 13;
    char digits[3];
    int nd = 0;
    int v = code;
    do digits[nd++] = (char)('0' + v % 10), v /= 10;
    while (v > 0 && nd < 3);
    while (nd > 0) line[len++] = digits[--nd];
    line[len++] = '}';
    line[len++] = '\n';
    sys(SYS_write, status_fd, (long)line, len, 0);
    leave(code);
  }
}

#if defined(__x86_64__)
__asm__(".text\n.global _start\n_start:\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call init_start\n  hlt\n");
#elif defined(__aarch64__)
__asm__(".text\n.global _start\n_start:\n  mov x0, sp\n  bl init_start\n  brk #0\n");
#endif
