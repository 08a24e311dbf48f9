/**
 * The sandbox service: validates an execution against the configured limits, resolves its
 * packages, admits it (at most `maxConcurrent` at once, then a bounded queue), and runs it on the
 * active backend. There is no fallback to running code unsandboxed: without a working backend,
 * every execution fails with `sandbox.unavailable`.
 */

import {
  ExecRequest,
  HexrError,
  SANDBOX_DEFAULT_TIMEOUT_SECONDS,
  utf8Length,
  type ExecResult,
  type SandboxBackendName,
  type SandboxLanguage,
  type SandboxStatus,
} from "@hexr/core";
import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import type { Logger } from "pino";
import { unauthenticated, type Principal } from "../auth/principal.js";
import { authorize, policyWarningHeaders } from "../policy/authorize.js";
import type { PolicyDecision, PolicyEngine } from "../policy/types.js";
import type { PackageFetch } from "./package-fetch.js";
import { planPackages, type PackagePlan, type PackageSources } from "./packages.js";
import type { BackendHealth, PackageInstall, SandboxBackend } from "./types.js";

export interface SandboxServiceLimits {
  maxConcurrent: number;
  maxQueue: number;
  maxTimeoutSeconds: number;
  maxCodeBytes: number;
  installTimeoutSeconds: number;
}

export interface SandboxServiceOptions {
  /** In order of preference for `auto`. */
  backends: SandboxBackend[];
  /** `auto` or the one backend to use. */
  prefer?: "auto" | SandboxBackendName;
  enabled?: boolean;
  limits: SandboxServiceLimits;
  packages?: PackageSources;
  /** Fetches packages from the configured index (for the languages `packages.index` names). */
  fetcher?: PackageFetch;
  /** Interpreters each backend offers. */
  languagesOf?: (b: SandboxBackend) => SandboxLanguage[];
  /** Asked `sandbox:exec` for every execution on behalf of a tenant. */
  policy?: PolicyEngine;
  /** The sandbox's SPIFFE ID: a JWT-SVID caller's token must be addressed to it. */
  audience?: string;
  log?: Logger;
  newId?: () => string;
}

export interface ExecContext {
  principal: Principal;
  /** The tenant of a tenant-scoped route (already authorized by the router). */
  tenant?: string;
  signal?: AbortSignal;
}

export interface ExecOutcome {
  result: ExecResult;
  /** Headers to pass on (a policy `warn`). */
  headers: Record<string, string>;
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

export class SandboxService {
  private active: SandboxBackend | undefined;
  private reason = "the sandbox service has not started";
  private running = 0;
  private readonly queue: Waiter[] = [];
  private readonly opts: Required<Pick<SandboxServiceOptions, "prefer" | "enabled" | "newId">> & SandboxServiceOptions;

  constructor(opts: SandboxServiceOptions) {
    this.opts = { prefer: "auto", enabled: true, newId: randomUUID, ...opts };
  }

  private starting: Promise<BackendHealth[]> | undefined;
  private probed: BackendHealth[] = [];

  /** Starts probing in the background (executions and status wait for it). */
  startInBackground(): void {
    this.starting ??= this.start().catch((err: unknown) => {
      this.reason = `the sandbox failed to start: ${(err as Error).message}; run 'hexr sandbox doctor'`;
      return [];
    });
  }

  /** Resolves once the probes are done. */
  async started(): Promise<void> {
    await this.starting;
  }

  /** Probes every backend and picks the active one. */
  async start(): Promise<BackendHealth[]> {
    if (!this.opts.enabled) {
      this.reason = "the sandbox is disabled by configuration (sandbox.enabled = false)";
      return [];
    }
    const wanted =
      this.opts.prefer === "auto" ? this.opts.backends : this.opts.backends.filter((b) => b.name === this.opts.prefer);
    const healths: BackendHealth[] = [];
    for (const b of wanted) {
      if (this.active) {
        // `auto` takes the first backend that works; the rest are not started (a doctor run probes them all).
        healths.push({
          backend: b.name,
          available: false,
          checks: [],
          summary: `not probed: ${this.active.name} serves executions`,
        });
        continue;
      }
      let h: BackendHealth;
      try {
        h = await b.start();
      } catch (err) {
        h = { backend: b.name, available: false, checks: [], summary: `failed to start: ${(err as Error).message}` };
      }
      healths.push(h);
      if (h.available) this.active = b;
      else await b.stop();
    }
    if (this.active) {
      this.opts.log?.info({ backend: this.active.name, summary: this.active.health().summary }, "sandbox ready");
    } else {
      const why = healths.map((h) => `${h.backend}: ${h.summary}`).join("; ") || `no backend named '${this.opts.prefer}'`;
      this.reason = `no sandbox backend works on this machine (${why}); run 'hexr sandbox doctor'`;
      this.opts.log?.warn({ reason: this.reason }, "sandbox unavailable");
    }
    this.probed = healths;
    return healths;
  }

  async stop(): Promise<void> {
    await this.starting;
    for (const w of this.queue.splice(0)) {
      w.signal?.removeEventListener("abort", w.onAbort);
      w.reject(new HexrError("sandbox.shutting_down", "the sandbox service is shutting down", { kind: "unavailable" }));
    }
    const b = this.active;
    this.active = undefined;
    this.reason = "the sandbox service stopped";
    await b?.stop();
  }

  /** What the probes found, one entry per backend tried. */
  healths(): BackendHealth[] {
    return this.probed;
  }

  get backend(): SandboxBackend | undefined {
    return this.active;
  }

  status(): SandboxStatus {
    if (!this.active) return { enabled: false, backend: null, languages: [], reason: this.reason };
    return { enabled: true, backend: this.active.name, languages: this.languages() };
  }

  private languages(): SandboxLanguage[] {
    if (!this.active) return [];
    return this.opts.languagesOf ? this.opts.languagesOf(this.active) : ["python", "shell", "javascript"];
  }

  /** Executions running and waiting now. */
  load(): { running: number; queued: number } {
    return { running: this.running, queued: this.queue.length };
  }

  /** Validates, authorizes, admits and runs one execution. `input` is the wire body (validated here too). */
  async execute(input: unknown, ctx: ExecContext): Promise<ExecOutcome> {
    const parsed = ExecRequest.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new HexrError(
        "sandbox.invalid_request",
        `invalid execution request: ${issue?.path.join(".") || "(body)"}: ${issue?.message}`,
        {
          kind: "invalid_argument",
          details: { errors: parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })) },
        },
      );
    }
    const req = parsed.data;
    const { limits } = this.opts;
    const timeout = req.timeout ?? Math.min(SANDBOX_DEFAULT_TIMEOUT_SECONDS, limits.maxTimeoutSeconds);
    if (timeout > limits.maxTimeoutSeconds) {
      throw new HexrError("sandbox.timeout_too_long", `timeout ${timeout} s exceeds the limit of ${limits.maxTimeoutSeconds} s`, {
        kind: "invalid_argument",
        details: { errors: [{ path: "timeout", message: `must be at most ${limits.maxTimeoutSeconds}` }] },
      });
    }
    const codeBytes = utf8Length(req.code);
    if (codeBytes > limits.maxCodeBytes) {
      throw new HexrError("sandbox.code_too_large", `code is ${codeBytes} bytes; the limit is ${limits.maxCodeBytes}`, {
        kind: "payload_too_large",
        details: { limit: limits.maxCodeBytes },
      });
    }
    if (!this.opts.enabled) throw new HexrError("sandbox.disabled", this.reason, { kind: "unavailable" });
    await this.starting;
    const backend = this.active;
    if (!backend) throw new HexrError("sandbox.unavailable", this.reason, { kind: "unavailable" });
    if (!this.languages().includes(req.language)) {
      throw new HexrError(
        "sandbox.language_unavailable",
        `${req.language} is not available on the ${backend.name} backend of this machine`,
        {
          kind: "failed_precondition",
        },
      );
    }
    if (req.packages.length > 0 && !backend.installsPackages) {
      // Before anything is fetched for an execution that could not use it.
      throw new HexrError(
        "sandbox.packages_unsupported",
        `the ${backend.name} backend cannot install packages; run executions with packages on a backend that can (namespace, microvm)`,
        { kind: "failed_precondition" },
      );
    }
    const { decision, tenant } = await this.authorize(req, ctx);
    const plan = planPackages(req.language, req.packages, this.opts.packages ?? {});

    await this.admit(ctx.signal);
    const id = this.opts.newId();
    try {
      const { install, installTimeoutMs } = await this.packagesFor(id, plan, ctx.signal);
      const r = await backend
        .exec({
          id,
          code: req.code,
          language: req.language,
          timeoutMs: Math.round(timeout * 1000),
          installTimeoutMs,
          env: req.envVars,
          tenant: tenant ?? "",
          ...(install ? { install } : {}),
          ...(ctx.signal ? { signal: ctx.signal } : {}),
        })
        .catch((err: unknown) => {
          // A backend that failed before taking the fetched packages over leaves them here.
          if (install?.origin === "fetched") rmSync(install.sourceDir, { recursive: true, force: true });
          throw err;
        });
      this.opts.log?.info(
        {
          id,
          backend: backend.name,
          language: req.language,
          exitCode: r.exitCode,
          durationMs: r.durationMs,
          timedOut: r.timedOut,
          oomKilled: r.oomKilled,
        },
        "sandbox execution",
      );
      return {
        result: { ...r, ok: r.exitCode === 0, output: r.stdout, backend: backend.name },
        headers: policyWarningHeaders(decision),
      };
    } finally {
      this.leave();
    }
  }

  /**
   * What the backend installs from: the local directory, or what the fetcher got from the index
   * for this execution alone. Fetching counts against the install timeout; the backend gets the rest.
   */
  private async packagesFor(
    id: string,
    plan: PackagePlan | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ install: PackageInstall | undefined; installTimeoutMs: number }> {
    const budget = Math.round(this.opts.limits.installTimeoutSeconds * 1000);
    if (plan?.from !== "index") return { install: plan?.install, installTimeoutMs: budget };
    if (!this.opts.fetcher) {
      throw new HexrError("sandbox.packages_not_configured", `no ${plan.language} package index is configured`, {
        kind: "failed_precondition",
      });
    }
    const started = Date.now();
    const install = await this.opts.fetcher.fetch({
      id,
      language: plan.language,
      specs: plan.specs,
      timeoutMs: budget,
      ...(signal ? { signal } : {}),
    });
    // Installing from a local directory is quick, but never give the backend less than a second.
    return { install, installTimeoutMs: Math.max(1000, budget - (Date.now() - started)) };
  }

  /**
   * Who executes on behalf of which tenant: a tenant route's tenant, else the caller's own. Admin
   * keys act as the operator (no tenant, no policy); a workload outside any tenant may not execute.
   */
  private async authorize(
    req: ExecRequest,
    ctx: ExecContext,
  ): Promise<{ decision: PolicyDecision | undefined; tenant: string | undefined }> {
    const p = ctx.principal;
    if (p.kind === "anonymous") throw unauthenticated();
    if (p.kind === "workload" && p.via === "jwt-svid" && this.opts.audience && !(p.audience ?? []).includes(this.opts.audience)) {
      throw new HexrError(
        "sandbox.wrong_audience",
        `the JWT-SVID is not addressed to the sandbox: request one with audience ${this.opts.audience}`,
        { kind: "unauthenticated" },
      );
    }
    const tenant = ctx.tenant ?? (p.kind === "tenant-key" || p.kind === "workload" ? p.tenant : undefined);
    if (tenant === undefined) {
      if (p.kind === "admin") return { decision: undefined, tenant };
      throw new HexrError("sandbox.forbidden", "only agents of a tenant, tenant API keys and admins may use the sandbox", {
        kind: "permission_denied",
      });
    }
    if (!this.opts.policy) return { decision: undefined, tenant };
    const decision = await authorize(this.opts.policy, {
      principal: p,
      action: "sandbox:exec",
      resource: { type: "Sandbox", id: "default", tenant },
      context: { language: req.language },
    });
    return { decision, tenant };
  }

  private admit(signal: AbortSignal | undefined): Promise<void> {
    if (this.running < this.opts.limits.maxConcurrent) {
      this.running++;
      return Promise.resolve();
    }
    if (this.queue.length >= this.opts.limits.maxQueue) {
      return Promise.reject(
        new HexrError(
          "sandbox.busy",
          `the sandbox is at capacity (${this.running} running, ${this.queue.length} queued); retry later`,
          { kind: "unavailable", details: { running: this.running, queued: this.queue.length } },
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.queue.indexOf(w);
          if (i !== -1) this.queue.splice(i, 1);
          reject(new HexrError("sandbox.aborted", "the execution was cancelled while queued", { kind: "unavailable" }));
        },
      };
      if (signal?.aborted) return w.onAbort();
      signal?.addEventListener("abort", w.onAbort, { once: true });
      this.queue.push(w);
    });
  }

  private leave(): void {
    const next = this.queue.shift();
    if (next) {
      next.signal?.removeEventListener("abort", next.onAbort);
      next.resolve(); // the slot passes straight to the next waiter
    } else this.running--;
  }
}
