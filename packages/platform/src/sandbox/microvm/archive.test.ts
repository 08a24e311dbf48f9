import { isHexrError } from "@hexr/core";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { buildNpmTarball, buildWheel } from "../test-support/packages.js";
import { Budget, bundle, readTarGz, readZip, safePath } from "./archive.js";

const dir = mkdtempSync(join(tmpdir(), "hexr-archive-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const budget = (max = 1 << 20) => new Budget(max, (n) => new Error(`over by ${n - max}`) as never);

function zip(entries: Record<string, string>, file: string): Buffer {
  execFileSync("/usr/bin/python3", [
    "-c",
    "import json, sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    for n, c in json.loads(sys.argv[2]).items():\n        z.writestr(n, c)\n",
    file,
    JSON.stringify(entries),
  ]);
  return readFileSync(file);
}

it("reads a wheel's files as python's zipfile wrote them", () => {
  const whl = buildWheel(dir, { name: "hexr-zip", module: "VALUE = 1\n" + "x = 'y'\n".repeat(500) });
  const files = readZip(readFileSync(whl), "w", budget());
  expect(files.map((f) => f.path).sort()).toEqual([
    "hexr_zip-1.0.0.dist-info/METADATA",
    "hexr_zip-1.0.0.dist-info/RECORD",
    "hexr_zip-1.0.0.dist-info/WHEEL",
    "hexr_zip/__init__.py",
  ]);
  expect(files.find((f) => f.path === "hexr_zip/__init__.py")!.data.toString()).toBe("VALUE = 1\n" + "x = 'y'\n".repeat(500));
});

it("refuses paths that leave the target, and archives that unpack past the budget", () => {
  const evil = zip({ "../../etc/x": "x" }, join(dir, "evil.zip"));
  expect(() => readZip(evil, "evil.zip", budget())).toThrow(/cannot be read: it holds the path '..\/..\/etc\/x'/);
  const big = zip({ "a/b": "z".repeat(100_000) }, join(dir, "big.zip"));
  expect(() => readZip(big, "big.zip", budget(50_000))).toThrow("over by 50000");
  for (const p of ["/abs", "a/../b", "a//b", ".", "a\nb", "a\\b"]) expect(safePath(p), p).toBeUndefined();
  expect(safePath("@scope/name/")).toBe("@scope/name");
  let err: unknown;
  try {
    readZip(Buffer.from("not a zip"), "x.whl", budget());
  } catch (e) {
    err = e;
  }
  expect(isHexrError(err) && err.code).toBe("sandbox.package_install_failed");
});

it("reads an npm tarball, long names included", () => {
  const tgz = buildNpmTarball(dir, { name: "hexr-tar", indexJs: "module.exports = 1;\n" });
  const files = readTarGz(readFileSync(tgz), "t", budget());
  expect(files.map((f) => f.path).sort()).toEqual(["package/index.js", "package/package.json"]);
  const work = mkdtempSync(join(dir, "long-"));
  const long = "d".repeat(120) + "/" + "f".repeat(120) + ".js";
  execFileSync("mkdir", ["-p", join(work, "package", "d".repeat(120))]);
  writeFileSync(join(work, "package", long), "long");
  execFileSync("tar", ["--format=pax", "-czf", join(dir, "long.tgz"), "-C", work, "package"]);
  const got = readTarGz(readFileSync(join(dir, "long.tgz")), "long.tgz", budget());
  expect(got.find((f) => f.path === `package/${long}`)?.data.toString()).toBe("long");
});

it("bundles files as the guest's install step reads them", () => {
  const b = bundle([
    { path: "python/a.py", executable: false, data: Buffer.from("x = 1\n") },
    { path: "node/node_modules/b/bin", executable: true, data: Buffer.from("#!") },
  ]);
  expect(b.toString()).toBe("- 6 python/a.py\nx = 1\nx 2 node/node_modules/b/bin\n#!");
});
