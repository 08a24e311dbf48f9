import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A directory readable by the sandbox user (bubblewrap binds it as uid 65534). */
export function worldReadableTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/**
 * Builds a real pure-Python wheel (a zip with the package and its dist-info) with the host's python3,
 * so pip installs it offline exactly as one downloaded from an index.
 */
export function buildWheel(dir: string, opts: { name: string; version?: string; module: string; requires?: string[] }): string {
  const version = opts.version ?? "1.0.0";
  const dist = opts.name.replace(/-/g, "_");
  const file = join(dir, `${dist}-${version}-py3-none-any.whl`);
  const metadata =
    [
      `Metadata-Version: 2.1`,
      `Name: ${opts.name}`,
      `Version: ${version}`,
      ...(opts.requires ?? []).map((r) => `Requires-Dist: ${r}`),
    ].join("\n") + "\n";
  const script = `
import sys, zipfile
path, dist, version, pkg, module, metadata = sys.argv[1:7]
info = f"{dist}-{version}.dist-info"
files = {
  f"{pkg}/__init__.py": module,
  f"{info}/METADATA": metadata,
  f"{info}/WHEEL": "Wheel-Version: 1.0\\nGenerator: hexr-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
record = "".join(f"{n},,\\n" for n in files) + f"{info}/RECORD,,\\n"
with zipfile.ZipFile(path, "w") as z:
  for n, c in files.items():
    z.writestr(n, c)
  z.writestr(f"{info}/RECORD", record)
`;
  execFileSync("/usr/bin/python3", ["-c", script, file, dist, version, dist.toLowerCase(), opts.module, metadata]);
  chmodSync(file, 0o644);
  return file;
}

/** Builds an npm tarball the way `npm pack` lays it out (`package/…`, named `<name>-<version>.tgz`). */
export function buildNpmTarball(dir: string, opts: { name: string; version?: string; indexJs: string }): string {
  const version = opts.version ?? "1.0.0";
  const work = mkdtempSync(join(tmpdir(), "hexr-npm-src-"));
  const pkg = join(work, "package");
  mkdirSync(pkg);
  writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: opts.name, version, main: "index.js", license: "MIT" }));
  writeFileSync(join(pkg, "index.js"), opts.indexJs);
  const base = opts.name.startsWith("@") ? opts.name.slice(1).replace("/", "-") : opts.name;
  const file = join(dir, `${base}-${version}.tgz`);
  execFileSync("tar", ["-czf", file, "-C", work, "package"]);
  chmodSync(file, 0o644);
  return file;
}
