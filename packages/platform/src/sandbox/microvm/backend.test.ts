import { isHexrError } from "@hexr/core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureMicrovmImage, TEST_MICROVM_IMAGE } from "../test-support/backends.js";
import type { BackendExecRequest } from "../types.js";
import { MicrovmBackend } from "./backend.js";

const MiB = 1024 * 1024;
const limits = { memoryBytes: 96 * MiB, pids: 32, cpus: 1, tmpfsBytes: 8 * MiB, maxOutputBytes: 4096 };
const req = (code: string, more: Partial<BackendExecRequest> = {}): BackendExecRequest => ({
  id: "t",
  code,
  language: "python",
  timeoutMs: 30_000,
  installTimeoutMs: 0,
  env: {},
  ...more,
});

async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isHexrError(err)) return err.code;
    throw err;
  }
  return "no error";
}

it("without an image, the microvm backend is unavailable and says to run the setup", async () => {
  const empty = mkdtempSync(join(tmpdir(), "hexr-no-image-"));
  const b = new MicrovmBackend({ imageDir: empty, limits });
  const h = await b.start();
  await b.stop();
  rmSync(empty, { recursive: true, force: true });
  expect(h.available).toBe(false);
  expect(h.summary).toContain("hexr sandbox setup");
  expect(h.checks.find((c) => c.name === "image")).toMatchObject({ ok: false });
  expect(await errorCode(b.exec(req("print(1)")))).toBe("sandbox.backend_unavailable");
});

describe("microvm backend on this machine", () => {
  const b = new MicrovmBackend({ imageDir: TEST_MICROVM_IMAGE, limits, poolSize: 1 });
  beforeAll(async () => {
    await ensureMicrovmImage(); // builds it the way `hexr sandbox setup` does when missing
    const h = await b.start();
    expect(h.available, h.summary).toBe(true);
  }, 900_000);
  afterAll(async () => {
    await b.stop();
  });

  it("gives every clone fresh randomness and the host's time, though all come from one snapshot", async () => {
    const code = "import os, time, json\nprint(json.dumps([os.urandom(16).hex(), time.time()]))";
    const [a, c] = await Promise.all([b.exec(req(code)), b.exec(req(code))]);
    const [ra, ta] = JSON.parse(a.stdout) as [string, number];
    const [rc, tc] = JSON.parse(c.stdout) as [string, number];
    expect(ra).not.toBe(rc);
    for (const t of [ta, tc]) expect(Math.abs(t * 1000 - Date.now())).toBeLessThan(60_000);
  });

  it("passes exit codes, stderr and the environment through", async () => {
    const r = await b.exec(
      req("echo out; echo err >&2; echo $GREETING; exit 9", { language: "shell", env: { GREETING: "hello vm" } }),
    );
    expect(r).toMatchObject({ stdout: "out\nhello vm\n", stderr: "err\n", exitCode: 9, timedOut: false, oomKilled: false });
  });

  it("caps output in the guest and says how much was dropped", async () => {
    const r = await b.exec(req("import sys\nsys.stdout.write('z' * 10000)"));
    expect(r.truncated.stdout).toBe(true);
    expect(r.stdout).toBe("z".repeat(4096) + "\n[hexr: stdout truncated at 4096 bytes, 5904 more bytes dropped]\n");
  });

  it("refuses what it cannot do: javascript and packages", async () => {
    expect(await errorCode(b.exec(req("console.log(1)", { language: "javascript" })))).toBe("sandbox.language_unavailable");
    expect(
      await errorCode(b.exec(req("import x", { install: { language: "python", sourceDir: "/nonexistent", items: ["x"] } }))),
    ).toBe("sandbox.packages_unsupported");
  });

  it("destroys the VM of a cancelled execution", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 1500);
    expect(await errorCode(b.exec(req("import time\ntime.sleep(60)", { signal: ac.signal })))).toBe("sandbox.aborted");
    const after = await b.exec(req("print('next')"));
    expect(after.stdout).toBe("next\n");
  });
});
