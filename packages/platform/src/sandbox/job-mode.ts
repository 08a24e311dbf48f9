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
 *
 * `quickExit` (a process forked from the namespace backend's zygote): the interpreter ends as
 * Py_FinalizeEx begins, then leaves without tearing its heap down: non-daemon threads are joined,
 * atexit callbacks run, sys.stdout and sys.stderr are flushed (a failed flush is exit status 120),
 * `__main__`'s globals are cleared and the garbage the code made is collected (so finalizers run,
 * e.g. a file object's flush), the streams are flushed again, and the process exits with the
 * status the interpreter would give: SystemExit's code (None 0, an int its low byte, anything else
 * printed to stderr and 1), 1 after an uncaught exception, death by SIGINT after KeyboardInterrupt.
 * A forked interpreter shares its pages with the zygote until it writes them, and a full teardown
 * writes to nearly every one (each object's reference count), which costs more than the run itself.
 * The code is read with os.read rather than open(), which builds three io objects, for the same reason.
 */
export function pythonStubScript(prologue: string, opts: { quickExit?: boolean } = {}): string {
  const head = "def _hexr_main(g):\n    import os, sys\n" + prologue.replace(/\n?$/, "\n");
  if (!opts.quickExit) {
    return (
      head +
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
  return (
    head +
    String.raw`    def exit_status(code):
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF if -(1 << 63) <= code < (1 << 63) else 255
        try:
            sys.stderr.write(str(code))
            sys.stderr.write("\n")
        except BaseException:
            pass
        return 1
    def flushed():
        ok = True
        for name in ("stdout", "stderr"):
            f = getattr(sys, name, None)
            try:
                if f is not None and not f.closed:
                    f.flush()
            except BaseException:
                ok = ok and name != "stdout"
        return ok
    del g["_hexr_main"]
    status = 0
    interrupted = False
    try:
        fd = os.open(g["__file__"], os.O_RDONLY | os.O_CLOEXEC)
        try:
            # Sized by the file (the platform wrote it whole before the go): a buffer of its size
            # plus one byte comes from the interpreter's own allocator, where a large one would be
            # mapped and unmapped (a TLB flush) by the C library.
            size = os.fstat(fd).st_size + 1
            source = b"".join(iter(lambda: os.read(fd, size), b""))
        finally:
            os.close(fd)
        code = compile(source, g["__file__"], "exec", dont_inherit=True)
        del source
        exec(code, g)
    except SystemExit as e:
        status = exit_status(e.code)
    except BaseException as e:
        e.__traceback__ = e.__traceback__.tb_next  # without this stub's frame (the hook prints the exception's own)
        sys.excepthook(type(e), e, e.__traceback__)
        status = 1
        interrupted = isinstance(e, KeyboardInterrupt)
    code = None
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
        import atexit
        atexit._run_exitfuncs()
    except BaseException as e:
        sys.excepthook(type(e), e, e.__traceback__)
    if not flushed():
        status = 120
    import gc
    g.clear()
    gc.collect()
    if not flushed():
        status = 120
    if interrupted:
        import signal
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)
_hexr_main(globals())
`
  );
}
