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

/**
 * main.py of a job process started ahead of its job (both backends): `prologue` (python, indented
 * four spaces, with os and sys imported) waits for the go by the backend's own protocol and applies
 * the job's variables; then the code the backend has meanwhile written over main.py runs as the
 * `__main__` script, an uncaught exception reported as the interpreter does (without this stub's frame).
 */
export function pythonStubScript(prologue: string): string {
  return (
    "def _hexr_main(g):\n    import os, sys\n" +
    prologue.replace(/\n?$/, "\n") +
    String.raw`    del g["_hexr_main"]
    try:
        with open(g["__file__"], "rb") as f:
            code = compile(f.read(), g["__file__"], "exec", dont_inherit=True)
        exec(code, g)
    except SystemExit:
        raise
    except BaseException as e:
        e.__traceback__ = e.__traceback__.tb_next  # without this stub's frame (the hook prints the exception's own)
        sys.excepthook(type(e), e, e.__traceback__)
        if isinstance(e, KeyboardInterrupt):
            import signal
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        sys.exit(1)
_hexr_main(globals())
`
  );
}
