// Descriptor passing (fdpass.c), registered on the addon's exports by the module init.
#pragma once
#include <node_api.h>

napi_status register_fdpass(napi_env env, napi_value exports);
