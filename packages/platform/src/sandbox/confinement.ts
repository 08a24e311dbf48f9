import type { BackendExecRequest, BackendExecResult } from "./types.js";

/**
 * What every backend's health probe runs: the kernel's view of the executing process. Only the lines
 * it checks, so the smallest output cap an operator may configure (1 KiB) never cuts them off.
 */
export function confinementProbeRequest(timeoutMs: number): BackendExecRequest {
  return {
    id: "probe",
    code: "grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status; id -u",
    language: "shell",
    timeoutMs,
    installTimeoutMs: 0,
    env: {},
  };
}

/** The same probe in python (the namespace backend's python fork server runs it in a forked interpreter). */
export function pythonConfinementProbeRequest(timeoutMs: number): BackendExecRequest {
  return {
    id: "probe",
    code: [
      "import os",
      "for line in open('/proc/self/status'):",
      "    if line.split(':')[0] in ('Seccomp', 'NoNewPrivs', 'CapEff'):",
      "        print(line, end='')",
      "print(os.getuid())",
    ].join("\n"),
    language: "python",
    timeoutMs,
    installTimeoutMs: 0,
    env: {},
  };
}

/** True when the probe ran under seccomp, with no-new-privs, no effective capabilities, as uid 65534. */
export function isConfined(probe: BackendExecResult): boolean {
  const s = probe.stdout;
  return (
    probe.exitCode === 0 &&
    /^Seccomp:\s*2$/m.test(s) &&
    /^NoNewPrivs:\s*1$/m.test(s) &&
    /^CapEff:\s*0+$/m.test(s) &&
    /^65534$/m.test(s)
  );
}
