/**
 * How the python zygote learns the pages a copy writes to (native/src/zygote.c: hexr_zygote_probe,
 * hexr_zygote_written), driven from a plain python3 through ctypes as the zygote drives it: a probe
 * forked from a process reports exactly the pages it wrote to after the fork (merged into ranges),
 * not the ones it only read, and its exit status reaches the parent.
 */

import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { ZYGOTE_LIBRARY_PATH } from "../../native.js";

/** Runs `body` (python, indented 0) after loading the library as `lib`; returns its stdout's JSON. */
function python(body: string): unknown {
  const script = `import ctypes, json, mmap, os
lib = ctypes.PyDLL(${JSON.stringify(ZYGOTE_LIBRARY_PATH)}, use_errno=True)
PAGE = mmap.PAGESIZE
${body}`;
  const r = spawnSync("/usr/bin/python3", ["-c", script], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

/** Forks a probe that writes to the given pages of a 64-page private mapping (all present before). */
const PROBE = (writes: string, exitStatus = 0) => `
region = mmap.mmap(-1, 64 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
region.write(b"x" * len(region))  # every page present, and shared with the probe after the fork
base = ctypes.addressof(ctypes.c_char.from_buffer(region))
r, w = os.pipe()
probed = lib.hexr_zygote_probe()
if probed == 1:
    os.close(r)
    for page in ${writes}:
        region[page * PAGE] = 1
    for page in (20, 21, 40):
        region[page * PAGE]  # read only
    os._exit(${exitStatus} or (0 if lib.hexr_zygote_written(w) == 0 else 3))
os.close(w)
data = b"".join(iter(lambda: os.read(r, 65536), b""))
pairs = [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]
ranges = [(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]
inside = [((s - base) // PAGE, n // PAGE) for s, n in ranges if base <= s < base + 64 * PAGE]
print(json.dumps({"probed": probed, "bytes": len(data), "inside": inside}))
`;

describe("the zygote's probe", () => {
  it("reports the pages its copy wrote to as merged ranges, and none it only read", () => {
    const out = python(PROBE("(3, 10, 11, 12, 63)")) as { probed: number; bytes: number; inside: [number, number][] };
    expect(out.probed).toBe(0);
    expect(out.bytes % 16).toBe(0);
    // (first page, pages): 10-12 merged; 20, 21 and 40 (read) absent, as is every page not written.
    expect(out.inside).toEqual([
      [3, 1],
      [10, 3],
      [63, 1],
    ]);
  });

  it("reports nothing of a region its copy did not write to", () => {
    const out = python(PROBE("()")) as { probed: number; inside: unknown[] };
    expect(out).toMatchObject({ probed: 0, inside: [] });
  });

  it("tells the parent when the probe failed", () => {
    const out = python(PROBE("(3,)", 2)) as { probed: number; bytes: number };
    expect(out).toMatchObject({ probed: -1, bytes: 0 });
  });
});
