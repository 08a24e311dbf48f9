// Peer credentials are read with Linux's SO_PEERCRED; other systems get a module whose functions throw.
#include <node_api.h>

static napi_value unsupported(napi_env env, napi_callback_info info) {
  (void)info;
  napi_throw_error(env, "hexr.native_unsupported", "workload attestation needs Linux (SO_PEERCRED and /proc)");
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"peerCred", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dirHandleAlive", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}
