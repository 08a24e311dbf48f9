import { closeSync, openSync, readdirSync } from "node:fs";
import type { Socket } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { NativeProcess } from "./spawn.js";

const devNull = openSync("/dev/null", "r");
afterAll(() => closeSync(devNull));

function collect(s: Socket | undefined): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    s!.setEncoding("utf8");
    s!.on("data", (d: string) => (text += d));
    s!.once("close", () => resolve(text));
  });
}

async function run(argv: string[], fds = 3): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = new NativeProcess(argv[0]!, argv, { fds: [{ fd: devNull }, "read", "read", ...Array(fds - 3).fill(null)] });
  const [stdout, stderr, code] = await Promise.all([collect(p.pipes[1]), collect(p.pipes[2]), p.exited]);
  return { code, stdout, stderr };
}

describe("spawning without fork (native addon)", () => {
  it("runs the program with its arguments and reports the exit code", async () => {
    const r = await run(["/bin/sh", "-c", 'echo "$0 $1"; echo err >&2; exit 3', "a b", "c"]);
    expect(r).toEqual({ code: 3, stdout: "a b c\n", stderr: "err\n" });
  });

  it("passes only the environment it is given", async () => {
    const p = new NativeProcess("/usr/bin/env", ["env"], { fds: [{ fd: devNull }, "read", null], env: { ONLY: "this one" } });
    const [out] = await Promise.all([collect(p.pipes[1]), p.exited]);
    expect(out).toBe("ONLY=this one\n");
  });

  it("reports death by a signal as 128 + signal", async () => {
    const p = new NativeProcess("/bin/sleep", ["sleep", "30"], { fds: [{ fd: devNull }, "read", "read"] });
    p.kill("SIGKILL");
    expect(await p.exited).toBe(137);
  });

  it("gives the child data descriptors it reads to EOF, larger than a pipe's capacity", async () => {
    const data = Buffer.alloc(200_000, "x");
    const p = new NativeProcess("/bin/sh", ["sh", "-c", "wc -c <&3"], { fds: [{ fd: devNull }, "read", "read", { data }] });
    const [out] = await Promise.all([collect(p.pipes[1]), p.exited]);
    expect(out.trim()).toBe("200000");
  });

  it("feeds a write pipe to the child", async () => {
    const p = new NativeProcess("/bin/cat", ["cat"], { fds: ["write", "read", "read"] });
    p.pipes[0]!.end("through the pipe");
    const [out, code] = await Promise.all([collect(p.pipes[1]), p.exited]);
    expect({ out, code }).toEqual({ out: "through the pipe", code: 0 });
  });

  it("resets signal dispositions and the signal mask (Node ignores SIGPIPE; the child must not)", async () => {
    const r = await run(["/bin/sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status"]);
    expect(r.stdout).toBe("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
  });

  it("drops to the given uid and gid with no supplementary groups", async () => {
    if (process.getuid?.() !== 0)
      throw new Error("this test needs root (the platform drops sandbox processes to uid 65534 as root)");
    const p = new NativeProcess("/bin/sh", ["sh", "-c", "id -u; id -g; id -G"], {
      fds: [{ fd: devNull }, "read", "read"],
      runAs: { uid: 65534, gid: 65534 },
    });
    const [out] = await Promise.all([collect(p.pipes[1]), p.exited]);
    expect(out).toBe("65534\n65534\n65534\n");
  });

  it("fails with a typed error naming the program, leaving no descriptor behind", async () => {
    const before = readdirSync("/proc/self/fd").length;
    const p = new NativeProcess("/nonexistent/hexr-program", ["x"], {
      fds: [{ fd: devNull }, "read", "read", { data: Buffer.from("d") }],
    });
    await expect(p.started).rejects.toMatchObject({ code: "sandbox.spawn_failed", details: { errno: 2 } });
    await expect(p.exited).rejects.toThrow("/nonexistent/hexr-program");
    await new Promise((r) => setImmediate(r));
    expect(readdirSync("/proc/self/fd").length).toBe(before);
  });

  it("delivers a kill asked for before the child runs", async () => {
    const p = new NativeProcess("/bin/sleep", ["sleep", "30"], { fds: [{ fd: devNull }, "read", "read"] });
    p.kill("SIGKILL");
    expect(await p.exited).toBe(137);
  });

  it("gives the child only the descriptors listed, whatever else the platform has open", async () => {
    const extra = [openSync("/dev/null", "r"), openSync("/dev/zero", "r")];
    try {
      expect(readdirSync("/proc/self/fd").length).toBeGreaterThan(5);
      const r = await run(["/usr/bin/python3", "-c", "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"], 5);
      // 0-2 and the directory python lists; slots 3 and 4 were listed as closed
      expect(r.stdout.trim()).toBe("[0, 1, 2, 3]");
    } finally {
      for (const fd of extra) closeSync(fd);
    }
  });
});
