// Errors the addon's functions give JavaScript (errors.c).
#pragma once
#include <node_api.h>

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, "hexr.native_failed", #call " failed");   \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

// An Error with code "hexr.native_syscall", message "<what>: <strerror>" and an `errno` property.
napi_value errno_error(napi_env env, const char* what, int err);

// Throws errno_error; returns NULL for the caller to return.
napi_value throw_errno(napi_env env, const char* what, int err);
