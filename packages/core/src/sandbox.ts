import { z } from "zod";

/**
 * Wire types of the sandbox service (`POST /api/v1/sandbox/execute`), shared by the platform, the
 * SDK and the CLI so that one definition validates the wire and types the code.
 */

export const SandboxLanguage = z.enum(["python", "shell", "javascript"]);
export type SandboxLanguage = z.infer<typeof SandboxLanguage>;

/** Upper bound of the wire; the service enforces its own (smaller) configured limits. */
export const SANDBOX_MAX_CODE_BYTES = 1024 * 1024;
export const SANDBOX_MAX_TIMEOUT_SECONDS = 3600;
export const SANDBOX_DEFAULT_TIMEOUT_SECONDS = 30;

/** POSIX-portable environment variable names. */
export const SandboxEnvName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "must be letters, digits or '_' (not starting with a digit), at most 128 characters");

export const SandboxEnvVars = z
  .record(
    SandboxEnvName,
    z
      .string()
      .max(32 * 1024)
      .refine((v) => !v.includes("\0"), "must not contain NUL"),
  )
  .refine((r) => Object.keys(r).length <= 128, "at most 128 variables");

/**
 * A package request: `numpy`, `numpy==1.26.4`, `requests>=2` (python) or `left-pad`, `@scope/pkg@1.2.3`
 * (javascript). The syntax is checked per language by the service; this only bounds the wire.
 */
export const SandboxPackageSpec = z.string().min(1).max(214);

/** UTF-8 byte length without Node's Buffer (this module also runs in browsers). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

export const ExecRequest = z.strictObject({
  code: z
    .string()
    .min(1, "must not be empty")
    .refine((c) => utf8Length(c) <= SANDBOX_MAX_CODE_BYTES, `must be at most ${SANDBOX_MAX_CODE_BYTES} bytes`),
  language: SandboxLanguage.default("python"),
  /** Seconds; the execution is killed after this (exit code 124). Default 30 (or the service's maximum, if lower). */
  timeout: z.number().positive().max(SANDBOX_MAX_TIMEOUT_SECONDS).optional(),
  envVars: SandboxEnvVars.default({}),
  packages: z.array(SandboxPackageSpec).max(64).default([]),
});
export type ExecRequest = z.infer<typeof ExecRequest>;
export type ExecRequestInput = z.input<typeof ExecRequest>;

/** Exit code reported when the timeout killed the execution (as coreutils `timeout` does). */
export const SANDBOX_TIMEOUT_EXIT_CODE = 124;
/** Exit code reported when the memory limit killed the execution (128 + SIGKILL). */
export const SANDBOX_OOM_EXIT_CODE = 137;

export const ExecResult = z.object({
  stdout: z.string(),
  stderr: z.string(),
  exitCode: z.number().int(),
  /** Wall time of the execution itself (package installation and queueing excluded). */
  durationMs: z.number(),
  /** `exitCode === 0`. */
  ok: z.boolean(),
  /** Alias of `stdout`. */
  output: z.string(),
  timedOut: z.boolean(),
  oomKilled: z.boolean(),
  truncated: z.object({ stdout: z.boolean(), stderr: z.boolean() }),
  /** Which backend ran the code (`namespace`, `microvm`). */
  backend: z.string(),
});
export type ExecResult = z.infer<typeof ExecResult>;

export const SandboxBackendName = z.enum(["namespace", "microvm"]);
export type SandboxBackendName = z.infer<typeof SandboxBackendName>;

/** `GET /api/v1/sandbox/status`: what `sandbox.isEnabled()` asks. */
export const SandboxStatus = z.object({
  enabled: z.boolean(),
  /** The backend executions run on, or null when none works. */
  backend: SandboxBackendName.nullable(),
  languages: z.array(SandboxLanguage),
  /** When not enabled: why, and what to run (`hexr sandbox doctor`). */
  reason: z.string().optional(),
});
export type SandboxStatus = z.infer<typeof SandboxStatus>;
