// The python fork server of the namespace sandbox (hexr_zygote.so). A python interpreter started once
// inside a bubblewrap sandbox (the zygote) loads this library with ctypes and calls hexr_zygote_serve,
// which never returns in the zygote until the platform closes the control socket. For each sandbox the
// platform asks for, it forks a copy of the interpreter into fresh namespaces, and only that copy
// returns to python, confined as a bubblewrap sandbox's first process is, to run one execution.
//
// Why C: on small virtual machines a page fault costs ~10 us, and a python loop that forks writes to
// hundreds of copy-on-write pages (reference counts) after every fork; this loop writes to a few. It
// also keeps the security-relevant steps (namespaces, mounts, user mapping, capabilities, seccomp) in
// one place, made of plain system calls, before any python runs in the copy.
//
// Processes per sandbox (the zygote is in its own user namespace U, where it holds capabilities, and
// in its own pid namespace; it runs no code of any execution):
//   B  the zygote's vfork child, pid 1 of a new pid namespace: it runs on the zygote's stack and in its
//      memory while the zygote waits, so making it copies nothing. It moves itself into the
//      execution's cgroup (cgroup.procs descriptors the platform opened and sent), unshares mount,
//      network, ipc, uts and cgroup namespaces, mounts a new /proc, private /tmp, /dev/shm and
//      /dev/pts, binds the execution's job directory at /run/hexr/job and detaches the zygote's /proc
//      and /tmp (its other mounts stay covered); then forks C, drops every capability, takes
//      no-new-privs and the same seccomp filter, and execs hexr-init (native/src/init.c, 16 KiB
//      resident), which releases the zygote and reaps until C exits (the sandbox's init, as
//      bubblewrap's is), exiting with C's status. It is never dumpable: the zygote's memory is not,
//      and hexr-init is exec'd from a file it cannot read.
//   C  pid 2: a new session, its own user namespace (uid/gid 65534, mapped to the zygote's, so it
//      holds no capability over the namespaces above, all owned by U), rlimits, every capability
//      dropped, no-new-privs, the sandbox's seccomp program; then it returns to python (the stub).
//      Its copy of the zygote's memory is the only one a sandbox makes: on small VMs, making one and
//      tearing it down costs more than all of B's work. The pages a copy writes to as it runs (the
//      zygote learns them from a probe before it serves: hexr_zygote_probe) are copied into C as it
//      is forked, pinned in the zygote (hexr_zygote_pin), or else populated by C in one call
//      (own_written_pages): either is far cheaper than a copy-on-write fault for each.
// hexr-init reports C's end on the sandbox's status descriptor as bubblewrap does (`{"exit-code": N}`),
// and the zygote B's end after it (the same code, or that of the signal that killed B); a failed setup
// step is reported there instead (`{"setup-error": "..."}`).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define JOB_MAGIC 0x6878727aU  // "hxrz"
#define MAX_CGROUP_FDS 4
#define JOB_FDS 5  // stdout, stderr, status, go, report
#define MAX_SANDBOXES 1024
#define ID_MAX 64
#define MAX_POPULATE_RANGES 4096  // 64 KiB of (start, length) pairs

// What the zygote's python hands over once (a ctypes Structure with the same layout).
struct hexr_zygote_config {
  const unsigned char* seccomp;  // struct sock_filter[], as bubblewrap's --seccomp takes it
  uint32_t seccomp_len;          // bytes
  uint32_t uid;                  // the sandbox's uid and gid, in the zygote's user namespace and in C's
  uint32_t gid;
  int32_t init_fd;  // hexr-init (native/src/init.c, an O_PATH descriptor): each sandbox's init, exec'd by B
  uint64_t rlimit_nofile;
  uint64_t rlimit_nproc;
  uint64_t rlimit_fsize;
  uint64_t rlimit_cpu;
  const char* jobs_dir;  // where the platform's job directories are in the zygote's view
  const char* proc_dir;  // an empty directory on the zygote's /tmp, where B mounts its /proc first
  // Ranges (start, length in bytes) of the zygote's memory a copy writes to as it runs, which C makes
  // its own in one call before it waits for its job (hexr_zygote_written); none when the zygote has
  // pinned them (hexr_zygote_pin: fork copies them) and for hexr-zygote.
  const uint64_t* populate;
  uint32_t populate_len;  // ranges
};

// One request on the control socket (SOCK_SEQPACKET), with JOB_FDS + ncgroup descriptors attached.
struct job_msg {
  uint32_t magic;
  uint32_t ncgroup;
  uint64_t tmpfs_bytes;
  uint64_t shm_bytes;
  char id[ID_MAX];  // the job directory's name below jobs_dir, NUL-terminated
};

enum { FD_STDOUT, FD_STDERR, FD_STATUS, FD_GO, FD_REPORT };

// Where C finds its descriptors when it returns to python: the stub's protocol (bubblewrap's layout).
#define C_GO_FD 7
#define C_REPORT_FD 8

static int write_all(int fd, const char* buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

// `{"setup-error": "<what>: <strerror>"}` on the status descriptor; `what` is ours (no quotes to escape).
static void report_setup_error(int status_fd, const char* what, int err) {
  char line[512];
  int n = snprintf(line, sizeof line, "{\"setup-error\":\"%s: %s\"}\n", what, strerror(err));
  if (n > 0 && status_fd >= 0) write_all(status_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static int write_file(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int r = write_all(fd, text, strlen(text));
  int saved = errno;
  close(fd);
  errno = saved;
  return r;
}

// Closes every descriptor except those in keep (any order, -1 entries ignored).
static void close_all_except(const int* keep, int n) {
  int sorted[16];
  int m = 0;
  for (int i = 0; i < n && m < 16; i++)
    if (keep[i] >= 0) sorted[m++] = keep[i];
  for (int i = 1; i < m; i++)
    for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
      int t = sorted[j];
      sorted[j] = sorted[j - 1];
      sorted[j - 1] = t;
    }
  unsigned lo = 0;
  for (int i = 0; i < m; i++) {
    if ((unsigned)sorted[i] > lo) syscall(SYS_close_range, lo, (unsigned)sorted[i] - 1, 0);
    lo = (unsigned)sorted[i] + 1;
  }
  syscall(SYS_close_range, lo, ~0U, 0);
}

static int drop_capabilities(void) {
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return -1;
  for (int cap = 0; cap <= 63; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL) break;  // past the kernel's last capability
      return -1;
    }
  }
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  return (int)syscall(SYS_capset, &hdr, data);
}

static int apply_seccomp(const struct hexr_zygote_config* cfg) {
  struct sock_fprog prog = {(unsigned short)(cfg->seccomp_len / sizeof(struct sock_filter)),
                            (struct sock_filter*)cfg->seccomp};
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

static int set_rlimit(int resource, uint64_t v) {
  struct rlimit r = {(rlim_t)v, (rlim_t)v};
  return setrlimit(resource, &r);
}

// Copies, in C, the pages of the zygote's memory a copy writes to as it runs (cfg->populate), all in
// one system call, before C waits for its job: where the zygote could not pin them. Writing to a
// page C shares with the zygote costs a copy-on-write fault each, and on a virtual machine whose
// hypervisor shadows page tables the fault is most of it (measured here: ~15 us a page, against
// ~4.5 us a page made C's own by MADV_POPULATE_WRITE and ~1.3 us a pinned page copied by fork, each
// plus ~5 us for C's first touch of it). Only a hint: contents do not change, and a range that is no
// longer mapped writable (or a kernel without process_madvise for the caller itself) only costs the
// faults again.
static void own_written_pages(const struct hexr_zygote_config* cfg) {
  if (cfg->populate_len == 0) return;
  struct iovec iov[256];
  int self = (int)syscall(SYS_pidfd_open, getpid(), 0);
  for (uint32_t i = 0; i < cfg->populate_len;) {
    uint32_t n = 0;
    size_t bytes = 0;
    for (; n < 256 && i + n < cfg->populate_len; n++) {
      iov[n] = (struct iovec){(void*)(uintptr_t)cfg->populate[2 * (i + n)], (size_t)cfg->populate[2 * (i + n) + 1]};
      bytes += iov[n].iov_len;
    }
    long done = self < 0 ? -1 : syscall(SYS_process_madvise, self, iov, (size_t)n, MADV_POPULATE_WRITE, 0);
    if (done < 0 || (size_t)done < bytes) {
      // A range failed (process_madvise stops there) or the call cannot be made: range by range.
      for (uint32_t k = 0; k < n; k++) madvise(iov[k].iov_base, iov[k].iov_len, MADV_POPULATE_WRITE);
    }
    i += n;
  }
  if (self >= 0) close(self);
}

// C: the execution's process, set up as bubblewrap sets up a sandbox's first process; returns to python.
// fds: the job's descriptors (stdout, stderr, status, go, report). Returns 0, or -1 with the status
// descriptor told why (the caller exits).
static int enter_code_process(const struct hexr_zygote_config* cfg, const int* fds) {
  int status_fd = fds[FD_STATUS];
  prctl(PR_SET_NAME, "python3", 0, 0, 0);  // as a new interpreter's (B's name came with the fork)
  own_written_pages(cfg);
  const char* step = "setsid";
  if (setsid() < 0) goto fail;
  // The stub's layout: 0 stays (the zygote's /dev/null), 1/2 output, 7 the go, 8 reports; the status
  // descriptor at 9 until the setup is over. Sources move above 9 first so no dup2 clobbers another.
  step = "descriptors";
  int moved[JOB_FDS];
  for (int i = 0; i < JOB_FDS; i++)
    if ((moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10)) < 0) goto fail;
  const int target[JOB_FDS] = {1, 2, 9, C_GO_FD, C_REPORT_FD};
  for (int i = 0; i < JOB_FDS; i++)
    if (dup2(moved[i], target[i]) < 0) goto fail;  // dup2 clears close-on-exec on the target
  const int keep[] = {0, 1, 2, 9, C_GO_FD, C_REPORT_FD};
  close_all_except(keep, 6);
  status_fd = 9;
  fcntl(9, F_SETFD, FD_CLOEXEC);

  // Its own user namespace, uid/gid 65534 inside mapped to the zygote's own: C keeps no capability in
  // U, which owns every other namespace of the sandbox, and RLIMIT_NPROC counts this sandbox only.
  step = "user namespace";
  uid_t outer_uid = geteuid();
  gid_t outer_gid = getegid();
  if (unshare(CLONE_NEWUSER) != 0) goto fail;
  char map[64];
  step = "setgroups";
  if (write_file("/proc/self/setgroups", "deny") != 0) goto fail;
  step = "uid_map";
  snprintf(map, sizeof map, "%u %u 1\n", cfg->uid, (unsigned)outer_uid);
  if (write_file("/proc/self/uid_map", map) != 0) goto fail;
  step = "gid_map";
  snprintf(map, sizeof map, "%u %u 1\n", cfg->gid, (unsigned)outer_gid);
  if (write_file("/proc/self/gid_map", map) != 0) goto fail;

  step = "rlimits";
  if (set_rlimit(RLIMIT_CORE, 0) != 0 || set_rlimit(RLIMIT_NOFILE, cfg->rlimit_nofile) != 0 ||
      set_rlimit(RLIMIT_NPROC, cfg->rlimit_nproc) != 0 || set_rlimit(RLIMIT_FSIZE, cfg->rlimit_fsize) != 0 ||
      set_rlimit(RLIMIT_CPU, cfg->rlimit_cpu) != 0)
    goto fail;
  step = "capabilities";
  if (drop_capabilities() != 0) goto fail;
  step = "no-new-privs";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) goto fail;
  step = "seccomp";
  if (apply_seccomp(cfg) != 0) goto fail;
  // Dumpable again, as a new interpreter is: the zygote's capabilities made its memory (and so its
  // copies') non-dumpable, and nothing of C's needs hiding from its own processes.
  step = "dumpable";
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) goto fail;
  close(9);
  return 0;
fail:
  report_setup_error(status_fd, step, errno);
  return -1;
}

// Mounts `type` at `dir` in place of what is there (detached with everything below it).
static int replace_mount(const char* dir, const char* type, unsigned long flags, const char* data) {
  if (umount2(dir, MNT_DETACH) != 0 && errno != EINVAL) return -1;  // EINVAL: not a mount point
  return mount(type, dir, type, flags, data);
}

// B, the zygote's vfork child (the zygote waits until B execs or exits), pid 1 of a new pid namespace.
// It runs on the zygote's stack and in its memory, so making it copies nothing; it sets the sandbox up,
// forks C (the sandbox's one copy of the zygote's memory), takes the sandbox's confinement itself and
// execs hexr-init, which releases the zygote and reaps until C exits. Returns only in C (0).
static int enter_sandbox(const struct hexr_zygote_config* cfg, const struct job_msg* job, int* fds, int* cgroup_fds) {
  int status_fd = fds[FD_STATUS];
  prctl(PR_SET_NAME, "hexr-init", 0, 0, 0);
  const char* step = "no-new-privs";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) goto fail;
  step = "cgroup";
  char buf[256];
  // Into the execution's cgroup before anything is set up, so the setup is charged and limited too.
  for (uint32_t i = 0; i < job->ncgroup; i++) {
    if (write_all(cgroup_fds[i], "0", 1) != 0) goto fail;
    close(cgroup_fds[i]);
    cgroup_fds[i] = -1;
  }
  // Only /dev/null (0), the init and the job's descriptors stay: not the control socket, nor other
  // sandboxes'.
  int keep[JOB_FDS + 2] = {0, cfg->init_fd};
  memcpy(keep + 2, fds, sizeof(int) * JOB_FDS);
  close_all_except(keep, JOB_FDS + 2);

  step = "namespaces";
  if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP) != 0) goto fail;
  // The new network namespace's loopback is down until brought up (as bubblewrap does); the kernel
  // gives it 127.0.0.1 and ::1 then.
  step = "loopback";
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) goto fail;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  ifr.ifr_flags = IFF_UP | IFF_RUNNING;
  int up = ioctl(sock, SIOCSIFFLAGS, &ifr);
  close(sock);
  if (up != 0) goto fail;
  step = "mount propagation";
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) goto fail;
  // Each lazy unmount below costs an expedited RCU grace period (IPIs to every CPU, ~40-200 us of
  // B's setup waiting here): only what holds something of other sandboxes or of the zygote's pid
  // namespace is detached (/proc, and /tmp with the job directories); the zygote's own job
  // directory, /dev/shm and /dev/pts are mounted over. What is below a mount stays out of reach:
  // the sandbox holds no descriptor or directory inside it, and neither the capability over its
  // mount namespace (owned by the zygote's user namespace) nor the system calls (seccomp) to remove
  // or copy a mount.
  // The execution's job directory (read-only), over the zygote's.
  step = "job directory";
  snprintf(buf, sizeof buf, "%s/%s", cfg->jobs_dir, job->id);
  if (mount(buf, "/run/hexr/job", NULL, MS_BIND, NULL) != 0) goto fail;
  if (mount(NULL, "/run/hexr/job", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0) goto fail;
  // A /proc of the new pid namespace. The kernel lets a user namespace mount proc only where a proc
  // is already fully visible, so it is mounted beside the zygote's, which is then detached.
  step = "proc";
  if (mount("proc", cfg->proc_dir, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) goto fail;
  if (umount2("/proc", MNT_DETACH) != 0) goto fail;
  if (mount(cfg->proc_dir, "/proc", NULL, MS_MOVE, NULL) != 0) goto fail;
  // Private /tmp (the zygote's, with every job directory below it, goes), /dev/shm and /dev/pts.
  step = "tmp";
  snprintf(buf, sizeof buf, "mode=0755,size=%llu", (unsigned long long)job->tmpfs_bytes);
  if (replace_mount("/tmp", "tmpfs", MS_NOSUID | MS_NODEV, buf) != 0) goto fail;
  step = "dev/shm";
  snprintf(buf, sizeof buf, "mode=0755,size=%llu", (unsigned long long)job->shm_bytes);
  if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, buf) != 0) goto fail;
  step = "dev/pts";
  if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620") != 0) goto fail;
  step = "chdir";
  if (chdir("/tmp") != 0) goto fail;

  step = "fork";
  pid_t c = fork();
  if (c < 0) goto fail;
  if (c == 0) return enter_code_process(cfg, fds) == 0 ? 0 : (_exit(126), -1);

  // B becomes the sandbox's init: no descriptor but the status one, no capability, no-new-privs (above)
  // and the seccomp filter, then hexr-init (its descriptor closes on the exec).
  step = "init";
  int keep_init[2] = {status_fd, cfg->init_fd};
  close_all_except(keep_init, 2);
  // The status descriptor came close-on-exec (MSG_CMSG_CLOEXEC); hexr-init reports on it.
  if (fcntl(status_fd, F_SETFD, 0) != 0) goto fail;
  if (drop_capabilities() != 0 || apply_seccomp(cfg) != 0) goto fail;
  char status_arg[16], code_arg[16];
  snprintf(status_arg, sizeof status_arg, "%d", status_fd);
  snprintf(code_arg, sizeof code_arg, "%d", (int)c);
  char* const argv[] = {"hexr-init", status_arg, code_arg, NULL};
  char* const envp[] = {NULL};
  syscall(SYS_execveat, cfg->init_fd, "", argv, envp, AT_EMPTY_PATH);
fail:
  report_setup_error(status_fd, step, errno);
  _exit(126);  // as pid 1, it takes C (if forked) along
}

struct sandbox {
  pid_t pid;       // B, in the zygote's pid namespace
  int pidfd;       // B's
  int status_fd;   // where its end is reported
};

// Takes one request off the control socket. Returns 1 with *fds filled, 0 at end of stream, -1 on a
// malformed message (its descriptors closed, the status descriptor told when there is one), -2 when
// nothing was there (EAGAIN).
static int recv_job(int ctrl, struct job_msg* job, int* fds, int* cgroup_fds) {
  union {
    char buf[CMSG_SPACE(sizeof(int) * (JOB_FDS + MAX_CGROUP_FDS))];
    struct cmsghdr align;
  } u;
  struct iovec iov = {job, sizeof *job};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = sizeof u.buf;
  ssize_t n = recvmsg(ctrl, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return errno == EAGAIN || errno == EINTR ? -2 : 0;
  if (n == 0) return 0;
  int got[JOB_FDS + MAX_CGROUP_FDS];
  int ngot = 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (ngot < JOB_FDS + MAX_CGROUP_FDS) got[ngot++] = fd;
      else close(fd);
    }
  }
  int ok = n == (ssize_t)sizeof *job && !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && job->magic == JOB_MAGIC &&
           job->ncgroup <= MAX_CGROUP_FDS && ngot == JOB_FDS + (int)job->ncgroup &&
           memchr(job->id, 0, ID_MAX) != NULL && job->id[0] != 0;
  for (const char* p = job->id; ok && *p; p++)
    ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_';
  if (!ok) {
    if (ngot > FD_STATUS) {
      const char* line = "{\"setup-error\":\"the zygote got a malformed request\"}\n";
      write_all(got[FD_STATUS], line, strlen(line));
    }
    for (int i = 0; i < ngot; i++) close(got[i]);
    return -1;
  }
  memcpy(fds, got, sizeof(int) * JOB_FDS);
  memcpy(cgroup_fds, got + JOB_FDS, sizeof(int) * job->ncgroup);
  return 1;
}

// B's start, kept out of the zygote's loop (whose variables vfork would leave unsure). Returns B's pid
// (or -1) in the zygote once B has exec'd hexr-init or exited, and 0 in C.
static __attribute__((noinline)) pid_t vfork_sandbox(const struct hexr_zygote_config* cfg, const struct job_msg* job,
                                                     int* fds, int* cgroup_fds) {
  pid_t b = vfork();
  if (b == 0 && enter_sandbox(cfg, job, fds, cgroup_fds) == 0) return 0;
  return b;
}

// The zygote learns which of its pages a copy writes to from a probe: a copy that takes a copy's
// path with a job of its own (runtime-dir.ts) and calls hexr_zygote_written as it exits.
//
// hexr_zygote_probe forks the probe and returns 1 in it, as hexr_zygote_serve returns in a copy. In
// the zygote it returns once the probe has exited: 0 if it exited 0, else -1. The zygote runs no
// python meanwhile: a page it wrote to would be the probe's alone too, and counted as written.
int hexr_zygote_probe(void) {
  pid_t p = fork();
  if (p <= 0) return p == 0 ? 1 : -1;
  int st;
  while (waitpid(p, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

// Pins the ranges a copy writes to (hexr_zygote_written) in the zygote, as buffers of an io_uring
// instance that is never used otherwise: fork copies a pinned page into the child at once (the
// kernel's early copy-on-write for pages that may be under DMA), so a copy gets those pages as its
// own without a fault, or the TLB flush each copy-on-write break costs, when it first writes to
// them. Returns the instance's descriptor, which the zygote keeps open (the pins last as long), or
// -1 (errno: no io_uring here, or RLIMIT_MEMLOCK reached), and then the copies populate instead.
int hexr_zygote_pin(const uint64_t* ranges, uint32_t n) {
  if (n == 0 || n > MAX_POPULATE_RANGES) {
    errno = EINVAL;
    return -1;
  }
  struct io_uring_params params;
  memset(&params, 0, sizeof params);
  int ring = (int)syscall(SYS_io_uring_setup, 1, &params);
  if (ring < 0) return -1;
  struct iovec* iov = calloc(n, sizeof *iov);
  if (!iov) {
    close(ring);
    errno = ENOMEM;
    return -1;
  }
  for (uint32_t i = 0; i < n; i++) iov[i] = (struct iovec){(void*)(uintptr_t)ranges[2 * i], (size_t)ranges[2 * i + 1]};
  long r = syscall(SYS_io_uring_register, ring, IORING_REGISTER_BUFFERS, iov, n);
  int saved = errno;
  free(iov);
  if (r < 0) {
    close(ring);
    errno = saved;
    return -1;
  }
  fcntl(ring, F_SETFD, FD_CLOEXEC);
  return ring;
}

// Writes to `out`, as little-endian (start, length) u64 pairs, the ranges of this process's private
// writable memory that it alone maps (/proc/self/pagemap: present and exclusively mapped), merged
// where adjacent, at most MAX_POPULATE_RANGES of them (what a pipe holds until the zygote reads it).
// Reads with stack buffers, so the scan adds only a few stack pages. Returns 0, or -1 (errno).
int hexr_zygote_written(int out) {
  int maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  int rc = -1;
  if (maps < 0 || pagemap < 0) goto done;
  char buf[8192];
  size_t have = 0;
  uint64_t run_start = 0, run_end = 0;  // the range being merged
  uint64_t pairs[2 * 64];
  int npairs = 0;
  uint32_t nranges = 0;
  const uint64_t page_size = (uint64_t)sysconf(_SC_PAGESIZE);
  for (;;) {
    ssize_t got = read(maps, buf + have, sizeof buf - 1 - have);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) goto done;
    have += (size_t)got;
    buf[have] = 0;
    char* line = buf;
    char* nl;
    while ((nl = strchr(line, '\n')) != NULL || (got == 0 && *line)) {
      if (nl) *nl = 0;
      unsigned long lo, hi;
      char perms[8];
      if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && perms[0] == 'r' && perms[1] == 'w' && perms[3] == 'p') {
        for (uint64_t page = lo; page < hi;) {
          uint64_t entries[512];
          size_t want = (size_t)((hi - page) / page_size < 512 ? (hi - page) / page_size : 512);
          ssize_t n = pread(pagemap, entries, want * 8, (off_t)(page / page_size * 8));
          if (n <= 0) break;
          for (ssize_t k = 0; k < n / 8; k++, page += page_size) {
            // bit 63: present; bit 56: exclusively mapped
            if (!((entries[k] >> 63) & 1) || !((entries[k] >> 56) & 1)) continue;
            if (page == run_end && run_end != 0) {
              run_end += page_size;
              continue;
            }
            if (run_end != 0) {
              if (++nranges > MAX_POPULATE_RANGES) goto flush;
              pairs[npairs++] = run_start;
              pairs[npairs++] = run_end - run_start;
              if (npairs == 2 * 64) {
                if (write_all(out, (const char*)pairs, sizeof pairs) != 0) goto done;
                npairs = 0;
              }
            }
            run_start = page;
            run_end = page + page_size;
          }
        }
      }
      if (!nl) {
        line += strlen(line);
        break;
      }
      line = nl + 1;
    }
    have = strlen(line);
    memmove(buf, line, have);
    if (got == 0) break;
    if (have == sizeof buf - 1) goto done;  // a line longer than the buffer: not /proc/self/maps
  }
  if (run_end != 0 && ++nranges <= MAX_POPULATE_RANGES) {
    pairs[npairs++] = run_start;
    pairs[npairs++] = run_end - run_start;
  }
flush:
  rc = npairs ? write_all(out, (const char*)pairs, sizeof(uint64_t) * (size_t)npairs) : 0;
done:;
  int saved = errno;
  if (maps >= 0) close(maps);
  if (pagemap >= 0) close(pagemap);
  errno = saved;
  return rc;
}

// The zygote's loop. Returns 1 in a sandbox's code process (C), ready for python; 0 in the zygote once
// the control socket is closed and every sandbox it made has ended; -1 (errno set) if it cannot go on.
int hexr_zygote_serve(int ctrl, const struct hexr_zygote_config* cfg) {
  static struct sandbox live[MAX_SANDBOXES];
  static struct pollfd pfds[MAX_SANDBOXES + 1];
  int nlive = 0;
  int open_ctrl = 1;
  int own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
  if (own_pidns < 0) return -1;
  prctl(PR_SET_NAME, "hexr-zygote", 0, 0, 0);  // what `ps` on the host shows
  // Not dumpable (its capabilities made it so already): each sandbox's B runs in this memory until it
  // execs hexr-init, and C makes its own copy dumpable again.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return -1;
  while (open_ctrl || nlive > 0) {
    int n = 0;
    if (open_ctrl && nlive < MAX_SANDBOXES) pfds[n++] = (struct pollfd){ctrl, POLLIN, 0};
    int first = n;
    for (int i = 0; i < nlive; i++) pfds[n++] = (struct pollfd){live[i].pidfd, POLLIN, 0};
    if (poll(pfds, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    // Ended sandboxes first: their status goes out, and their slots free up.
    for (int i = nlive - 1; i >= 0; i--) {
      if (!pfds[first + i].revents) continue;
      siginfo_t si;
      memset(&si, 0, sizeof si);
      if (waitid(P_PIDFD, (id_t)live[i].pidfd, &si, WEXITED | WNOHANG) != 0 || si.si_pid == 0) continue;
      int code = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
      char line[64];
      int len = snprintf(line, sizeof line, "{\"exit-code\":%d}\n", code);
      write_all(live[i].status_fd, line, (size_t)len);
      close(live[i].status_fd);
      close(live[i].pidfd);
      live[i] = live[--nlive];
    }
    if (first == 0 || !(pfds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;

    struct job_msg job;
    int fds[JOB_FDS];
    int cgroup_fds[MAX_CGROUP_FDS];
    memset(&job, 0, sizeof job);
    int r = recv_job(ctrl, &job, fds, cgroup_fds);
    if (r == 0) {
      open_ctrl = 0;
      continue;
    }
    if (r < 0) continue;
    // B is born in a new pid namespace (the zygote's own children go back to its own afterwards).
    pid_t b = -1;
    int err = 0;
    if (unshare(CLONE_NEWPID) != 0) {
      err = errno;
    } else {
      b = vfork_sandbox(cfg, &job, fds, cgroup_fds);
      err = errno;
      if (b == 0) return 1;  // C
      if (setns(own_pidns, CLONE_NEWPID) != 0) return -1;
    }
    int pidfd = b > 0 ? (int)syscall(SYS_pidfd_open, b, 0) : -1;
    if (b > 0 && pidfd < 0) {
      err = errno;
      kill(b, SIGKILL);
      waitpid(b, NULL, 0);
      b = -1;
    }
    if (b < 0) report_setup_error(fds[FD_STATUS], "zygote fork", err);
    for (int i = 0; i < JOB_FDS; i++)
      if (i != FD_STATUS || b < 0) close(fds[i]);
    for (uint32_t i = 0; i < job.ncgroup; i++) close(cgroup_fds[i]);
    if (b > 0) {
      fcntl(pidfd, F_SETFD, FD_CLOEXEC);
      live[nlive++] = (struct sandbox){b, pidfd, fds[FD_STATUS]};
    }
  }
  close(own_pidns);
  return 0;
}

#ifdef HEXR_ZYGOTE_MAIN
// hexr-zygote: the same fork server as an executable of its own, for sandboxes that start a new
// program (shell, javascript, and python jobs that need a new interpreter). Each copy it forks execs
// the sandbox's runner (/bin/sh <runner>), which waits for its go on fd 7 and reports on fd 8 as in a
// bubblewrap sandbox, so no copy keeps anything of the zygote's memory. A process of ~1 MiB forks in
// a fraction of the time a python interpreter's ~10 MiB takes.
//
//   hexr-zygote <uid> <gid> <nofile> <nproc> <fsize> <cpu> <jobs-dir> <proc-dir> <runner> <init>
// with the seccomp program on fd 6 (read to its end), `ready` reported on fd 8 once it serves, and
// the control socket on fd 9.
static int parse_u64(const char* s, uint64_t* out) {
  char* end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-') return -1;
  *out = (uint64_t)v;
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 11) {
    fprintf(stderr, "usage: hexr-zygote <uid> <gid> <nofile> <nproc> <fsize> <cpu> <jobs-dir> <proc-dir> <runner> <init>\n");
    return 64;
  }
  unsetenv("LD_BIND_NOW");  // the zygote's own (see backend.ts); the runner's environment is the sandbox's
  uint64_t n[6];
  for (int i = 0; i < 6; i++) {
    if (parse_u64(argv[1 + i], &n[i]) != 0 || ((i < 2) && n[i] > UINT32_MAX)) {
      fprintf(stderr, "hexr zygote: invalid number %s\n", argv[1 + i]);
      return 64;
    }
  }
  size_t cap = 4096, len = 0;
  unsigned char* program = malloc(cap);
  for (;;) {
    if (!program) {
      fprintf(stderr, "hexr zygote: out of memory\n");
      return 70;
    }
    ssize_t got = read(6, program + len, cap - len);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      fprintf(stderr, "hexr zygote: cannot read the seccomp program: %s\n", strerror(errno));
      return 70;
    }
    if (got == 0) break;
    len += (size_t)got;
    if (len == cap) program = realloc(program, cap *= 2);
  }
  close(6);
  int init_fd = open(argv[10], O_PATH | O_CLOEXEC);
  if (init_fd < 0) {
    fprintf(stderr, "hexr zygote: cannot open the sandboxes' init %s: %s\n", argv[10], strerror(errno));
    return 70;
  }
  if (len == 0 || len % sizeof(struct sock_filter) != 0 || len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
    fprintf(stderr, "hexr zygote: invalid seccomp program (%zu bytes)\n", len);
    return 64;
  }
  struct hexr_zygote_config cfg = {
      .seccomp = program,
      .seccomp_len = (uint32_t)len,
      .uid = (uint32_t)n[0],
      .gid = (uint32_t)n[1],
      .init_fd = init_fd,
      .rlimit_nofile = n[2],
      .rlimit_nproc = n[3],
      .rlimit_fsize = n[4],
      .rlimit_cpu = n[5],
      .jobs_dir = argv[7],
      .proc_dir = argv[8],
  };
  const char* runner = argv[9];
  if (write_all(8, "ready\n", 6) != 0) return 70;
  int served = hexr_zygote_serve(9, &cfg);
  if (served == 1) {
    // A sandbox's code process, confined: the runner takes over (fd 8 is the sandbox's report pipe now).
    write_all(C_REPORT_FD, "ready\n", 6);
    char* const args[] = {"/bin/sh", (char*)runner, NULL};  // as a bubblewrap sandbox starts it
    execv("/bin/sh", args);
    fprintf(stderr, "hexr: cannot start the sandbox's runner: %s\n", strerror(errno));
    _exit(127);
  }
  if (served < 0) {
    fprintf(stderr, "hexr zygote: %s\n", strerror(errno));
    return 70;
  }
  return 0;
}
#endif
