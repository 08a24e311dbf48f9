import { isHexrError, type ExecResult } from "@hexr/core";
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NamespaceBackend } from "./namespace/backend.js";
import { SandboxService, type ExecContext } from "./service.js";
import { buildNpmTarball, buildWheel, worldReadableTempDir } from "./test-support/packages.js";

const admin: ExecContext = { principal: { kind: "admin", keyId: "k1" } };
const MiB = 1024 * 1024;

async function errorOf(p: Promise<unknown>): Promise<{ code: string; message: string; kind: string }> {
  try {
    await p;
  } catch (err) {
    if (isHexrError(err)) return { code: err.code, message: err.message, kind: err.kind };
    throw err;
  }
  throw new Error("expected an error");
}

describe("sandbox service on the namespace backend", () => {
  const pyDir = worldReadableTempDir("hexr-wheels-");
  const npmDir = worldReadableTempDir("hexr-npm-");
  let svc: SandboxService;
  const run = async (body: Record<string, unknown>, ctx: ExecContext = admin): Promise<ExecResult> =>
    (await svc.execute(body, ctx)).result;

  beforeAll(async () => {
    buildWheel(pyDir, { name: "hexrtiny", module: "VALUE = 42\ndef hello():\n    return 'hello from hexrtiny'\n" });
    buildWheel(pyDir, { name: "needs-missing", module: "", requires: ["missingdep>=1"] });
    buildNpmTarball(npmDir, { name: "hexr-tiny", indexJs: "module.exports = { answer: () => 42 };\n" });
    svc = new SandboxService({
      backends: [
        new NamespaceBackend({
          limits: { memoryBytes: 256 * MiB, pids: 128, cpus: 1, tmpfsBytes: 64 * MiB, maxOutputBytes: 64 * 1024 },
          warmPool: 1,
          packageDirs: { python: pyDir, javascript: npmDir },
        }),
      ],
      limits: { maxConcurrent: 2, maxQueue: 1, maxTimeoutSeconds: 60, maxCodeBytes: 64 * 1024, installTimeoutSeconds: 120 },
      packages: { pythonDir: pyDir, npmDir },
      languagesOf: (b) => (b as NamespaceBackend).languages(),
    });
    const [h] = await svc.start();
    expect(h?.available, h?.summary).toBe(true);
  });
  afterAll(async () => {
    await svc?.stop();
    rmSync(pyDir, { recursive: true, force: true });
    rmSync(npmDir, { recursive: true, force: true });
  });

  it("runs python, shell and javascript and reports the contract fields", async () => {
    const py = await run({ code: "print('hello')" });
    expect(py).toMatchObject({
      stdout: "hello\n",
      stderr: "",
      exitCode: 0,
      ok: true,
      output: "hello\n",
      backend: "namespace",
      timedOut: false,
    });
    expect(py.durationMs).toBeGreaterThan(0);
    const sh = await run({ code: "echo hi; echo oops >&2; exit 3", language: "shell" });
    expect(sh).toMatchObject({ stdout: "hi\n", stderr: "oops\n", exitCode: 3, ok: false });
    const esm = await run({
      code: "import os from 'node:os';\nconst n = await Promise.resolve(os.EOL.length);\nconsole.log('esm', n);",
      language: "javascript",
    });
    expect(esm.stdout).toBe("esm 1\n");
    const cjs = await run({ code: "const path = require('path');\nconsole.log(path.join('a', 'b'));", language: "javascript" });
    expect(cjs.stdout).toBe("a/b\n");
  });

  it("reports a python error with its traceback and source line", async () => {
    const r = await run({ code: "x = 1\n1/0\n" });
    expect(r.exitCode).toBe(1);
    expect(r.ok).toBe(false);
    expect(r.stderr).toContain('File "/run/hexr/job/main.py", line 2');
    expect(r.stderr).toContain("1/0");
    expect(r.stderr).toContain("ZeroDivisionError");
  });

  it("honours envVars and defaults to python with a 30 s timeout", async () => {
    const r = await run({ code: "import os; print(os.environ['MY_VAR'], os.environ['HOME'])", envVars: { MY_VAR: "hello" } });
    expect(r.stdout).toBe("hello /tmp\n");
  });

  it("caps output and marks the cut", async () => {
    const r = await run({ code: "import sys\nsys.stdout.write('a' * 200000)\nsys.stderr.write('b' * 10)" });
    expect(r.truncated).toEqual({ stdout: true, stderr: false });
    expect(r.stdout.startsWith("a".repeat(64 * 1024))).toBe(true);
    expect(r.stdout.slice(64 * 1024)).toBe(
      `\n[hexr: stdout truncated at ${64 * 1024} bytes, ${200000 - 64 * 1024} more bytes dropped]\n`,
    );
    expect(r.stderr).toBe("bbbbbbbbbb");
  });

  it("installs python packages from the wheel directory into the execution only", async () => {
    const r = await run({ code: "import hexrtiny\nprint(hexrtiny.VALUE, hexrtiny.hello())", packages: ["hexrtiny==1.0.0"] });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("42 hello from hexrtiny\n");
    const again = await run({ code: "import hexrtiny" });
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toContain("ModuleNotFoundError: No module named 'hexrtiny'");
  });

  it("installs npm packages for javascript (require and import)", async () => {
    const cjs = await run({
      code: "console.log(require('hexr-tiny').answer())",
      language: "javascript",
      packages: ["hexr-tiny"],
    });
    expect(cjs.stderr).toBe("");
    expect(cjs.stdout).toBe("42\n");
    const esm = await run({
      code: "import tiny from 'hexr-tiny';\nconsole.log(tiny.answer() + 1);",
      language: "javascript",
      packages: ["hexr-tiny@1.0.0"],
    });
    expect(esm.stdout).toBe("43\n");
  });

  it("names a package that cannot be had, before or during installation", async () => {
    const missing = await errorOf(run({ code: "import numpy", packages: ["numpy"] }));
    expect(missing.code).toBe("sandbox.package_unavailable");
    expect(missing.message).toContain("'numpy'");
    const dep = await errorOf(run({ code: "import needs_missing", packages: ["needs-missing"] }));
    expect(dep.code).toBe("sandbox.package_unavailable");
    expect(dep.message).toContain("'missingdep>=1'");
    const npm = await errorOf(run({ code: "1", language: "javascript", packages: ["left-pad"] }));
    expect(npm.code).toBe("sandbox.package_unavailable");
    expect(npm.message).toContain("'left-pad'");
  });

  it.each([
    [{ code: "" }, "sandbox.invalid_request"],
    [{ code: "1", language: "ruby" }, "sandbox.invalid_request"],
    [{ code: "1", timeout: 0 }, "sandbox.invalid_request"],
    [{ code: "1", timeout: 61 }, "sandbox.timeout_too_long"],
    [{ code: "1", envVars: { "1BAD": "x" } }, "sandbox.invalid_request"],
    [{ code: "1", envVars: { OK: "nul\0byte" } }, "sandbox.invalid_request"],
    [{ code: "1", packages: ["numpy; os_name=='nt'"] }, "sandbox.invalid_package"],
    [{ code: "echo", language: "shell", packages: ["jq"] }, "sandbox.packages_unsupported"],
    [{ code: "x".repeat(64 * 1024 + 1) }, "sandbox.code_too_large"],
    [{ code: "1", extra: true }, "sandbox.invalid_request"],
  ])("rejects %j with %s", async (body, code) => {
    expect((await errorOf(run(body))).code).toBe(code);
  });

  it("refuses principals without a tenant or credentials", async () => {
    expect((await errorOf(run({ code: "1" }, { principal: { kind: "anonymous" } }))).code).toBe("auth.unauthenticated");
    const system = await errorOf(
      run(
        { code: "1" },
        {
          principal: { kind: "workload", spiffeId: "spiffe://hexr.local/system/x", trustDomain: "hexr.local", via: "x509-svid" },
        },
      ),
    );
    expect(system.code).toBe("sandbox.forbidden");
  });

  it("runs each tenant's python on that tenant's own zygote (the operator's too)", async () => {
    const key = (tenant: string): ExecContext => ({ principal: { kind: "tenant-key", keyId: `k-${tenant}`, tenant } });
    const seed = async (ctx: ExecContext) => (await run({ code: "print(hash('hexr'))" }, ctx)).stdout;
    const [a1, a2, b, operator] = [
      await seed(key("acme")),
      await seed(key("acme")),
      await seed(key("globex")),
      await seed(admin),
    ];
    expect(a1).toBe(a2);
    expect(new Set([a1, b, operator]).size).toBe(3);
  });

  it("runs up to maxConcurrent at once, queues up to maxQueue, and refuses beyond", async () => {
    const slow = () => run({ code: "sleep 1; echo done", language: "shell" });
    const a = slow();
    const b = slow();
    const c = slow(); // queued
    await new Promise((r) => setTimeout(r, 50));
    expect(svc.load()).toEqual({ running: 2, queued: 1 });
    const busy = await errorOf(slow());
    expect(busy.code).toBe("sandbox.busy");
    expect(busy.kind).toBe("unavailable");
    const results = await Promise.all([a, b, c]);
    expect(results.map((r) => r.stdout)).toEqual(["done\n", "done\n", "done\n"]);
    expect(svc.load()).toEqual({ running: 0, queued: 0 });
  });

  it("kills an execution whose caller goes away, and frees its queue slot", async () => {
    const ac = new AbortController();
    const p = run({ code: "sleep 30", language: "shell" }, { ...admin, signal: ac.signal });
    setTimeout(() => ac.abort(), 200);
    expect((await errorOf(p)).code).toBe("sandbox.aborted");
    expect(svc.load()).toEqual({ running: 0, queued: 0 });
  });
});

describe("sandbox service without a working backend", () => {
  it("never runs code unsandboxed: every execution fails and says to run the doctor", async () => {
    const svc = new SandboxService({
      backends: [
        new NamespaceBackend({
          limits: { memoryBytes: 64 * MiB, pids: 32, cpus: 1, tmpfsBytes: 8 * MiB, maxOutputBytes: 1024 },
          bwrapPath: "/nonexistent/bwrap",
        }),
      ],
      limits: { maxConcurrent: 1, maxQueue: 0, maxTimeoutSeconds: 60, maxCodeBytes: 1024, installTimeoutSeconds: 10 },
    });
    const [h] = await svc.start();
    expect(h).toMatchObject({ backend: "namespace", available: false });
    expect(svc.status()).toMatchObject({ enabled: false, backend: null });
    expect(svc.status().reason).toContain("hexr sandbox doctor");
    const err = await errorOf(svc.execute({ code: "print(1)" }, admin));
    expect(err.code).toBe("sandbox.unavailable");
    expect(err.message).toContain("bubblewrap is not installed");
    expect(err.message).toContain("hexr sandbox doctor");
    await svc.stop();
  });

  it("is off when disabled by configuration", async () => {
    const svc = new SandboxService({
      backends: [],
      enabled: false,
      limits: { maxConcurrent: 1, maxQueue: 0, maxTimeoutSeconds: 60, maxCodeBytes: 1024, installTimeoutSeconds: 10 },
    });
    await svc.start();
    expect(svc.status()).toMatchObject({ enabled: false, backend: null });
    expect((await errorOf(svc.execute({ code: "1" }, admin))).code).toBe("sandbox.disabled");
  });
});

describe("sandbox service on a backend that installs no packages", () => {
  /** A real namespace backend that declares that it installs nothing (a backend may; both of Hexr's install). */
  class NoPackagesBackend extends NamespaceBackend {
    override readonly installsPackages = false;
  }

  it("refuses an execution with packages before resolving or fetching any, and runs the others", async () => {
    const emptyDir = worldReadableTempDir("hexr-no-wheels-");
    const svc = new SandboxService({
      backends: [
        new NoPackagesBackend({
          limits: { memoryBytes: 64 * MiB, pids: 32, cpus: 1, tmpfsBytes: 8 * MiB, maxOutputBytes: 1024 },
          warmPool: 0,
        }),
      ],
      limits: { maxConcurrent: 1, maxQueue: 0, maxTimeoutSeconds: 60, maxCodeBytes: 1024, installTimeoutSeconds: 10 },
      // Resolving against this empty directory would fail with package_unavailable: the refusal comes first.
      packages: { pythonDir: emptyDir },
    });
    try {
      const [h] = await svc.start();
      expect(h?.available, h?.summary).toBe(true);
      const err = await errorOf(svc.execute({ code: "import numpy", packages: ["numpy"] }, admin));
      expect(err).toMatchObject({ code: "sandbox.packages_unsupported", kind: "failed_precondition" });
      expect(err.message).toContain("on a backend that can");
      expect((await svc.execute({ code: "print(1)" }, admin)).result.stdout).toBe("1\n");
    } finally {
      await svc.stop();
      rmSync(emptyDir, { recursive: true, force: true });
    }
  });

  it("keeps running when the sandbox user cannot reach a package directory; executions from it say why", async () => {
    // A wheel directory below a 0700 directory (as under /root): bubblewrap cannot bind it as uid 65534.
    const parent = worldReadableTempDir("hexr-locked-parent-");
    const locked = join(parent, "private");
    const wheels = join(locked, "wheels");
    mkdirSync(wheels, { recursive: true, mode: 0o755 });
    chmodSync(locked, 0o700);
    buildWheel(wheels, { name: "hexrtiny", module: "VALUE = 42\n" });
    const svc = new SandboxService({
      backends: [
        new NamespaceBackend({
          limits: { memoryBytes: 64 * MiB, pids: 32, cpus: 1, tmpfsBytes: 8 * MiB, maxOutputBytes: 1024 },
          warmPool: 0,
          packageDirs: { python: wheels },
        }),
      ],
      limits: { maxConcurrent: 1, maxQueue: 0, maxTimeoutSeconds: 60, maxCodeBytes: 1024, installTimeoutSeconds: 30 },
      packages: { pythonDir: wheels },
      languagesOf: (b) => (b as NamespaceBackend).languages(),
    });
    try {
      const [h] = await svc.start();
      expect(h?.available, h?.summary).toBe(true);
      expect((await svc.execute({ code: "print(1)" }, admin)).result.stdout).toBe("1\n");
      const asked = svc.execute({ code: "import hexrtiny; print(hexrtiny.VALUE)", packages: ["hexrtiny"] }, admin);
      if (process.getuid?.() === 0) {
        const err = await errorOf(asked);
        expect(err).toMatchObject({ code: "sandbox.package_install_failed", kind: "failed_precondition" });
        expect(err.message).toContain(
          `the python package directory ${wheels} cannot be read by uid 65534 (blocked at ${locked})`,
        );
      } else {
        // Not root: sandboxes run as this user, the directory's owner, who can read it.
        expect((await asked).result.stdout).toBe("42\n");
      }
    } finally {
      await svc.stop();
      rmSync(parent, { recursive: true, force: true });
    }
  });
});
