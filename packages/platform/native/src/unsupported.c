// Peer credentials and sandbox processes need Linux (SO_PEERCRED, clone); other systems get a module whose functions throw.
#include <node_api.h>

static napi_value unsupported(napi_env env, napi_callback_info info) {
  (void)info;
  napi_throw_error(env, "hexr.native_unsupported", "this needs Linux (SO_PEERCRED, /proc, clone)");
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"peerCred", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dirHandleAlive", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spawn", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pipe", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
      {"memfd", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
      {"reap", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seqpacketPair", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendFds", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
      {"cgroupMake", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rmdirs", NULL, unsupported, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
