{
  "targets": [
    {
      "target_name": "hexr_native",
      "sources": ["src/peercred.c", "src/spawn.c", "src/fdpass.c", "src/errors.c", "src/cgroupfs.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-O2"],
      "defines": ["NAPI_VERSION=8"],
      "conditions": [["OS!='linux'", {"sources!": ["src/peercred.c", "src/spawn.c", "src/fdpass.c", "src/errors.c", "src/cgroupfs.c"], "sources": ["src/unsupported.c"]}]]
    }
  ]
}
