import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildWheel, worldReadableTempDir } from "../test-support/packages.js";
import type { BackendExecRequest } from "../types.js";
import { NamespaceBackend } from "./backend.js";

const MiB = 1024 * 1024;
let seq = 0;

function request(over: Partial<BackendExecRequest>): BackendExecRequest {
  return {
    id: `t${++seq}`,
    code: "",
    language: "python",
    timeoutMs: 30_000,
    installTimeoutMs: 60_000,
    env: {},
    ...over,
  };
}

describe("namespace backend: packages fetched for one execution", () => {
  const backend = new NamespaceBackend({
    limits: { memoryBytes: 256 * MiB, pids: 128, cpus: 1, tmpfsBytes: 64 * MiB, maxOutputBytes: 64 * 1024 },
    warmPool: 1,
  });

  beforeAll(async () => {
    const health = await backend.start();
    expect(health.available, health.summary).toBe(true);
  });
  afterAll(() => backend.stop());

  it("installs python wheels from the execution's own directory, then removes it", async () => {
    const dir = worldReadableTempDir("hexr-fetched-py-");
    buildWheel(dir, { name: "fetchedone", module: "from fetchedtwo import TWO\nONE = 1 + TWO\n", requires: ["fetchedtwo"] });
    buildWheel(dir, { name: "fetchedtwo", module: "TWO = 2\n" });
    const r = await backend.exec(
      request({
        code: "import fetchedone\nprint(fetchedone.ONE)",
        install: { language: "python", sourceDir: dir, items: ["fetchedone"], origin: "fetched" },
      }),
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("3\n");
    expect(existsSync(dir)).toBe(false);
  });

  it("gives javascript a fetched node_modules tree in its private /tmp", async () => {
    const dir = worldReadableTempDir("hexr-fetched-js-");
    const pkg = join(dir, "node_modules", "fetched-js");
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "fetched-js", version: "1.0.0", main: "index.js" }));
    writeFileSync(join(pkg, "index.js"), "module.exports = (x) => `fetched ${x}`;\n");
    const r = await backend.exec(
      request({
        language: "javascript",
        code: "const f = require('fetched-js');\nconsole.log(f('ok'), require.resolve('fetched-js'));",
        install: { language: "javascript", sourceDir: dir, items: ["fetched-js"], origin: "fetched" },
      }),
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("fetched ok /tmp/.hexr/node/node_modules/fetched-js/index.js\n");
    expect(existsSync(dir)).toBe(false);
  });

  it("reports a fetched directory that lacks the requested package as an install failure", async () => {
    const dir = worldReadableTempDir("hexr-fetched-empty-");
    await expect(
      backend.exec(
        request({
          code: "print(1)",
          install: { language: "python", sourceDir: dir, items: ["notfetched"], origin: "fetched" },
        }),
      ),
    ).rejects.toMatchObject({ code: "sandbox.package_unavailable", details: { package: "notfetched" } });
    expect(existsSync(dir)).toBe(false);
  });
});

describe("namespace backend: python run by an interpreter started ahead", () => {
  // The stub of a new interpreter per execution (python forked from a zygote: ./zygote.test.ts).
  const backend = new NamespaceBackend({
    limits: { memoryBytes: 256 * MiB, pids: 128, cpus: 1, tmpfsBytes: 64 * MiB, maxOutputBytes: 64 * 1024 },
    warmPool: 1,
    forkServer: false,
  });
  const py = (code: string, env: Record<string, string> = {}) => backend.exec(request({ code, env }));
  /** A variable python reads at startup sends the job to a new interpreter: the plain `python3 main.py` to compare with. */
  const fresh = (code: string) => py(code, { PYTHONNOUSERSITE: "1" });

  beforeAll(async () => {
    const health = await backend.start();
    expect(health.available, health.summary).toBe(true);
  });
  afterAll(() => backend.stop());

  it("serves python from an interpreter that was waiting in the stub (the one difference: a frame below the module)", async () => {
    const code = "import sys\nprint(sys._getframe().f_back is not None)";
    expect((await py(code)).stdout).toBe("True\n");
    expect((await fresh(code)).stdout).toBe("False\n");
  });

  it("runs the code as the __main__ script, as python3 main.py does", async () => {
    const code =
      "import json, sys\nprint(json.dumps([__name__, __file__, sys.argv, sys.path[0], sorted(k for k in globals() if not k.startswith('__'))]))";
    const [warm, cold] = [await py(code), await fresh(code)];
    expect(JSON.parse(warm.stdout)).toEqual([
      "__main__",
      "/run/hexr/job/main.py",
      ["/run/hexr/job/main.py"],
      "/run/hexr/job",
      ["json", "sys"],
    ]);
    expect(warm.stdout).toBe(cold.stdout);
  });

  it("reports uncaught exceptions, syntax errors and exit codes exactly as a new interpreter does", async () => {
    for (const code of [
      "x = 1\n\ndef f():\n    return 1 / 0\n\nf()\n",
      "print('a')\nif True\n  pass\n",
      "import sys\nsys.exit(3)",
      "raise SystemExit('bye')",
    ]) {
      const [warm, cold] = [await py(code), await fresh(code)];
      expect({ stdout: warm.stdout, stderr: warm.stderr, exitCode: warm.exitCode }, code).toEqual({
        stdout: cold.stdout,
        stderr: cold.stderr,
        exitCode: cold.exitCode,
      });
      expect(warm.stderr).not.toContain("_hexr");
    }
  });

  it("gives the code the execution's variables, and its subprocesses too", async () => {
    const r = await py("import os, subprocess\nprint(os.environ['MY_VAR'])\nsubprocess.run(['/bin/sh', '-c', 'echo $MY_VAR'])", {
      MY_VAR: "it's = here",
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("it's = here\nit's = here\n");
  });

  it("gives every execution an interpreter of its own (hash seed), and honours startup variables with a new one", async () => {
    const code = "print(hash('hexr'))";
    const seeds = new Set([(await py(code)).stdout, (await py(code)).stdout, (await py(code)).stdout]);
    expect(seeds.size).toBe(3);
    const fixed = [(await py(code, { PYTHONHASHSEED: "0" })).stdout, (await py(code, { PYTHONHASHSEED: "0" })).stdout];
    expect(fixed[0]).toBe(fixed[1]);
  });
});

describe("namespace backend: rlimits", () => {
  const limits = { memoryBytes: 256 * MiB, pids: 48, cpus: 1, tmpfsBytes: 32 * MiB, maxOutputBytes: 64 * 1024 };
  const backend = new NamespaceBackend({ limits, warmPool: 1 });
  /** Soft and hard limits as the kernel reports them, by name. */
  const parse = (text: string) =>
    Object.fromEntries(
      text
        .split("\n")
        .slice(1)
        .filter(Boolean)
        .map((l) => {
          const m = /^(.+?)\s{2,}(\S+)\s+(\S+)/.exec(l)!;
          return [m[1]!, [m[2]!, m[3]!]];
        }),
    );
  const expected = {
    "Max cpu time": ["7200", "7200"],
    "Max file size": [String(limits.tmpfsBytes + MiB), String(limits.tmpfsBytes + MiB)],
    "Max core file size": ["0", "0"],
    "Max processes": ["48", "48"],
    "Max open files": ["1024", "1024"],
  };

  beforeAll(async () => {
    const health = await backend.start();
    expect(health.available, health.summary).toBe(true);
  });
  afterAll(() => backend.stop());

  it("holds for the code of every kind of sandbox, and for what it starts", async () => {
    const runs = [
      // the interpreter started ahead, a new interpreter (startup variable), a shell and a child of python
      request({ code: "print(open('/proc/self/limits').read(), end='')" }),
      request({ code: "print(open('/proc/self/limits').read(), end='')", env: { PYTHONNOUSERSITE: "1" } }),
      request({ language: "shell", code: "cat /proc/self/limits" }),
      request({ code: "import subprocess\nsubprocess.run(['cat', '/proc/self/limits'])" }),
    ];
    for (const req of runs) {
      const r = await backend.exec(req);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(parse(r.stdout), req.code).toMatchObject(expected);
    }
  });

  it("counts processes per sandbox: a sandbox at its limit does not stop another", async () => {
    const hog = backend.exec(
      request({
        code: [
          "import os, time",
          "n = 0",
          "for _ in range(80):",
          "    try:",
          "        pid = os.fork()",
          "    except OSError:",
          "        break",
          "    if pid == 0:",
          "        time.sleep(3)",
          "        os._exit(0)",
          "    n += 1",
          "print(n, flush=True)",
          "time.sleep(2)",
        ].join("\n"),
        timeoutMs: 20_000,
      }),
    );
    await new Promise((r) => setTimeout(r, 1000));
    const other = await backend.exec(request({ code: "print('fine')" }));
    expect(other.stdout).toBe("fine\n");
    const r = await hog;
    const forked = Number(r.stdout);
    expect(forked).toBeGreaterThan(30);
    expect(forked).toBeLessThan(48);
  });
});

describe("namespace backend: CPU weight of warm sandboxes", () => {
  const backend = new NamespaceBackend({
    limits: { memoryBytes: 256 * MiB, pids: 64, cpus: 1, tmpfsBytes: 32 * MiB, maxOutputBytes: 64 * 1024 },
    warmPool: 1,
  });
  /** Whether a cgroup holds a zygote of the fork server (its own cgroup, not a sandbox's). */
  const zygotes = (dir: string) =>
    readFileSync(join(dir, "cgroup.procs"), "utf8")
      .split("\n")
      .filter(Boolean)
      .some((pid) => {
        try {
          return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "hexr-zygote";
        } catch {
          return false; // gone meanwhile
        }
      });
  /** CPU weights of this backend's live sandbox cgroups. */
  const weights = () => {
    const info = backend.cgroupInfo()!;
    const [parent, file] = info.version === "v1" ? [info.parents[2]!, "cpu.shares"] : [info.parents[0]!, "cpu.weight"];
    const out: string[] = [];
    for (const e of readdirSync(parent, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      try {
        if (!zygotes(join(parent, e.name))) out.push(readFileSync(join(parent, e.name, file), "utf8").trim());
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err; // a sandbox's cgroup removed meanwhile
      }
    }
    return out.sort();
  };
  const settled = async (want: string[]) => {
    for (let i = 0; i < 200 && JSON.stringify(weights()) !== JSON.stringify(want); i++)
      await new Promise((r) => setTimeout(r, 25));
    return weights();
  };

  beforeAll(async () => {
    const health = await backend.start();
    expect(health.available, health.summary).toBe(true);
  });
  afterAll(() => backend.stop());

  it("sets warm sandboxes up at the lowest weight and gives an execution's sandbox the default", async () => {
    const [low, normal] = backend.cgroupInfo()!.version === "v1" ? ["2", "1024"] : ["1", "100"];
    await backend.exec(request({ language: "shell", code: "true" })); // the shell kind is kept warm from now on
    expect(await settled([low])).toEqual([low]);
    const running = backend.exec(request({ language: "shell", code: "sleep 1" }));
    // The warm one was taken (default weight now) and its successor is being set up in the background.
    expect(await settled([normal, low].sort())).toEqual([normal, low].sort());
    expect((await running).exitCode).toBe(0);
    expect(await settled([low])).toEqual([low]);
  });
});

describe("namespace backend: stopped while sandboxes are being set up", () => {
  /** bwrap processes of uid 65534 on this host (ours or leftovers), by pid. */
  const bwraps = () =>
    readdirSync("/proc")
      .filter((d) => /^\d+$/.test(d))
      .filter((pid) => {
        try {
          return (
            readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("/usr/bin/bwrap\0--args\x003") &&
            /^Uid:\s+65534\b/m.test(readFileSync(`/proc/${pid}/status`, "utf8"))
          );
        } catch {
          return false; // gone meanwhile
        }
      });

  it("leaves no sandbox process behind, even one killed before bwrap reported it", async () => {
    const before = new Set(bwraps());
    for (let round = 0; round < 5; round++) {
      const backend = new NamespaceBackend({
        limits: { memoryBytes: 128 * MiB, pids: 32, cpus: 1, tmpfsBytes: 8 * MiB, maxOutputBytes: 4096 },
        warmPool: 4,
      });
      expect((await backend.start()).available).toBe(true);
      await backend.exec(request({ language: "shell", code: "true" })); // the shell kind is kept warm from now on
      await new Promise((r) => setImmediate(r)); // the refill has just spawned its sandboxes
      await backend.stop();
    }
    let left: string[] = [];
    for (let i = 0; i < 100; i++) {
      left = bwraps().filter((p) => !before.has(p));
      if (left.length === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(left).toEqual([]);
  });
});
