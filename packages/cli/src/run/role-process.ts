import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import type { ReadyMeta } from "./agent-run.js";

export interface RoleProcessOptions {
  role: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Called for each output line, already prefixed with the role. */
  onLine: (line: string, stream: "stdout" | "stderr") => void;
  /** Called right after each spawn, before the process is ready: register its identity here. */
  onSpawn: (child: ChildProcess, attempt: number) => Promise<void>;
  /** Called when the process reports ready over IPC. */
  onReady: (message: { bridgePort: number; spiffeId: string; meta: ReadyMeta }, child: ChildProcess) => void;
  /** Called when a process ended unexpectedly, before the restart is scheduled. */
  onCrash: (code: number | null, signal: NodeJS.Signals | null, restarts: number, delayMs: number) => void;
  /** Called when a process of an earlier attempt is gone (clean up its identity). */
  onExit?: (child: ChildProcess) => void;
  backoff?: { initialMs: number; maxMs: number; resetAfterMs: number };
  clock?: () => number;
}

/**
 * One role's process under supervision: restarted with exponential backoff when it dies
 * (reset after it stayed up long enough), its output prefixed with the role name.
 */
export class RoleProcess {
  restarts = 0;
  child: ChildProcess | undefined;
  private stopping = false;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private delay: number;
  private readonly backoff: { initialMs: number; maxMs: number; resetAfterMs: number };
  private readonly clock: () => number;

  constructor(private readonly opts: RoleProcessOptions) {
    this.backoff = opts.backoff ?? { initialMs: 500, maxMs: 30_000, resetAfterMs: 60_000 };
    this.delay = this.backoff.initialMs;
    this.clock = opts.clock ?? Date.now;
  }

  start(): void {
    const child = spawn(this.opts.command, this.opts.args, { env: this.opts.env, stdio: ["ignore", "pipe", "pipe", "ipc"] });
    this.child = child;
    this.startedAt = this.clock();
    for (const stream of ["stdout", "stderr"] as const) {
      createInterface({ input: child[stream]! }).on("line", (l) => this.opts.onLine(`[${this.opts.role}] ${l}`, stream));
    }
    child.on("message", (m: unknown) => {
      const msg = m as { type?: string; bridgePort?: number; spiffeId?: string; meta?: ReadyMeta };
      if (msg?.type === "ready" && typeof msg.bridgePort === "number" && typeof msg.spiffeId === "string") {
        this.opts.onReady({ bridgePort: msg.bridgePort, spiffeId: msg.spiffeId, meta: msg.meta ?? {} }, child);
      }
    });
    child.once("exit", (code, signal) => {
      this.opts.onExit?.(child);
      if (this.child === child) this.child = undefined;
      if (this.stopping) return;
      if (this.clock() - this.startedAt > this.backoff.resetAfterMs) this.delay = this.backoff.initialMs;
      this.restarts++;
      const wait = this.delay;
      this.delay = Math.min(this.delay * 2, this.backoff.maxMs);
      this.opts.onCrash(code, signal, this.restarts, wait);
      this.timer = setTimeout(() => this.start(), wait);
    });
    this.opts.onSpawn(child, this.restarts).catch((err: unknown) => {
      this.opts.onLine(`[${this.opts.role}] could not register the process identity: ${(err as Error).message}`, "stderr");
      child.kill("SIGKILL");
    });
  }

  /** Stops the process (SIGTERM, then SIGKILL after the grace period) and does not restart it. */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGTERM");
    const timeout = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timeout);
  }
}
