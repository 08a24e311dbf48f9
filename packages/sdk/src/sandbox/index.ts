import type { ExecResult } from "@hexr/core";
import { SandboxClient, type SandboxClientOptions, type SandboxExecOptions } from "./client.js";

export { SandboxClient, type SandboxClientOptions, type SandboxExecOptions, type SandboxJwtSource } from "./client.js";
export type { ExecResult, SandboxLanguage, SandboxStatus } from "@hexr/core";

let client: SandboxClient | undefined;

/**
 * `sandbox.exec(code, { language, timeout, envVars, packages })` runs code in a fresh isolated
 * environment (no identity, no secrets, no network) and returns `{ stdout, stderr, exitCode,
 * durationMs, ok, output }`; `sandbox.isEnabled()` says whether that is available here. The client
 * comes from the environment (`HEXR_PLATFORM_URL`, the Workload API or `HEXR_API_KEY`) unless
 * `sandbox.configure()` sets one.
 */
export const sandbox = {
  exec(code: string, opts?: SandboxExecOptions): Promise<ExecResult> {
    client ??= new SandboxClient();
    return client.exec(code, opts);
  },
  isEnabled(): Promise<boolean> {
    client ??= new SandboxClient();
    return client.isEnabled();
  },
  /** Replaces the default client (tests, several platforms in one process); returns it. */
  configure(opts: SandboxClientOptions | SandboxClient): SandboxClient {
    client = opts instanceof SandboxClient ? opts : new SandboxClient(opts);
    return client;
  },
};
