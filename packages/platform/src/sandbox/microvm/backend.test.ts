import { isHexrError } from "@hexr/core";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureMicrovmImage, TEST_MICROVM_IMAGE } from "../test-support/backends.js";
import {
  buildSamplePackages,
  buildWheel,
  startNpmRegistry,
  startSimpleIndex,
  worldReadableTempDir,
  type TestIndex,
} from "../test-support/packages.js";
import { PackageFetcher } from "../package-fetch.js";
import { resolvePackages } from "../packages.js";
import type { BackendExecRequest, PackageInstall } from "../types.js";
import { jobMode } from "../job-mode.js";
import { MicrovmBackend } from "./backend.js";
import { isEsModule } from "./javascript-format.js";

const MiB = 1024 * 1024;
const limits = { memoryBytes: 96 * MiB, pids: 32, cpus: 1, tmpfsBytes: 8 * MiB, maxOutputBytes: 4096 };
const req = (code: string, more: Partial<BackendExecRequest> = {}): BackendExecRequest => ({
  id: "t",
  code,
  language: "python",
  timeoutMs: 30_000,
  installTimeoutMs: 0,
  env: {},
  ...more,
});

async function errorCode(p: Promise<unknown>): Promise<string> {
  return (await errorOf(p)).code;
}

async function errorOf(p: Promise<unknown>): Promise<{ code: string; message: string; details: unknown }> {
  try {
    await p;
  } catch (err) {
    if (isHexrError(err)) return { code: err.code, message: err.message, details: err.details };
    throw err;
  }
  return { code: "no error", message: "", details: undefined };
}

it("tells ES modules from CommonJS as node's --experimental-detect-module does", () => {
  for (const esm of [
    "import os from 'node:os';\nconsole.log(os.EOL)",
    "export const x = 1;",
    "console.log(import.meta.url)",
    "const n = await Promise.resolve(1);\nconsole.log(n)",
    "const require = 1;\nawait 0;",
  ]) {
    expect(isEsModule(esm), esm).toBe(true);
  }
  for (const cjs of [
    "console.log(require('path').join('a', 'b'))",
    "module.exports = 1",
    "const x = import('node:os');",
    "console.log('a'", // a syntax error either way: node reports it as CommonJS
    "async function f() { await 1 }",
  ]) {
    expect(isEsModule(cjs), cjs).toBe(false);
  }
});

it("runs python in the pre-started interpreter unless the environment changes how python starts", () => {
  expect(jobMode("python", {})).toBe("run");
  expect(jobMode("python", { MY_VAR: "x", PATH: "/bin", TMPDIR: "/tmp/x" })).toBe("run");
  for (const k of [
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "LANG",
    "LC_ALL",
    "TZ",
    "HOME",
    "LD_PRELOAD",
    "GLIBC_TUNABLES",
    "MALLOC_ARENA_MAX",
  ]) {
    expect(jobMode("python", { [k]: "x" }), k).toBe("exec");
  }
  expect(jobMode("shell", {})).toBe("exec");
});

it("without an image, the microvm backend is unavailable and says to run the setup", async () => {
  const empty = mkdtempSync(join(tmpdir(), "hexr-no-image-"));
  const b = new MicrovmBackend({ imageDir: empty, limits });
  const h = await b.start();
  await b.stop();
  rmSync(empty, { recursive: true, force: true });
  expect(h.available).toBe(false);
  expect(h.summary).toContain("hexr sandbox setup");
  expect(h.checks.find((c) => c.name === "image")).toMatchObject({ ok: false });
  expect(await errorCode(b.exec(req("print(1)")))).toBe("sandbox.backend_unavailable");
});

describe("microvm backend on this machine", () => {
  const b = new MicrovmBackend({ imageDir: TEST_MICROVM_IMAGE, limits, poolSize: 1 });
  beforeAll(async () => {
    await ensureMicrovmImage(); // builds it the way `hexr sandbox setup` does when missing
    const h = await b.start();
    expect(h.available, h.summary).toBe(true);
  }, 900_000);
  afterAll(async () => {
    await b.stop();
  });

  it("gives every clone fresh randomness and the host's time, though all come from one snapshot", async () => {
    const code = "import os, time, json\nprint(json.dumps([os.urandom(16).hex(), time.time()]))";
    const [a, c] = await Promise.all([b.exec(req(code)), b.exec(req(code))]);
    const [ra, ta] = JSON.parse(a.stdout) as [string, number];
    const [rc, tc] = JSON.parse(c.stdout) as [string, number];
    expect(ra).not.toBe(rc);
    for (const t of [ta, tc]) expect(Math.abs(t * 1000 - Date.now())).toBeLessThan(60_000);
  });

  it("passes exit codes, stderr and the environment through", async () => {
    const r = await b.exec(
      req("echo out; echo err >&2; echo $GREETING; exit 9", { language: "shell", env: { GREETING: "hello vm" } }),
    );
    expect(r).toMatchObject({ stdout: "out\nhello vm\n", stderr: "err\n", exitCode: 9, timedOut: false, oomKilled: false });
  });

  it("caps output in the guest and says how much was dropped", async () => {
    const r = await b.exec(req("import sys\nsys.stdout.write('z' * 10000)"));
    expect(r.truncated.stdout).toBe(true);
    expect(r.stdout).toBe("z".repeat(4096) + "\n[hexr: stdout truncated at 4096 bytes, 5904 more bytes dropped]\n");
  });

  it("gives every execution its own clone: files, randomness, boot id and hash seed are not shared", async () => {
    const code = [
      "import os, json",
      "seen = os.path.exists('/tmp/mark')",
      "open('/tmp/mark', 'w').write('x')",
      "boot = open('/proc/sys/kernel/random/boot_id').read().strip()",
      "print(json.dumps([seen, boot, os.urandom(16).hex(), hash('abc')]))",
    ].join("\n");
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(JSON.parse((await b.exec(req(code))).stdout) as [boolean, string, string, number]);
    expect(runs.map((r) => r[0])).toEqual([false, false, false]);
    for (const k of [1, 2, 3]) expect(new Set(runs.map((r) => r[k])).size, `field ${k}`).toBe(3);
  });

  it("leaves nothing of the clone's warm-up where the job can see it", async () => {
    const code = [
      "import os, json",
      "print(json.dumps({d: sorted(os.listdir(d)) for d in ['/tmp', '/dev/shm', '/run/hexr/job']}))",
      "print(json.dumps(sorted(e.name for e in os.scandir('/hexr/cgroup') if e.is_dir())))",
      "print(json.dumps(sorted(p for p in os.listdir('/proc') if p.isdigit() and p != str(os.getpid()))))",
    ].join("\n");
    const r = await b.exec(req(code));
    const [dirs, cgroups, others] = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as unknown);
    expect(dirs).toEqual({ "/tmp": [], "/dev/shm": [], "/run/hexr/job": ["main.py"] });
    expect(cgroups).toEqual(["job"]);
    expect(others).toEqual([]); // hidepid=2: not even the agent; no warm-up process is left to hide
    const sh = await b.exec(req("ls -A /tmp /dev/shm /run/hexr/job", { language: "shell" }));
    expect(sh.stdout).toBe("/dev/shm:\n\n/run/hexr/job:\nmain.sh\n\n/tmp:\n");
  });

  it("runs python code as the __main__ script, with the interpreter's own error reporting", async () => {
    const ok = await b.exec(
      req(
        [
          "import os, sys, subprocess",
          "print(__name__, __file__, sys.argv, sorted(k for k in globals() if not k.startswith('__')))",
          "print(os.environ['GREETING'], subprocess.run(['/bin/sh', '-c', 'echo $GREETING'], capture_output=True, text=True).stdout.strip())",
          "print(sys.path[0], sys.flags.dont_write_bytecode, sys.stdout.line_buffering or sys.stdout.write_through)",
        ].join("\n"),
        { env: { GREETING: "hi vm" } },
      ),
    );
    expect(ok.stdout).toBe(
      "__main__ /run/hexr/job/main.py ['/run/hexr/job/main.py'] ['os', 'subprocess', 'sys']\nhi vm hi vm\n/run/hexr/job 1 True\n",
    );
    const boom = await b.exec(req("def f():\n    return 1 / 0\n\nf()\n"));
    expect(boom.exitCode).toBe(1);
    expect(boom.stderr).toBe(
      [
        "Traceback (most recent call last):",
        '  File "/run/hexr/job/main.py", line 4, in <module>',
        "    f()",
        '  File "/run/hexr/job/main.py", line 2, in f',
        "    return 1 / 0",
        "           ~~^~~",
        "ZeroDivisionError: division by zero",
        "",
      ].join("\n"),
    );
    const syntax = await b.exec(req("print('a'\n"));
    expect(syntax.exitCode).toBe(1);
    expect(syntax.stderr).toContain('File "/run/hexr/job/main.py", line 1');
    expect(syntax.stderr).toContain("SyntaxError: '(' was never closed");
    expect((await b.exec(req("import sys\nprint('bye')\nsys.exit(3)"))).exitCode).toBe(3);
    expect((await b.exec(req("raise SystemExit('no')"))).stderr).toBe("no\n");
  });

  it("starts a new interpreter when the environment sets how python starts", async () => {
    const code = "import sys\nprint(hash('abc'), sys.flags.hash_randomization)";
    const env = { PYTHONHASHSEED: "0" };
    const [a, c] = [await b.exec(req(code, { env })), await b.exec(req(code, { env }))];
    expect(a.stdout).toBe(c.stdout);
    expect(a.stdout).toMatch(/^-?\d+ 0\n$/);
  });

  it("runs jobs without ASLR under TCG (so the warm-up's translations are reused), with it under KVM", async () => {
    const r = await b.exec(req("cat /proc/sys/kernel/randomize_va_space", { language: "shell" }));
    expect(r.stdout).toBe(b.image()!.accel === "tcg" ? "0\n" : "2\n");
  });

  it("runs javascript with node as the script main.js, as node reports it", async () => {
    const js = (code: string, more: Partial<BackendExecRequest> = {}) => b.exec(req(code, { language: "javascript", ...more }));
    const hi = await js(
      "console.log('hi'); console.error('err');\nconsole.log(process.argv.slice(1), process.getuid(), process.env.GREETING)",
      {
        env: { GREETING: "hello vm" },
      },
    );
    expect(hi).toMatchObject({
      stdout: "hi\n[ '/run/hexr/job/main.js' ] 65534 hello vm\n",
      stderr: "err\n",
      exitCode: 0,
      timedOut: false,
    });
    const esm = await js(
      "import os from 'node:os';\nconst n = await Promise.resolve(os.EOL.length);\nconsole.log('esm', n, import.meta.url);",
    );
    expect(esm.stderr).toBe("");
    expect(esm.stdout).toBe("esm 1 file:///run/hexr/job/main.js\n");
    const cjs = await js(
      "const path = require('path');\nconsole.log(path.join('a', 'b'), __filename, typeof module, Object.keys(require.cache));",
    );
    expect(cjs.stdout).toBe("a/b /run/hexr/job/main.js object [ '/run/hexr/job/main.js' ]\n");

    const boom = await js("function f() {\n  throw new Error('boom');\n}\nf();\n");
    expect(boom.exitCode).toBe(1);
    expect(boom.stdout).toBe("");
    expect(boom.stderr.split("\n").slice(0, 6)).toEqual([
      "/run/hexr/job/main.js:2",
      "  throw new Error('boom');",
      "  ^",
      "",
      "Error: boom",
      "    at f (/run/hexr/job/main.js:2:9)",
    ]);
    expect(boom.stderr).toMatch(/\n\nNode\.js v18\.\d+\.\d+\n$/);
    // Node started ahead reports exactly as a node started for the job (TZ is read at startup: it gets a new node).
    const fresh = await js("function f() {\n  throw new Error('boom');\n}\nf();\n", { env: { TZ: "UTC" } });
    expect(fresh).toMatchObject({ stdout: boom.stdout, stderr: boom.stderr, exitCode: boom.exitCode });
    const exit = await js("console.log('bye');\nprocess.exit(3);\nconsole.log('never');");
    expect(exit).toMatchObject({ stdout: "bye\n", stderr: "", exitCode: 3 });
    const syntax = await js("console.log('a'\n");
    expect(syntax.exitCode).toBe(1);
    expect(syntax.stderr).toContain("/run/hexr/job/main.js:1");
    expect(syntax.stderr).toContain("SyntaxError: missing ) after argument list");
    const killed = await js("process.kill(process.pid, 'SIGKILL');");
    expect(killed.exitCode).toBe(137);
  });

  it("gives javascript the same fresh, confined clone", async () => {
    const r = await b.exec(
      req(
        [
          "const fs = require('fs');",
          "console.log(JSON.stringify({ tmp: fs.readdirSync('/tmp'), job: fs.readdirSync('/run/hexr/job').sort() }));",
          "try { fs.writeFileSync('/etc/x', 'x'); } catch (e) { console.log(e.code); }",
          "console.log(require('os').networkInterfaces().lo ? Object.keys(require('os').networkInterfaces()).join(',') : 'none');",
          // hidepid=2: only its own processes; the python stub started beside node is gone.
          "console.log(fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p) && p !== String(process.pid)).length);",
        ].join("\n"),
        { language: "javascript" },
      ),
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe('{"tmp":[],"job":["main.js","node_modules"]}\nEACCES\nlo\n0\n');
    // A python job in a clone that also started node ahead: node is gone before the code runs.
    const py = await b.exec(req("import os\nprint([p for p in os.listdir('/proc') if p.isdigit() and p != str(os.getpid())])"));
    expect(py.stdout).toBe("[]\n");
    // Variables node reads at startup get a node started for them.
    const opts = await b.exec(
      req(
        "console.log(Math.round(require('v8').getHeapStatistics().heap_size_limit / 1048576) >= 123 && Math.round(require('v8').getHeapStatistics().heap_size_limit / 1048576) < 160, process.execArgv.length)",
        {
          language: "javascript",
          env: { NODE_OPTIONS: "--max-old-space-size=123" },
        },
      ),
    );
    expect(opts.stdout).toBe("true 0\n");
  });

  it("destroys the VM of a cancelled execution", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 1500);
    expect(await errorCode(b.exec(req("import time\ntime.sleep(60)", { signal: ac.signal })))).toBe("sandbox.aborted");
    const after = await b.exec(req("print('next')"));
    expect(after.stdout).toBe("next\n");
  });
});

describe("microvm backend packages", () => {
  const pyDir = worldReadableTempDir("hexr-mv-wheels-");
  const npmDir = worldReadableTempDir("hexr-mv-npm-");
  const cacheDir = worldReadableTempDir("hexr-mv-cache-");
  const b = new MicrovmBackend({ imageDir: TEST_MICROVM_IMAGE, limits, poolSize: 1 });
  let pyIndex: TestIndex;
  let npmReg: TestIndex;
  let fetcher: PackageFetcher;
  const local = (language: "python" | "javascript", specs: string[]): PackageInstall =>
    resolvePackages(language, specs, { pythonDir: pyDir, npmDir })!;

  beforeAll(async () => {
    buildSamplePackages(pyDir, npmDir);
    // An older version the resolver must not pick for hexr-math>=1.
    buildWheel(pyDir, { name: "hexr-math", version: "0.5.0", module: "def double(x):\n    return 0\n" });
    buildWheel(pyDir, { name: "needs-missing", module: "", requires: ["missingdep>=1"] });
    pyIndex = await startSimpleIndex(readdirSync(pyDir).map((f) => join(pyDir, f)));
    npmReg = await startNpmRegistry(readdirSync(npmDir).map((f) => join(npmDir, f)));
    fetcher = new PackageFetcher({
      python: { url: `${pyIndex.origin}/simple/` },
      npm: { url: npmReg.origin },
      cacheDir,
    });
    await ensureMicrovmImage();
    const h = await b.start();
    expect(h.available, h.summary).toBe(true);
  }, 900_000);
  afterAll(async () => {
    await b.stop();
    await fetcher?.stop();
    await Promise.all([pyIndex?.close(), npmReg?.close()]);
    for (const d of [pyDir, npmDir, cacheDir]) rmSync(d, { recursive: true, force: true });
  });

  it("installs wheels from the local directory as pip resolves them, into that execution only", async () => {
    const code = "import hexr_stats, hexr_math, sys\nprint(hexr_stats.mean2([1, 2, 3]), hexr_math.__file__, sys.path[1])";
    const r = await b.exec(req(code, { install: local("python", ["hexr-stats==2.0.0"]), installTimeoutMs: 60_000 }));
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("4.0 /tmp/.hexr/python/hexr_math/__init__.py /tmp/.hexr/python\n");
    expect(r.exitCode).toBe(0);
    const next = await b.exec(req("import hexr_stats"));
    expect(next.exitCode).toBe(1);
    expect(next.stderr).toContain("ModuleNotFoundError: No module named 'hexr_stats'");
    // The user's own PYTHONPATH comes after the packages, and the code still runs as main.py.
    const env = await b.exec(
      req("import os, hexr_math\nprint(os.environ['PYTHONPATH'], __file__)", {
        install: local("python", ["hexr-math"]),
        installTimeoutMs: 60_000,
        env: { PYTHONPATH: "/tmp/mine" },
      }),
    );
    expect(env.stdout).toBe("/tmp/.hexr/python:/tmp/mine /run/hexr/job/main.py\n");
  });

  it("installs wheels fetched from a package index", async () => {
    const install = await fetcher.fetch({ id: "mv-py-1", language: "python", specs: ["hexr-stats"], timeoutMs: 60_000 });
    const r = await b.exec(req("import hexr_stats\nprint(hexr_stats.mean2([2, 4]))", { install, installTimeoutMs: 60_000 }));
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("6.0\n");
    expect(existsSync(install.sourceDir)).toBe(false); // taken over and removed
  });

  it("names a package that cannot be had", async () => {
    const dep = await errorOf(
      b.exec(req("import needs_missing", { install: local("python", ["needs-missing"]), installTimeoutMs: 60_000 })),
    );
    expect(dep.code).toBe("sandbox.package_unavailable");
    expect(dep.message).toContain("'missingdep>=1'");
    expect(dep.details).toEqual({ package: "missingdep" });
    // An npm tarball whose dependency was not requested (an offline npm install fails the same way).
    const npm = await errorOf(
      b.exec(req("require('@hexr/shout')", { language: "javascript", install: local("javascript", ["@hexr/shout"]) })),
    );
    expect(npm.code).toBe("sandbox.package_unavailable");
    expect(npm.details).toEqual({ package: "hexr-greet" });
  });

  it("installs npm packages from the local directory and from a registry, for require and import", async () => {
    const cjs = await b.exec(
      req("console.log(require('@hexr/shout')('you'))", {
        language: "javascript",
        install: local("javascript", ["@hexr/shout", "hexr-greet"]),
        installTimeoutMs: 60_000,
      }),
    );
    expect(cjs.stderr).toBe("");
    expect(cjs.stdout).toBe("HI YOU\n");
    const install = await fetcher.fetch({
      id: "mv-js-1",
      language: "javascript",
      specs: ["@hexr/shout@1.0.0"],
      timeoutMs: 60_000,
    });
    const esm = await b.exec(
      req("import shout from '@hexr/shout';\nimport greet from 'hexr-greet';\nconsole.log(shout('a'), greet('b'));", {
        language: "javascript",
        install,
        installTimeoutMs: 60_000,
      }),
    );
    expect(esm.stderr).toBe("");
    expect(esm.stdout).toBe("HI A hi b\n");
    const next = await b.exec(req("require('hexr-greet')", { language: "javascript" }));
    expect(next.exitCode).toBe(1);
    expect(next.stderr).toContain("Cannot find module 'hexr-greet'");
  });

  it("refuses packages larger than the execution's /tmp, and an install past its timeout", async () => {
    const big = worldReadableTempDir("hexr-mv-big-");
    try {
      // Random bytes do not compress: the wheel stays larger than the 8 MiB /tmp.
      execFileSync("/usr/bin/python3", [
        "-c",
        "import os, sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n    z.writestr('hexr_big/blob.bin', os.urandom(9 << 20))\n    z.writestr('hexr_big-1.0.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: hexr-big\\nVersion: 1.0.0\\n')\n    z.writestr('hexr_big-1.0.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n    z.writestr('hexr_big-1.0.0.dist-info/RECORD', '')\n",
        join(big, "hexr_big-1.0.0-py3-none-any.whl"),
      ]);
      const install = resolvePackages("python", ["hexr-big"], { pythonDir: big })!;
      const e = await errorOf(b.exec(req("import hexr_big", { install, installTimeoutMs: 60_000 })));
      expect(e.code).toBe("sandbox.packages_too_large");
    } finally {
      rmSync(big, { recursive: true, force: true });
    }
    // Not resolved before (no answer to reuse): pip cannot resolve within 1 ms.
    const slow = await errorCode(
      b.exec(req("import hexr_math", { install: local("python", ["hexr-math>=0.1"]), installTimeoutMs: 1 })),
    );
    expect(slow).toBe("sandbox.package_install_timeout");
  });
});
