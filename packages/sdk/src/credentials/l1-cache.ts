import type { ToolCredentials } from "./types.js";

interface Entry {
  value: ToolCredentials;
  /** Epoch ms after which the entry is not served (before the credentials expire). */
  freshUntil: number;
}

/** The in-process tier: a Map read on every `hexrTool()` call, so it stays trivially cheap. */
export class L1Cache {
  private readonly entries = new Map<string, Entry>();

  get(tool: string, now: number): ToolCredentials | undefined {
    const e = this.entries.get(tool);
    if (e === undefined) return undefined;
    if (e.freshUntil > now) return e.value;
    this.entries.delete(tool);
    return undefined;
  }

  set(tool: string, value: ToolCredentials, freshUntil: number): void {
    this.entries.set(tool, { value, freshUntil });
  }

  delete(tool: string): void {
    this.entries.delete(tool);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * When a cached entry stops being served: a refresh margin of 20% of the lifetime, at least 30 s
 * and at most 5 min, before the credentials expire (15-minute AWS credentials: served for 12 min).
 */
export function freshUntil(expiresAt: number, issuedAt: number): number {
  const lifetime = Math.max(0, expiresAt - issuedAt);
  const margin = Math.min(5 * 60_000, Math.max(30_000, lifetime * 0.2));
  return expiresAt - margin;
}
