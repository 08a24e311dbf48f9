// A sandbox's cgroup made and removed on a worker thread (cgroupfs.c).
#pragma once
#include <node_api.h>

napi_status register_cgroupfs(napi_env env, napi_value exports);
