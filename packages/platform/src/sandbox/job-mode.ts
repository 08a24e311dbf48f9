import type { SandboxLanguage } from "@hexr/core";

/**
 * How a job process started ahead of the job (an interpreter waiting for its go) runs it: "run" =
 * the python interpreter already running executes the code itself; "exec" = it execs the job's
 * program (or the runner). Variables that python or the C library read at startup (an interpreter
 * already started would ignore them) make a python job start a new interpreter; so does anything
 * that must happen before the code, such as installing packages.
 */
export type JobMode = "run" | "exec";
const STARTUP_ENV = /^(PYTHON|LC_|LD_|MALLOC_|GLIBC_)|^(LANG|LANGUAGE|TZ|HOME)$/;

export function jobMode(language: SandboxLanguage, env: Record<string, string>, opts: { installs?: boolean } = {}): JobMode {
  return language === "python" && !opts.installs && !Object.keys(env).some((k) => STARTUP_ENV.test(k)) ? "run" : "exec";
}
