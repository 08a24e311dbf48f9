// Errors the addon's functions give JavaScript.
#include <stdio.h>
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
