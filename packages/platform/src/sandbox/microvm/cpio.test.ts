import { describe, expect, it } from "vitest";
import { writeCpio } from "./cpio.js";

/** Reads a newc archive back: the format the kernel unpacks. */
function readCpio(buf: Buffer): Array<{ name: string; mode: number; data: Buffer; rdev: [number, number] }> {
  const out = [];
  let off = 0;
  const pad = (n: number) => (n + 3) & ~3;
  for (;;) {
    expect(buf.toString("ascii", off, off + 6)).toBe("070701");
    const field = (i: number) => parseInt(buf.toString("ascii", off + 6 + i * 8, off + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = buf.toString("utf8", off + 110, off + 110 + nameSize - 1);
    const dataStart = pad(off + 110 + nameSize);
    const data = buf.subarray(dataStart, dataStart + size);
    const rdev: [number, number] = [field(9), field(10)];
    off = pad(dataStart + size);
    if (name === "TRAILER!!!") break;
    out.push({ name, mode, data, rdev });
  }
  expect(off).toBe(buf.length);
  return out;
}

describe("cpio newc writer", () => {
  it("writes directories, files, symlinks and device nodes the way the kernel reads them", () => {
    const buf = writeCpio([
      { type: "dir", path: ".", mode: 0o755 },
      { type: "dir", path: "/bin" },
      { type: "file", path: "bin/hello", data: Buffer.from("#!/bin/sh\necho hi\n"), mode: 0o755 },
      { type: "file", path: "odd", data: Buffer.from("x") },
      { type: "symlink", path: "bin/sh", target: "/bin/busybox" },
      { type: "chardev", path: "dev/console", major: 5, minor: 1 },
    ]);
    const entries = readCpio(buf);
    expect(entries.map((e) => e.name)).toEqual([".", "bin", "bin/hello", "odd", "bin/sh", "dev/console"]);
    expect(entries[0]!.mode).toBe(0o040755);
    expect(entries[2]).toMatchObject({ mode: 0o100755 });
    expect(entries[2]!.data.toString()).toBe("#!/bin/sh\necho hi\n");
    expect(entries[3]).toMatchObject({ mode: 0o100644 });
    expect(entries[4]!.mode).toBe(0o120777);
    expect(entries[4]!.data.toString()).toBe("/bin/busybox");
    expect(entries[5]).toMatchObject({ mode: 0o020600, rdev: [5, 1] });
  });
});
