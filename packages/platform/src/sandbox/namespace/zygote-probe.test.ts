/**
 * How the python zygote learns the pages a copy writes to (native/src/zygote.c: hexr_zygote_probe,
 * hexr_zygote_written), driven from a plain python3 through ctypes as the zygote drives it: a probe
 * forked from a process reports exactly the pages it wrote to after the fork (merged into ranges),
 * not the ones it only read, and its exit status reaches the parent; pinned, those pages are copied
 * into a child as it is forked.
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

  it("pins pages so that a fork copies them into the child at once, the others staying shared", () => {
    const out = python(`
region = mmap.mmap(-1, 16 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
region.write(b"x" * len(region))
base = ctypes.addressof(ctypes.c_char.from_buffer(region))
ranges = b"".join(v.to_bytes(8, "little") for v in (base + 2 * PAGE, 3 * PAGE, base + 9 * PAGE, PAGE))
lib.hexr_zygote_pin.argtypes = (ctypes.c_char_p, ctypes.c_uint32)
ring = lib.hexr_zygote_pin(ranges, 2)
err = ctypes.get_errno()
bad = lib.hexr_zygote_pin(ranges, 0)
def exclusive():  # pages of the region this process alone maps (pagemap bit 56), nothing written
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(base // PAGE * 8)
        data = f.read(16 * 8)
    return [i for i in range(16) if (int.from_bytes(data[i * 8:i * 8 + 8], "little") >> 56) & 1]
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.write(w, json.dumps(exclusive()).encode())
    os._exit(0)
os.close(w)
seen = json.loads(os.read(r, 4096))
os.waitpid(child, 0)
try:
    uring = open("/proc/sys/kernel/io_uring_disabled").read().strip()
except OSError:
    uring = "0"  # kernels before 6.6 cannot turn it off
print(json.dumps({"ring": ring, "err": err, "bad": bad, "child": seen, "uring": uring}))
`) as { ring: number; err: number; bad: number; child: number[]; uring: string };
    expect(out.bad).toBe(-1);
    if (out.uring === "0") {
      expect(out.ring).toBeGreaterThan(2);
      expect(out.child).toEqual([2, 3, 4, 9]);
    } else {
      // io_uring turned off on this machine: the zygote's copies populate those pages instead.
      expect(out.ring).toBe(-1);
      expect(out.err).toBeGreaterThan(0);
      expect(out.child).toEqual([]);
    }
  });
});
