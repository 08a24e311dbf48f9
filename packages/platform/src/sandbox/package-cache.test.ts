import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CachePruner, pruneCache } from "./package-cache.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function cache(): string {
  const d = mkdtempSync(join(tmpdir(), "hexr-cache-test-"));
  dirs.push(d);
  return d;
}

/** A file of `kb` KiB last used `daysAgo` days ago. */
function file(dir: string, rel: string, kb: number, daysAgo: number): string {
  const p = join(dir, rel);
  mkdirSync(join(p, ".."), { recursive: true });
  writeFileSync(p, Buffer.alloc(kb * 1024, 1));
  const t = Date.now() / 1000 - daysAgo * 86400;
  utimesSync(p, t, t);
  return p;
}

describe("package cache pruning", () => {
  it("leaves a cache under its cap alone", async () => {
    const d = cache();
    file(d, "pip/http/a", 100, 30);
    expect(await pruneCache(d, 1024 * 1024)).toEqual({ before: 100 * 1024, after: 100 * 1024, removedFiles: 0 });
    expect(existsSync(join(d, "pip/http/a"))).toBe(true);
  });

  it("removes the least recently used files down to 90% of the cap, and the directories they leave empty", async () => {
    const d = cache();
    const oldest = file(d, "pip/http/1/2/old", 400, 40);
    const older = file(d, "npm/_cacache/content-v2/x/older", 300, 20);
    const recent = file(d, "pip/http/3/recent", 300, 2);
    const today = file(d, "npm/_cacache/index-v5/today", 200, 0);
    const r = await pruneCache(d, 700 * 1024); // 1200 KiB held; down to at most 630
    expect(r).toEqual({ before: 1200 * 1024, after: 500 * 1024, removedFiles: 2 });
    expect([oldest, older, recent, today].map((p) => existsSync(p))).toEqual([false, false, true, true]);
    expect(existsSync(join(d, "pip/http/1"))).toBe(false);
    expect(existsSync(join(d, "npm/_cacache/content-v2"))).toBe(false);
    expect(existsSync(join(d, "pip"))).toBe(true);
  });

  it("counts a recent read (atime) as use, and never follows symlinks out of the cache", async () => {
    const d = cache();
    const outside = cache();
    const precious = file(outside, "precious", 500, 90);
    symlinkSync(outside, join(d, "link"));
    const read = file(d, "a/read-yesterday", 300, 60);
    const t = Date.now() / 1000;
    utimesSync(read, t - 86400, t - 60 * 86400); // read yesterday, written two months ago
    const stale = file(d, "a/stale", 300, 10);
    const r = await pruneCache(d, 400 * 1024);
    expect(r.removedFiles).toBe(1);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(read)).toBe(true);
    expect(existsSync(precious)).toBe(true);
  });

  it("is a no-op for a cache directory that does not exist yet", async () => {
    expect(await pruneCache(join(cache(), "missing"), 1024)).toEqual({ before: 0, after: 0, removedFiles: 0 });
  });

  it("prunes in the background at most once per interval", async () => {
    const d = cache();
    let clock = 0;
    const pruned: number[] = [];
    const p = new CachePruner(
      d,
      100 * 1024,
      (r) => pruned.push(r.removedFiles),
      (err) => {
        throw err;
      },
      60_000,
      () => clock,
    );
    file(d, "a", 200, 5);
    p.poke();
    await p.idle();
    expect(pruned).toEqual([1]);
    file(d, "b", 200, 5);
    clock += 30_000;
    p.poke(); // too soon
    await p.idle();
    expect(existsSync(join(d, "b"))).toBe(true);
    clock += 31_000;
    p.poke();
    await p.idle();
    expect(pruned).toEqual([1, 1]);
    expect(existsSync(join(d, "b"))).toBe(false);
  });
});
