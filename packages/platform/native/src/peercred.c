// Kernel facts about a unix socket peer that Node does not expose: SO_PEERCRED (pid, uid, gid as the
// kernel recorded them at connect time) and whether a /proc/<pid> directory handle still refers to a
// live process (a dead process's handle fails getdents even if its pid has been reused).
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <node_api.h>

#include "errors.h"

#include "cgroupfs.h"
#include "fdpass.h"
#include "spawn.h"

static int fd_arg(napi_env env, napi_callback_info info, int32_t* fd) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_typeof(env, argv[0], &type) != napi_ok || type != napi_number ||
      napi_get_value_int32(env, argv[0], fd) != napi_ok || *fd < 0) {
    napi_throw_type_error(env, "hexr.native_bad_argument", "expected a file descriptor (non-negative integer)");
    return 0;
  }
  return 1;
}

// peerCred(fd) -> { pid, uid, gid }
static napi_value peer_cred(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, &fd)) return NULL;
  struct ucred cred;
  socklen_t len = sizeof cred;
  memset(&cred, 0, sizeof cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
  if (len != sizeof cred) return throw_errno(env, "getsockopt(SO_PEERCRED) returned a short ucred", EPROTO);
  napi_value result, pid, uid, gid;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_int32(env, cred.pid, &pid));
  CHECK(napi_create_uint32(env, cred.uid, &uid));
  CHECK(napi_create_uint32(env, cred.gid, &gid));
  CHECK(napi_set_named_property(env, result, "pid", pid));
  CHECK(napi_set_named_property(env, result, "uid", uid));
  CHECK(napi_set_named_property(env, result, "gid", gid));
  return result;
}

// dirHandleAlive(fd) -> boolean: can the directory behind fd (an open /proc/<pid>) still be listed?
static napi_value dir_handle_alive(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, &fd)) return NULL;
  char buf[4096];
  bool alive = true;
  if (lseek(fd, 0, SEEK_SET) < 0) {
    alive = false;
  } else {
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EBADF || errno == ENOTDIR) return throw_errno(env, "getdents64", errno);
      alive = false;
    }
  }
  napi_value result;
  CHECK(napi_get_boolean(env, alive, &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dirHandleAlive", NULL, dir_handle_alive, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  CHECK(register_spawn(env, exports));
  CHECK(register_fdpass(env, exports));
  CHECK(register_cgroupfs(env, exports));
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
