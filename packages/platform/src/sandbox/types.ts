import type { SandboxBackendName, SandboxLanguage } from "@hexr/core";

/** Limits every execution gets, resolved from the config. */
export interface SandboxLimits {
  memoryBytes: number;
  pids: number;
  cpus: number;
  tmpfsBytes: number;
  maxOutputBytes: number;
}

/** Packages to install into the execution's private writable layer before the code runs. */
export interface PackageInstall {
  language: "python" | "javascript";
  /** Host directory with the package files (bound read-only into the sandbox). */
  sourceDir: string;
  /** Arguments for the installer: requirement specs (python) or tarball file names (javascript). */
  items: string[];
  /**
   * `local` (default): `sourceDir` is the operator's package directory, the same for every execution.
   * `fetched`: `sourceDir` was fetched from an index for this execution alone (python: wheels with
   * every dependency; javascript: a complete `node_modules/` tree); the backend takes it over and
   * removes it.
   */
  origin?: "local" | "fetched";
}

export interface BackendExecRequest {
  /** Unique per execution; names the cgroup / VM. */
  id: string;
  code: string;
  language: SandboxLanguage;
  timeoutMs: number;
  installTimeoutMs: number;
  env: Record<string, string>;
  install?: PackageInstall;
  /**
   * Whom it runs for (the tenant, "" for the operator). Executions of different tenants never share
   * anything a backend keeps between them (the namespace backend's python zygotes).
   */
  tenant?: string;
  /** Aborting kills the execution. */
  signal?: AbortSignal;
}

export interface BackendExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  durationMs: number;
  timedOut: boolean;
  oomKilled: boolean;
  truncated: { stdout: boolean; stderr: boolean };
}

export interface BackendCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** A failed `warning` check leaves the backend usable (degraded). */
  severity: "error" | "warning";
}

export interface BackendHealth {
  backend: SandboxBackendName;
  available: boolean;
  checks: BackendCheck[];
  /** One line: what works, or why not and what to do. */
  summary: string;
}

/** One way of running code in isolation; `hexr sandbox doctor` reports which ones work here. */
export interface SandboxBackend {
  readonly name: SandboxBackendName;
  /** Whether `exec` installs `install` packages (the service refuses such executions up front otherwise). */
  readonly installsPackages: boolean;
  /** Probes the machine (a real sandboxed run, not a look at files) and prepares what executions need. */
  start(): Promise<BackendHealth>;
  /** The result of the last probe. */
  health(): BackendHealth;
  exec(req: BackendExecRequest): Promise<BackendExecResult>;
  stop(): Promise<void>;
}
