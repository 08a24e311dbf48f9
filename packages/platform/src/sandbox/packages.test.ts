import { isHexrError } from "@hexr/core";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { normalizePythonName, planPackages, pythonDistributions, resolvePackages } from "./packages.js";
import { worldReadableTempDir } from "./test-support/packages.js";

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isHexrError(err)) return err.code;
    throw err;
  }
  return "no error";
}

describe("package requests", () => {
  const py = worldReadableTempDir("hexr-pkgs-py-");
  const npm = worldReadableTempDir("hexr-pkgs-npm-");
  for (const f of ["Requests-2.31.0-py3-none-any.whl", "zope.interface-6.0-cp311-cp311-linux_x86_64.whl", "old_style-1.2.tar.gz"])
    writeFileSync(join(py, f), "");
  for (const f of ["left-pad-1.3.0.tgz", "left-pad-1.10.0.tgz", "left-pad-2.0.0-beta.1.tgz", "scope-util-0.1.0.tgz", "README.md"])
    writeFileSync(join(npm, f), "");
  afterAll(() => {
    rmSync(py, { recursive: true, force: true });
    rmSync(npm, { recursive: true, force: true });
  });

  it("normalizes python names as PEP 503 does", () => {
    expect(normalizePythonName("Zope.Interface")).toBe("zope-interface");
    expect(normalizePythonName("old__style")).toBe("old-style");
    expect([...pythonDistributions(["Requests-2.31.0-py3-none-any.whl", "old_style-1.2.tar.gz", "junk.txt"])]).toEqual([
      "requests",
      "old-style",
    ]);
  });

  it("resolves python requirements against the wheel directory", () => {
    expect(
      resolvePackages("python", ["requests==2.31.0", "zope-interface", "old-style[extra]>=1,<2"], { pythonDir: py }),
    ).toEqual({
      language: "python",
      sourceDir: py,
      items: ["requests==2.31.0", "zope-interface", "old-style[extra]>=1,<2"],
      origin: "local",
    });
  });

  it("picks the highest npm version unless one is named, scoped names map to scope-name", () => {
    expect(resolvePackages("javascript", ["left-pad"], { npmDir: npm })?.items).toEqual(["left-pad-1.10.0.tgz"]);
    expect(resolvePackages("javascript", ["left-pad@1.3.0", "@scope/util"], { npmDir: npm })?.items).toEqual([
      "left-pad-1.3.0.tgz",
      "scope-util-0.1.0.tgz",
    ]);
    expect(resolvePackages("javascript", ["left-pad@2.0.0-beta.1"], { npmDir: npm })?.items).toEqual([
      "left-pad-2.0.0-beta.1.tgz",
    ]);
  });

  it("returns nothing when nothing is asked", () => {
    expect(resolvePackages("shell", [], {})).toBeUndefined();
  });

  it("names a package that cannot be had", () => {
    let err: unknown;
    try {
      resolvePackages("python", ["requests", "numpy==1.26.4"], { pythonDir: py });
    } catch (e) {
      err = e;
    }
    expect(isHexrError(err) && err.code).toBe("sandbox.package_unavailable");
    expect((err as Error).message).toContain("'numpy'");
    expect((err as Error).message).toContain(py);
    expect(codeOf(() => resolvePackages("javascript", ["left-pad@9.9.9"], { npmDir: npm }))).toBe("sandbox.package_unavailable");
    expect(codeOf(() => resolvePackages("javascript", ["right-pad"], { npmDir: npm }))).toBe("sandbox.package_unavailable");
  });

  it.each([
    ["python", "--index-url=http://evil"],
    ["python", "numpy; os_name=='nt'"],
    ["python", "git+https://x/y"],
    ["python", "a b"],
    ["python", "-e ."],
    ["javascript", "../../etc/passwd"],
    ["javascript", "left-pad@^1.0.0"],
    ["javascript", "Left-Pad"],
    ["javascript", "--registry=http://evil"],
  ] as const)("rejects the %s request %j as invalid", (lang, spec) => {
    expect(codeOf(() => resolvePackages(lang, [spec], { pythonDir: py, npmDir: npm }))).toBe("sandbox.invalid_package");
  });

  it("refuses packages for shell, and says when no source is configured", () => {
    expect(codeOf(() => resolvePackages("shell", ["jq"], { pythonDir: py }))).toBe("sandbox.packages_unsupported");
    expect(codeOf(() => resolvePackages("python", ["requests"], {}))).toBe("sandbox.packages_not_configured");
    expect(codeOf(() => resolvePackages("javascript", ["left-pad"], { pythonDir: py }))).toBe("sandbox.packages_not_configured");
    expect(codeOf(() => resolvePackages("python", ["requests"], { pythonDir: join(py, "missing") }))).toBe(
      "sandbox.packages_unreadable",
    );
  });

  it("sends requests to the index when one is configured for the language, still validated", () => {
    const sources = { pythonDir: py, npmDir: npm, index: { python: true } };
    expect(planPackages("python", ["numpy==1.26.4", "Requests[socks]"], sources)).toEqual({
      from: "index",
      language: "python",
      specs: ["numpy==1.26.4", "Requests[socks]"],
    });
    // No npm index: the local directory, as before.
    expect(planPackages("javascript", ["left-pad"], sources)).toEqual({
      from: "local",
      install: { language: "javascript", sourceDir: npm, items: ["left-pad-1.10.0.tgz"], origin: "local" },
    });
    expect(planPackages("javascript", ["@scope/util@0.1.0"], { index: { javascript: true } })).toEqual({
      from: "index",
      language: "javascript",
      specs: ["@scope/util@0.1.0"],
    });
    expect(planPackages("python", [], sources)).toBeUndefined();
    expect(codeOf(() => planPackages("python", ["--index-url=http://evil"], sources))).toBe("sandbox.invalid_package");
    expect(codeOf(() => planPackages("python", ["pkg @ https://evil/x.whl"], sources))).toBe("sandbox.invalid_package");
    expect(codeOf(() => planPackages("javascript", ["git+https://evil/x"], { index: { javascript: true } }))).toBe(
      "sandbox.invalid_package",
    );
    expect(codeOf(() => planPackages("shell", ["jq"], { index: { python: true, javascript: true } }))).toBe(
      "sandbox.packages_unsupported",
    );
  });
});
