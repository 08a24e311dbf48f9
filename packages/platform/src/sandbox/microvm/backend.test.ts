import { isHexrError } from "@hexr/core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureMicrovmImage, TEST_MICROVM_IMAGE } from "../test-support/backends.js";
import type { BackendExecRequest } from "../types.js";
import { jobMode } from "../job-mode.js";
import { MicrovmBackend } from "./backend.js";

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
  try {
    await p;
  } catch (err) {
    if (isHexrError(err)) return err.code;
    throw err;
  }
  return "no error";
}

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

  it("refuses what it cannot do: javascript and packages", async () => {
    expect(await errorCode(b.exec(req("console.log(1)", { language: "javascript" })))).toBe("sandbox.language_unavailable");
    expect(
      await errorCode(b.exec(req("import x", { install: { language: "python", sourceDir: "/nonexistent", items: ["x"] } }))),
    ).toBe("sandbox.packages_unsupported");
  });

  it("destroys the VM of a cancelled execution", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 1500);
    expect(await errorCode(b.exec(req("import time\ntime.sleep(60)", { signal: ac.signal })))).toBe("sandbox.aborted");
    const after = await b.exec(req("print('next')"));
    expect(after.stdout).toBe("next\n");
  });
});
