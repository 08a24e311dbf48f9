/**
 * Keeps pip's and npm's download caches (`sandbox.packages.cacheDir`) within a size: after fetches,
 * the least recently used files go until the cache is below 90% of `cacheMaxMb`. Recency is a
 * file's newer of atime and mtime (with relatime, a read refreshes atime at most daily, which is
 * enough to tell last week's packages from today's). Deleting under a running pip or npm is safe:
 * both write cache entries to a temporary name and rename them, and treat a missing entry as a miss.
 */

import { lstat, readdir, rmdir, unlink } from "node:fs/promises";
import { join } from "node:path";

export interface PruneResult {
  /** Bytes in the cache before and after. */
  before: number;
  after: number;
  removedFiles: number;
}

interface Entry {
  path: string;
  bytes: number;
  used: number;
}

/** Every regular file below `dir` (symlinks are not followed), and whether each directory ended up empty. */
async function walk(dir: string, out: Entry[]): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return; // gone meanwhile, or not there yet
  }
  for (const name of names) {
    const path = join(dir, name);
    let st;
    try {
      st = await lstat(path);
    } catch {
      continue;
    }
    if (st.isDirectory()) await walk(path, out);
    else if (st.isFile()) out.push({ path, bytes: st.size, used: Math.max(st.atimeMs, st.mtimeMs) });
  }
}

/** Removes empty directories below `dir` (not `dir` itself), deepest first. */
async function removeEmptyDirs(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(dir, name);
    try {
      if (!(await lstat(path)).isDirectory()) continue;
    } catch {
      continue;
    }
    await removeEmptyDirs(path);
    await rmdir(path).catch(() => undefined); // not empty, or in use: stays
  }
}

/** Deletes the least recently used files below `dir` until it holds at most 90% of `maxBytes` (when it holds more than `maxBytes`). */
export async function pruneCache(dir: string, maxBytes: number): Promise<PruneResult> {
  const files: Entry[] = [];
  await walk(dir, files);
  const before = files.reduce((n, f) => n + f.bytes, 0);
  if (before <= maxBytes) return { before, after: before, removedFiles: 0 };
  const target = Math.floor(maxBytes * 0.9);
  files.sort((a, b) => a.used - b.used);
  let size = before;
  let removedFiles = 0;
  for (const f of files) {
    if (size <= target) break;
    try {
      await unlink(f.path);
      size -= f.bytes;
      removedFiles++;
    } catch {
      // removed meanwhile
    }
  }
  await removeEmptyDirs(dir);
  return { before, after: size, removedFiles };
}

/**
 * Runs `pruneCache` after fetches, at most once per `intervalMs` and never two at once, in the
 * background: a fetch never waits for it.
 */
export class CachePruner {
  private running: Promise<void> | undefined;
  private last = -Infinity;

  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
    private readonly onPruned: (r: PruneResult) => void,
    private readonly onError: (err: unknown) => void,
    private readonly intervalMs = 60_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** After a fetch: prunes unless one ran recently or runs now. */
  poke(): void {
    if (this.running || this.now() - this.last < this.intervalMs) return;
    this.last = this.now();
    this.running = pruneCache(this.dir, this.maxBytes)
      .then((r) => {
        if (r.removedFiles > 0) this.onPruned(r);
      }, this.onError)
      .finally(() => {
        this.running = undefined;
      });
  }

  /** Waits for a prune under way (shutdown, tests). */
  async idle(): Promise<void> {
    await this.running;
  }
}
