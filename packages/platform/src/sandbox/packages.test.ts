import { isHexrError } from "@hexr/core";
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SandboxConfig } from "./config.js";
import { localPackageChecks } from "./module.js";
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

describe("the doctor's checks of local package directories", () => {
  const root = worldReadableTempDir("hexr-localchk-");
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const configWith = (packages: Record<string, unknown>, more: Record<string, unknown> = {}) =>
    SandboxConfig.parse({ packages, ...more });

  it("says what each directory holds, and that an index shadows it", async () => {
    const py = join(root, "wheels");
    const npm = join(root, "npm");
    mkdirSync(py, { mode: 0o755 });
    mkdirSync(npm, { mode: 0o755 });
    for (const f of ["a-1.0-py3-none-any.whl", "b-2.0-py3-none-any.whl", "c-1.0.tar.gz"]) writeFileSync(join(py, f), "");
    writeFileSync(join(npm, "left-pad-1.3.0.tgz"), "");
    const checks = await localPackageChecks(
      configWith({ pythonDir: py, npmDir: npm, npm: { registry: "https://registry.npmjs.org" } }, { backend: "namespace" }),
    );
    expect(checks).toEqual([
      {
        name: "packages:pythonDir",
        ok: true,
        severity: "warning",
        detail: `${py}: 2 wheel(s), 1 source distribution(s) (the microvm backend uses wheels only)`,
      },
      {
        name: "packages:npmDir",
        ok: true,
        severity: "warning",
        detail: `${npm}: 1 tarball(s); not used while sandbox.packages.npm names an index, which wins`,
      },
    ]);
  });

  it("warns of a directory that is not there, or that the sandbox user cannot reach", async () => {
    const [absent] = await localPackageChecks(configWith({ pythonDir: join(root, "absent") }, { backend: "namespace" }));
    expect(absent).toMatchObject({ name: "packages:pythonDir", ok: false, severity: "warning" });
    expect(absent!.detail).toContain("cannot be read (ENOENT)");

    const locked = join(root, "locked");
    mkdirSync(join(locked, "npm"), { recursive: true, mode: 0o755 });
    chmodSync(locked, 0o700);
    // As root, sandboxes read it as uid 65534, which the 0700 directory keeps out; otherwise as this user.
    const [asRoot] = await localPackageChecks(configWith({ npmDir: join(locked, "npm") }), true);
    expect(asRoot).toMatchObject({ name: "packages:npmDir", ok: false });
    expect(asRoot!.detail).toContain(`${join(locked, "npm")} cannot be read by uid 65534 (blocked at ${locked})`);
    const [notRoot] = await localPackageChecks(configWith({ npmDir: join(locked, "npm") }), false);
    expect(notRoot).toMatchObject({ name: "packages:npmDir", ok: true });
  });

  it("checks the microvm's resolver tools for a python directory: bubblewrap and pip on the host", async () => {
    const py = join(root, "wheels2");
    mkdirSync(py, { mode: 0o755 });
    const checks = await localPackageChecks(configWith({ pythonDir: py }));
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ["packages:pythonDir", true],
      ["packages:resolver", true],
    ]);
    expect(checks[1]!.detail).toMatch(/^bubblewrap and pip \S+ on the host/);
    const noBwrap = await localPackageChecks(configWith({ pythonDir: py }, { namespace: { bwrapPath: "/nonexistent/bwrap" } }));
    expect(noBwrap[1]).toMatchObject({ name: "packages:resolver", ok: false });
    expect(noBwrap[1]!.detail).toContain("missing: bubblewrap (apt-get install bubblewrap)");
    // Not asked when only the namespace backend may run.
    expect((await localPackageChecks(configWith({ pythonDir: py }, { backend: "namespace" }))).map((c) => c.name)).toEqual([
      "packages:pythonDir",
    ]);
  });
});
