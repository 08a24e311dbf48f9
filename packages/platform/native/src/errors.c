// Errors the addon's functions give JavaScript, and the string arguments they take.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

napi_value errno_error(napi_env env, const char* what, int err) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error, errnum;
  if (napi_create_string_utf8(env, "hexr.native_syscall", NAPI_AUTO_LENGTH, &code) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok) return NULL;
  if (napi_create_error(env, code, message, &error) != napi_ok) return NULL;
  if (napi_create_int32(env, err, &errnum) == napi_ok) napi_set_named_property(env, error, "errno", errnum);
  return error;
}

napi_value throw_errno(napi_env env, const char* what, int err) {
  napi_value error = errno_error(env, what, err);
  if (error) napi_throw(env, error);
  return NULL;
}

napi_value queue_work(napi_env env, const char* what, napi_async_execute_callback execute,
                      napi_async_complete_callback complete, void* data, napi_async_work* work, napi_deferred* deferred) {
  napi_value promise, name;
  char msg[96];
  snprintf(msg, sizeof msg, "hexr.%s", what);
  *work = NULL;
  if (napi_create_promise(env, deferred, &promise) == napi_ok &&
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &name) == napi_ok &&
      napi_create_async_work(env, NULL, name, execute, complete, data, work) == napi_ok &&
      napi_queue_async_work(env, *work) == napi_ok)
    return promise;
  if (*work) napi_delete_async_work(env, *work);
  snprintf(msg, sizeof msg, "cannot queue the %s", what);
  napi_throw_error(env, "hexr.native_failed", msg);
  return NULL;
}

bool reject_failed(napi_env env, napi_deferred deferred, napi_status status, int err, const char* what) {
  if (status == napi_ok && err == 0) return false;
  napi_value error = status != napi_ok ? errno_error(env, "job cancelled", ECANCELED) : errno_error(env, what, err);
  if (error) napi_reject_deferred(env, deferred, error);
  return true;
}

char* string_arg(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char* s = malloc(len + 1);
  if (!s) return NULL;
  if (napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok || strlen(s) != len) {
    free(s);  // an embedded NUL would silently cut the string
    return NULL;
  }
  return s;
}

void free_strings(char** list, uint32_t n) {
  if (!list) return;
  for (uint32_t i = 0; i < n; i++) free(list[i]);
  free(list);
}

// A NULL-terminated copy of a JS string array.
char** string_list(napi_env env, napi_value arr, uint32_t max, uint32_t* count) {
  bool is_array;
  if (napi_is_array(env, arr, &is_array) != napi_ok || !is_array) return NULL;
  uint32_t n;
  if (napi_get_array_length(env, arr, &n) != napi_ok || n > max) return NULL;
  char** list = calloc(n + 1, sizeof(char*));
  if (!list) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    if (napi_get_element(env, arr, i, &v) != napi_ok || !(list[i] = string_arg(env, v))) {
      free_strings(list, i);
      return NULL;
    }
  }
  *count = n;
  return list;
}
