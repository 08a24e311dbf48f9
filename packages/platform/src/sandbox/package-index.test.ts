import { isHexrError } from "@hexr/core";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SandboxConfig } from "./config.js";
import { createSandboxModule, packageCacheDir, type SandboxModule } from "./module.js";
import { defaultRuntimeParent } from "./namespace/runtime-dir.js";
import type { ExecContext } from "./service.js";
import {
  buildSamplePackages,
  startNpmRegistry,
  startSimpleIndex,
  worldReadableTempDir,
  type TestIndex,
} from "./test-support/packages.js";

const admin: ExecContext = { principal: { kind: "admin", keyId: "k1" } };

async function errorOf(p: Promise<unknown>): Promise<{ code: string; message: string; kind: string; details: unknown }> {
  try {
    await p;
  } catch (err) {
    if (isHexrError(err)) return { code: err.code, message: err.message, kind: err.kind, details: err.details };
    throw err;
  }
  throw new Error("expected an error");
}

describe("packages from a package index, end to end on the namespace backend", () => {
  const wheels = worldReadableTempDir("hexr-e2e-wheels-");
  const tarballs = worldReadableTempDir("hexr-e2e-npm-");
  const cacheDir = worldReadableTempDir("hexr-e2e-cache-");
  const dataDir = mkdtempSync(join(tmpdir(), "hexr-e2e-data-"));
  let pyIndex: TestIndex;
  let npmReg: TestIndex;
  let mod: SandboxModule;
  const exec = async (body: Record<string, unknown>) => (await mod.service.execute(body, admin)).result;

  beforeAll(async () => {
    buildSamplePackages(wheels, tarballs);
    pyIndex = await startSimpleIndex(readdirSync(wheels).map((f) => join(wheels, f)));
    npmReg = await startNpmRegistry(readdirSync(tarballs).map((f) => join(tarballs, f)));
    mod = createSandboxModule({
      config: SandboxConfig.parse({
        backend: "namespace",
        namespace: { warmPool: 1 },
        packages: {
          python: { indexUrl: `${pyIndex.origin}/simple/` },
          npm: { registry: npmReg.origin },
          cacheDir,
        },
      }),
      dataDir,
      trustDomain: "test.local",
      log: pino({ level: "silent" }),
    });
    await mod.start();
    await mod.service.started();
    expect(mod.service.status()).toMatchObject({ enabled: true, backend: "namespace" });
  });
  afterAll(async () => {
    await mod?.stop();
    await Promise.all([pyIndex?.close(), npmReg?.close()]);
    for (const d of [wheels, tarballs, cacheDir, dataDir]) rmSync(d, { recursive: true, force: true });
  });

  it("installs a python package and its dependency from the index, then from the cache", async () => {
    const code = "import hexr_stats\nprint(hexr_stats.mean2([1, 2, 3]))";
    const r = await exec({ code, packages: ["hexr-stats==2.0.0"] });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("4.0\n");
    const downloads = () => pyIndex.requests.filter((p) => p.startsWith("/files/")).length;
    expect(downloads()).toBe(2);
    const again = await exec({ code, packages: ["hexr-stats"] });
    expect(again.stdout).toBe("4.0\n");
    expect(downloads()).toBe(2);
    // Installed into that execution only.
    expect((await exec({ code: "import hexr_stats" })).stderr).toContain("No module named 'hexr_stats'");
  });

  it("installs an npm package with its dependency for require and import", async () => {
    const cjs = await exec({
      language: "javascript",
      code: "console.log(require('@hexr/shout')('you'))",
      packages: ["@hexr/shout"],
    });
    expect(cjs.stderr).toBe("");
    expect(cjs.stdout).toBe("HI YOU\n");
    const esm = await exec({
      language: "javascript",
      code: "import shout from '@hexr/shout';\nimport greet from 'hexr-greet';\nconsole.log(shout('a'), greet('b'));",
      packages: ["@hexr/shout@1.0.0"],
    });
    expect(esm.stderr).toBe("");
    expect(esm.stdout).toBe("HI A hi b\n");
    expect(npmReg.requests.filter((p) => p.endsWith(".tgz")).length).toBe(2);
  });

  it("names a package the index does not have", async () => {
    const py = await errorOf(exec({ code: "print(1)", packages: ["hexr-stats", "hexr-absent==1.0"] }));
    expect(py).toMatchObject({
      code: "sandbox.package_unavailable",
      kind: "failed_precondition",
      details: { package: "hexr-absent" },
    });
    expect(py.message).toContain("'hexr-absent==1.0'");
    const js = await errorOf(exec({ language: "javascript", code: "1", packages: ["hexr-absent-js"] }));
    expect(js).toMatchObject({ code: "sandbox.package_unavailable", details: { package: "hexr-absent-js" } });
  });

  it("still refuses requests pip or npm could take as options or URLs, before fetching anything", async () => {
    const before = pyIndex.requests.length;
    const r = await errorOf(exec({ code: "print(1)", packages: ["--index-url=http://evil.example/simple"] }));
    expect(r.code).toBe("sandbox.invalid_package");
    expect(pyIndex.requests.length).toBe(before);
  });

  it("leaves no fetched directory behind", async () => {
    const parent = defaultRuntimeParent();
    const dirs = readdirSync(parent).filter((n) => n.startsWith(`hexr-pkgfetch-${process.pid}-`));
    expect(dirs.length).toBeGreaterThan(0); // the fetcher's own directory, where fetches happened
    expect(dirs.flatMap((n) => readdirSync(join(parent, n, "jobs")))).toEqual([]);
  });
});

describe("package index configuration", () => {
  it("accepts an index, a registry and extra hosts; keeps the local directories", () => {
    const c = SandboxConfig.parse({
      packages: {
        python: { indexUrl: "https://pypi.org/simple", allowHosts: ["files.pythonhosted.org"] },
        npm: { registry: "https://registry.npmjs.org" },
        pythonDir: "/srv/wheels",
      },
    });
    expect(c.packages).toEqual({
      python: { indexUrl: "https://pypi.org/simple", allowHosts: ["files.pythonhosted.org"] },
      npm: { registry: "https://registry.npmjs.org", allowHosts: [] },
      pythonDir: "/srv/wheels",
      cacheMaxMb: 4096,
    });
    expect(packageCacheDir(c, "/data", false)).toBe("/data/sandbox/package-cache");
    const priv = SandboxConfig.parse({
      packages: {
        python: { indexUrl: "https://pypi.example/simple", username: "aws", passwordEnv: "CODEARTIFACT_TOKEN" },
        npm: { registry: "https://npm.example/", tokenEnv: "NPM_TOKEN" },
      },
    });
    expect(priv.packages.python).toMatchObject({ username: "aws", passwordEnv: "CODEARTIFACT_TOKEN" });
    expect(priv.packages.npm).toMatchObject({ tokenEnv: "NPM_TOKEN" });
    expect(packageCacheDir(c, "/root/.hexr", true)).toBe("/var/cache/hexr/packages");
  });

  it.each([
    [{ python: { indexUrl: "ftp://mirror/simple" } }, "packages.python.indexUrl"],
    [{ python: { indexUrl: "not a url" } }, "packages.python.indexUrl"],
    [{ npm: { registry: "https://registry.npmjs.org", allowHosts: ["https://evil.example"] } }, "packages.npm.allowHosts.0"],
    [{ npm: { registry: "https://registry.npmjs.org", allowHosts: ["x:99999"] } }, "packages.npm.allowHosts.0"],
    [{ python: { url: "https://pypi.org/simple" } }, "packages.python"],
    [{ cacheMaxMb: 8 }, "packages.cacheMaxMb"],
    [{ cacheMaxMb: 100.5 }, "packages.cacheMaxMb"],
    // Credentials: by the name of an environment variable, user name and variable together, never both ways.
    [{ python: { indexUrl: "https://pypi.example/simple", passwordEnv: "PYPI_PASSWORD" } }, "packages.python.passwordEnv"],
    [{ python: { indexUrl: "https://pypi.example/simple", username: "ci" } }, "packages.python.passwordEnv"],
    [
      { python: { indexUrl: "https://pypi.example/simple", username: "ci", passwordEnv: "not a name" } },
      "packages.python.passwordEnv",
    ],
    [
      { python: { indexUrl: "https://u:p@pypi.example/simple", username: "ci", passwordEnv: "PYPI_PASSWORD" } },
      "packages.python.indexUrl",
    ],
    [{ npm: { registry: "https://npm.example", tokenEnv: "NPM-TOKEN" } }, "packages.npm.tokenEnv"],
    [{ npm: { registry: "https://npm.example", token: "npm_abc" } }, "packages.npm"],
  ])("rejects %j at %s", (packages, path) => {
    const r = SandboxConfig.safeParse({ packages });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.path.join("."))).toContain(path);
  });
});
