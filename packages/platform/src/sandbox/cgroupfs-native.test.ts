/**
 * The addon's cgroup jobs (native/src/cgroupfs.c), which make and remove each sandbox's cgroup on a
 * worker thread: directories then writes in order, nothing half made left behind on a failure,
 * optional files skipped, per-directory results from rmdirs, and typed errors for bad arguments. Run
 * on an ordinary directory: like cgroupfs, its files are written only if they exist (no O_CREAT).
 */

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { nativeBinding } from "../native.js";

describe("native cgroup jobs", () => {
  const native = nativeBinding();
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), "hexr-cgroupfs-"));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it("makes every directory, then writes each file in order", async () => {
    const [a, b] = [join(root, "a"), join(root, "b")];
    // Files that exist before the writes stand in for the ones cgroupfs creates with a directory.
    const parent = join(root, "limits");
    mkdirSync(parent);
    const f = join(parent, "memory.max");
    writeFileSync(f, "max");
    await native.cgroupMake([a, b], [f, f], ["1", "268435456"], [false, false]);
    expect([existsSync(a), existsSync(b)]).toEqual([true, true]);
    expect(readFileSync(f, "utf8")).toBe("268435456"); // the last write wins: they ran in order
  });

  it("skips a missing optional file and fails on a missing required one, leaving nothing made", async () => {
    const [a, b] = [join(root, "a"), join(root, "b")];
    await native.cgroupMake([a], [join(a, "memory.swap.max")], ["0"], [true]);
    expect(existsSync(a)).toBe(true);

    const missing = join(root, "no-such-file");
    const err = await native.cgroupMake([b], [missing], ["1"], [false]).catch((e: unknown) => e as Error & { errno: number });
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toBe(`write ${missing}: No such file or directory`);
    expect(err.errno).toBe(constants.errno.ENOENT);
    expect(existsSync(b)).toBe(false);
  });

  it("says which directory it could not make, and removes the ones it had made", async () => {
    const a = join(root, "a");
    const taken = join(root, "taken");
    mkdirSync(taken);
    const err = await native.cgroupMake([a, taken], [], [], []).catch((e: unknown) => e as Error & { errno: number });
    expect(err.message).toBe(`mkdir ${taken}: File exists`);
    expect(err.errno).toBe(constants.errno.EEXIST);
    expect(existsSync(a)).toBe(false);
    expect(existsSync(taken)).toBe(true); // not its own: left alone
  });

  it("removes directories and reports each one's result", async () => {
    const [a, full] = [join(root, "a"), join(root, "full")];
    mkdirSync(a);
    mkdirSync(full);
    writeFileSync(join(full, "x"), "");
    const gone = join(root, "gone");
    expect(await native.rmdirs([a, full, gone])).toEqual([0, constants.errno.ENOTEMPTY, constants.errno.ENOENT]);
    expect([existsSync(a), existsSync(full)]).toEqual([false, true]);
  });

  it("refuses bad arguments with a typed error", () => {
    const bad = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as { code?: string }).code;
      }
      return "no error";
    };
    const call = native.cgroupMake as unknown as (...a: unknown[]) => unknown;
    expect(bad(() => call([root], ["f"], [], [false]))).toBe("hexr.native_bad_argument"); // values != files
    expect(bad(() => call([root], ["f"], ["1"], []))).toBe("hexr.native_bad_argument"); // flags != files
    expect(bad(() => call([1], [], [], []))).toBe("hexr.native_bad_argument");
    expect(bad(() => call([`${root}\0x`], [], [], []))).toBe("hexr.native_bad_argument");
    expect(
      bad(() =>
        call(
          Array.from({ length: 65 }, (_, i) => join(root, String(i))),
          [],
          [],
          [],
        ),
      ),
    ).toBe("hexr.native_bad_argument");
    expect(bad(() => (native.rmdirs as unknown as (...a: unknown[]) => unknown)("x"))).toBe("hexr.native_bad_argument");
  });
});
