// Descriptor passing for the namespace sandbox's python fork server (../src/sandbox/namespace/zygote.ts):
// a SOCK_SEQPACKET socket pair, and one message sent with descriptors attached (SCM_RIGHTS), which
// Node's net module cannot do.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <node_api.h>

#include "errors.h"

#include "fdpass.h"

#define MAX_PASSED_FDS 16

// seqpacketPair() -> [ours, theirs]: both close-on-exec; ours non-blocking (a send never stalls the event loop).
static napi_value seqpacket_pair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return throw_errno(env, "socketpair", errno);
  int flags = fcntl(sv[0], F_GETFL);
  if (flags < 0 || fcntl(sv[0], F_SETFL, flags | O_NONBLOCK) != 0) {
    int err = errno;
    close(sv[0]);
    close(sv[1]);
    return throw_errno(env, "fcntl(O_NONBLOCK)", err);
  }
  napi_value result, a, b;
  CHECK(napi_create_array_with_length(env, 2, &result));
  CHECK(napi_create_int32(env, sv[0], &a));
  CHECK(napi_create_int32(env, sv[1], &b));
  CHECK(napi_set_element(env, result, 0, a));
  CHECK(napi_set_element(env, result, 1, b));
  return result;
}

// sendFds(socket, data, fds): one message (data, fds attached). Throws with errno EAGAIN when the peer's
// queue is full, EPIPE/ECONNRESET when it is gone; nothing is sent then.
static napi_value send_fds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t sock = -1;
  void* data = NULL;
  size_t len = 0;
  bool is_buffer = false, is_array = false;
  uint32_t nfds = 0;
  int fds[MAX_PASSED_FDS];
  bool ok = argc >= 3 && napi_get_value_int32(env, argv[0], &sock) == napi_ok && sock >= 0 &&
            napi_is_buffer(env, argv[1], &is_buffer) == napi_ok && is_buffer &&
            napi_get_buffer_info(env, argv[1], &data, &len) == napi_ok && len > 0 &&
            napi_is_array(env, argv[2], &is_array) == napi_ok && is_array &&
            napi_get_array_length(env, argv[2], &nfds) == napi_ok && nfds >= 1 && nfds <= MAX_PASSED_FDS;
  for (uint32_t i = 0; ok && i < nfds; i++) {
    napi_value v;
    ok = napi_get_element(env, argv[2], i, &v) == napi_ok && napi_get_value_int32(env, v, &fds[i]) == napi_ok && fds[i] >= 0;
  }
  if (!ok) {
    napi_throw_type_error(env, "hexr.native_bad_argument", "sendFds(socket: fd, data: non-empty Buffer, fds: fd[] (1-16))");
    return NULL;
  }
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_PASSED_FDS)];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct iovec iov = {data, len};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
  memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  ssize_t n;
  do {
    n = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, "sendmsg", errno);
  if ((size_t)n != len) return throw_errno(env, "sendmsg (short)", EMSGSIZE);
  return NULL;
}

napi_status register_fdpass(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"seqpacketPair", NULL, seqpacket_pair, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendFds", NULL, send_fds, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
