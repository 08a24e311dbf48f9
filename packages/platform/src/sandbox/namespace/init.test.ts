/**
 * hexr-init (native/src/init.c), the init of every forked sandbox, run directly: exec'd by a python
 * process in place of itself once it has forked the "code process", as the zygote's vfork child does.
 * It reaps every child until the code process ends, then reports that one's exit code on the status
 * descriptor (bubblewrap's `{"exit-code":N}`) and exits with it.
 */

import { spawn } from "node:child_process";
import type { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { SANDBOX_INIT_PATH } from "../../native.js";

/** Runs `fork` (python: sets `code`, the code process's pid) then execs hexr-init with `args(code)`. */
function init(fork: string, args = "['3', str(code)]"): Promise<{ status: string; exit: number | null }> {
  const script = `import os, signal, time
${fork}
os.execv(${JSON.stringify(SANDBOX_INIT_PATH)}, ["hexr-init"] + ${args})`;
  const child = spawn("/usr/bin/python3", ["-c", script], { stdio: ["ignore", "ignore", "inherit", "pipe"] });
  let status = "";
  (child.stdio[3] as Readable).on("data", (d: Buffer) => (status += d.toString()));
  return new Promise((resolve) => child.on("close", (exit) => resolve({ status, exit })));
}

describe("hexr-init", () => {
  it("reports the code process's exit code on the status descriptor and exits with it", async () => {
    expect(await init("code = os.fork()\nif code == 0:\n    os._exit(3)")).toEqual({ status: '{"exit-code":3}\n', exit: 3 });
  });

  it("reports a code process killed by a signal as 128 + the signal", async () => {
    const killed = "code = os.fork()\nif code == 0:\n    os.kill(os.getpid(), signal.SIGKILL)";
    expect(await init(killed)).toEqual({ status: '{"exit-code":137}\n', exit: 137 });
  });

  it("reaps other children meanwhile and waits for the code process", async () => {
    const two = [
      "other = os.fork()",
      "if other == 0:",
      "    os._exit(9)",
      "code = os.fork()",
      "if code == 0:",
      "    time.sleep(0.3)",
      "    os._exit(5)",
    ].join("\n");
    expect(await init(two)).toEqual({ status: '{"exit-code":5}\n', exit: 5 });
  });

  it("exits 126 without a report when its arguments are not a descriptor and a pid", async () => {
    const fork = "code = os.fork()\nif code == 0:\n    os._exit(0)";
    expect(await init(fork, "['3']")).toEqual({ status: "", exit: 126 });
    expect(await init(fork, "['x', str(code)]")).toEqual({ status: "", exit: 126 });
    expect(await init(fork, "['3', '0']")).toEqual({ status: "", exit: 126 });
  });
});
