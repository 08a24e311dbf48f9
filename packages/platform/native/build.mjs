// Builds the native addon with node-gyp, and the sandbox's fork servers with the C compiler (run by `npm install` through the package's install script).
// Uses the headers installed beside this Node when present, so no download from nodejs.org is needed.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

function nodeGyp() {
  const fromNpm = process.env["npm_config_node_gyp"];
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  const bundled = join(
    dirname(process.execPath),
    "..",
    "lib",
    "node_modules",
    "npm",
    "node_modules",
    "node-gyp",
    "bin",
    "node-gyp.js",
  );
  if (existsSync(bundled)) return [process.execPath, bundled];
  return ["node-gyp"];
}

function nodeDir() {
  if (process.env["npm_config_nodedir"]) return process.env["npm_config_nodedir"];
  const prefix = join(dirname(process.execPath), "..");
  return existsSync(join(prefix, "include", "node", "node_api.h")) ? prefix : undefined;
}

const [cmd, ...pre] = nodeGyp();
const dir = nodeDir();
const args = [...pre, "rebuild", ...(dir ? [`--nodedir=${dir}`] : [])];
const r = spawnSync(cmd, args, { cwd: here, stdio: "inherit" });
if (r.error) {
  console.error(`hexr native addon: cannot run node-gyp (${r.error.message}); install a C toolchain (gcc, make, python3)`);
  process.exit(1);
}
if (r.status !== 0) process.exit(r.status ?? 1);

// The namespace sandbox's fork servers, built beside the addon with the C compiler (no Node, no
// Python headers): a shared library the python zygote interpreter loads with ctypes, the same code as
// an executable (hexr-zygote) for sandboxes that start a new program, and their sandboxes' init
// (hexr-init), freestanding: no C library, so its exec maps nothing but itself.
if (process.platform === "linux") {
  const cc = process.env["CC"] || "cc";
  const zygote = join(here, "src", "zygote.c");
  const flags = ["-O2", "-Wall", "-Wextra", "-Werror"];
  const freestanding = ["-nostdlib", "-static", "-ffreestanding", "-fno-builtin", "-fno-stack-protector"];
  freestanding.push("-fno-asynchronous-unwind-tables", "-fno-pie", "-no-pie", "-s");
  for (const [out, extra, src] of [
    // -z now: symbols bound as the zygote loads, not in each copy (a write to a page it shares).
    [join(here, "build", "Release", "hexr_zygote.so"), ["-shared", "-fPIC", "-Wl,-z,now"], zygote],
    [join(here, "build", "Release", "hexr-zygote"), ["-DHEXR_ZYGOTE_MAIN", "-Wl,-z,now"], zygote],
    [join(here, "build", "Release", "hexr-init"), freestanding, join(here, "src", "init.c")],
  ]) {
    const z = spawnSync(cc, [...extra, ...flags, "-o", out, src], { stdio: "inherit" });
    if (z.error || z.status !== 0) {
      console.error(
        `hexr native addon: cannot build ${out} with ${cc}${z.error ? ` (${z.error.message})` : ""}; install a C toolchain (gcc)`,
      );
      process.exit(1);
    }
  }
}
