// Errors the addon's functions give JavaScript, and the string arguments they take (errors.c).
#pragma once
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>

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

// Queues `execute` on the thread pool, `complete` after it on the JavaScript thread, and returns the
// promise `*deferred` settles. NULL (a "cannot queue the <what>" error thrown) if it cannot; `data` is
// then the caller's to free.
napi_value queue_work(napi_env env, const char* what, napi_async_execute_callback execute,
                      napi_async_complete_callback complete, void* data, napi_async_work* work, napi_deferred* deferred);

// For a queued job's completion: rejects `deferred` if the job was cancelled (status) or failed (err,
// an errno, at step `what`); true if it did.
bool reject_failed(napi_env env, napi_deferred deferred, napi_status status, int err, const char* what);

// A JavaScript string as a malloc'd C string; NULL if it is not one or holds a NUL.
char* string_arg(napi_env env, napi_value v);

// A JavaScript array of at most `max` strings as a malloc'd NULL-terminated list; NULL if it is not one.
char** string_list(napi_env env, napi_value arr, uint32_t max, uint32_t* count);

// Frees the first n strings of list, and list.
void free_strings(char** list, uint32_t n);
