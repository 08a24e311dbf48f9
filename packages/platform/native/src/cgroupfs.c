// A sandbox's cgroup made and removed in one worker-thread job each (../../src/sandbox/cgroup.ts).
// cgroupfs answers mkdir, writes and rmdir from memory in microseconds, but mkdir and rmdir take the
// kernel's cgroup lock, which a migration elsewhere (another sandbox moving into its cgroup) can hold
// across an RCU grace period: made on the event loop, a sandbox's cgroup stalled it for up to ~10 ms
// now and then; made with one thread-pool round trip per call (fs.promises), its ~10 calls cost ~1 ms
// of CPU per execution on a small VM. One job for the whole batch costs one round trip.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <node_api.h>

#include "cgroupfs.h"
#include "errors.h"

#define MAX_ITEMS 64

struct cgroup_job {
  napi_async_work work;
  napi_deferred deferred;
  bool remove;        // rmdirs: remove dirs, report each one's errno
  char** dirs;
  uint32_t ndirs;
  char** files;       // written in order, after every directory is made
  char** values;
  uint32_t nfiles;
  uint32_t nvalues;
  bool optional[MAX_ITEMS];  // a missing file (ENOENT) is skipped
  int results[MAX_ITEMS];    // rmdirs: 0 or errno
  int err;
  char what[320];
};

static void free_cgroup_job(struct cgroup_job* job) {
  free_strings(job->dirs, job->ndirs);
  free_strings(job->files, job->nfiles);
  free_strings(job->values, job->nvalues);
  free(job);
}

static int write_value(const char* file, const char* value) {
  int fd = open(file, O_WRONLY | O_CLOEXEC);  // cgroupfs files exist or not: no O_CREAT
  if (fd < 0) return errno;
  size_t len = strlen(value);
  ssize_t n;
  do n = write(fd, value, len);
  while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : (size_t)n != len ? EIO : 0;
  close(fd);
  return err;
}

static void cgroup_execute(napi_env env, void* data) {
  (void)env;
  struct cgroup_job* job = data;
  if (job->remove) {
    for (uint32_t i = 0; i < job->ndirs; i++) job->results[i] = rmdir(job->dirs[i]) == 0 ? 0 : errno;
    return;
  }
  uint32_t made = 0;
  for (; made < job->ndirs; made++) {
    if (mkdir(job->dirs[made], 0755) != 0) {
      job->err = errno;
      snprintf(job->what, sizeof job->what, "mkdir %s", job->dirs[made]);
      break;
    }
  }
  for (uint32_t i = 0; !job->err && i < job->nfiles; i++) {
    int err = write_value(job->files[i], job->values[i]);
    if (err && !(err == ENOENT && job->optional[i])) {
      job->err = err;
      snprintf(job->what, sizeof job->what, "write %s", job->files[i]);
    }
  }
  if (job->err) {
    while (made > 0) rmdir(job->dirs[--made]);  // nothing half made stays
  }
}

static void cgroup_complete(napi_env env, napi_status status, void* data) {
  struct cgroup_job* job = data;
  napi_value value = NULL;
  if (reject_failed(env, job->deferred, status, job->err, job->what)) {
    // rejected
  } else if (!job->remove) {
    if (napi_get_undefined(env, &value) == napi_ok) napi_resolve_deferred(env, job->deferred, value);
  } else if (napi_create_array_with_length(env, job->ndirs, &value) == napi_ok) {
    for (uint32_t i = 0; i < job->ndirs; i++) {
      napi_value e;
      if (napi_create_int32(env, job->results[i], &e) == napi_ok) napi_set_element(env, value, i, e);
    }
    napi_resolve_deferred(env, job->deferred, value);
  }
  napi_delete_async_work(env, job->work);
  free_cgroup_job(job);
}

static napi_value queue_cgroup_job(napi_env env, struct cgroup_job* job) {
  napi_value promise = queue_work(env, "cgroup job", cgroup_execute, cgroup_complete, job, &job->work, &job->deferred);
  if (!promise) free_cgroup_job(job);
  return promise;
}

// A job for a call with `n` arguments (into argv); NULL with an error thrown if it cannot be had.
static struct cgroup_job* new_cgroup_job(napi_env env, napi_callback_info info, size_t n, napi_value* argv, size_t* argc) {
  *argc = n;
  if (napi_get_cb_info(env, info, argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, "hexr.native_failed", "napi_get_cb_info failed");
    return NULL;
  }
  struct cgroup_job* job = calloc(1, sizeof *job);
  if (!job) throw_errno(env, "calloc", ENOMEM);
  return job;
}

// cgroupMake(dirs, files, values, optional) -> Promise<void>: makes each directory (0755), then
// writes values[i] to files[i] in order (an existing file only; optional[i]: a missing one is
// skipped). On a failure, removes the directories it made and rejects naming the step.
static napi_value cgroup_make(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[4];
  struct cgroup_job* job = new_cgroup_job(env, info, 4, argv, &argc);
  if (!job) return NULL;
  uint32_t noptional = 0;
  bool is_array = false;
  bool ok = argc >= 4 && (job->dirs = string_list(env, argv[0], MAX_ITEMS, &job->ndirs)) &&
            (job->files = string_list(env, argv[1], MAX_ITEMS, &job->nfiles)) &&
            (job->values = string_list(env, argv[2], MAX_ITEMS, &job->nvalues)) && job->nvalues == job->nfiles &&
            napi_is_array(env, argv[3], &is_array) == napi_ok && is_array &&
            napi_get_array_length(env, argv[3], &noptional) == napi_ok && noptional == job->nfiles;
  for (uint32_t i = 0; ok && i < noptional; i++) {
    napi_value v;
    ok = napi_get_element(env, argv[3], i, &v) == napi_ok && napi_get_value_bool(env, v, &job->optional[i]) == napi_ok;
  }
  if (!ok) {
    free_cgroup_job(job);
    napi_throw_type_error(env, "hexr.native_bad_argument",
                          "cgroupMake(dirs: string[], files: string[], values: string[], optional: boolean[]) (<= 64 each, as many values and flags as files)");
    return NULL;
  }
  return queue_cgroup_job(env, job);
}

// rmdirs(dirs) -> Promise<number[]>: rmdir of each directory, in order; per directory 0 or its errno.
static napi_value rmdirs(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[1];
  struct cgroup_job* job = new_cgroup_job(env, info, 1, argv, &argc);
  if (!job) return NULL;
  job->remove = true;
  if (argc < 1 || !(job->dirs = string_list(env, argv[0], MAX_ITEMS, &job->ndirs))) {
    free_cgroup_job(job);
    napi_throw_type_error(env, "hexr.native_bad_argument", "rmdirs(dirs: string[]) (<= 64)");
    return NULL;
  }
  return queue_cgroup_job(env, job);
}

napi_status register_cgroupfs(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"cgroupMake", NULL, cgroup_make, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rmdirs", NULL, rmdirs, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
