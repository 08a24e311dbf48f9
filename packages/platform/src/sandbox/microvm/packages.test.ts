import { HexrError } from "@hexr/core";
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HostSandbox } from "../host-sandbox.js";
import { buildWheel, worldReadableTempDir } from "../test-support/packages.js";
import { resolveWheels } from "./packages.js";

/** pip's resolver for the microvm backend (python packages from a local directory), confined on the host. */
describe("microvm python package resolution", () => {
  const parent = worldReadableTempDir("hexr-mvres-rt-");
  const wheels = worldReadableTempDir("hexr-mvres-wheels-");
  const resolver = new HostSandbox({ prefix: "hexr-mvres-", purpose: "python package resolution", runtimeParent: parent });
  const opts = { resolver, maxBytes: 64 * 1024 * 1024, timeoutMs: 60_000 };

  beforeAll(() => {
    buildWheel(wheels, { name: "hexr-app", module: "from hexr_lib import X\n", requires: ["hexr-lib>=1"] });
    buildWheel(wheels, { name: "hexr-lib", version: "0.9.0", module: "X = 0\n" });
    buildWheel(wheels, { name: "hexr-lib", version: "1.2.0", module: "X = 1\n" });
    buildWheel(wheels, { name: "hexr-broken", module: "", requires: ["hexr-absent"] });
  });
  afterAll(async () => {
    await resolver.stop();
    for (const d of [parent, wheels]) rmSync(d, { recursive: true, force: true });
  });

  const errorOf = async (p: Promise<unknown>) => {
    const e = await p.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(HexrError);
    return e as HexrError;
  };

  it("picks the wheels pip would install: the newest matching version and the dependencies, as host paths", async () => {
    const got = await resolveWheels(wheels, ["hexr-app"], opts);
    expect(got.map((p) => basename(p)).sort()).toEqual(["hexr_app-1.0.0-py3-none-any.whl", "hexr_lib-1.2.0-py3-none-any.whl"]);
    for (const p of got) expect(p.startsWith(wheels + "/")).toBe(true);
    expect((await resolveWheels(wheels, ["hexr-lib<1"], opts)).map((p) => basename(p))).toEqual([
      "hexr_lib-0.9.0-py3-none-any.whl",
    ]);
  });

  it("names the package nothing in the directory satisfies", async () => {
    const e = await errorOf(resolveWheels(wheels, ["hexr-broken"], opts));
    expect(e.code).toBe("sandbox.package_unavailable");
    expect(e.details).toMatchObject({ package: "hexr-absent" });
    expect(e.message).toContain(wheels);
  });

  it("never falls back to an unconfined pip: without bubblewrap it says what to install", async () => {
    const none = new HostSandbox({
      prefix: "hexr-mvres-none-",
      purpose: "python package resolution",
      runtimeParent: parent,
      bwrapPath: join(tmpdir(), "no-such-bwrap"),
    });
    try {
      const e = await errorOf(resolveWheels(wheels, ["hexr-app"], { ...opts, resolver: none }));
      expect(e.code).toBe("sandbox.package_install_failed");
      expect(e.message).toMatch(/apt-get install bubblewrap/);
    } finally {
      await none.stop();
    }
  });

  it("reads the directory as the sandbox user: one it cannot reach is an error that says so", async () => {
    // A directory only root may enter, holding a readable wheel directory.
    const locked = join(parent, "locked");
    mkdirSync(join(locked, "wheels"), { recursive: true });
    chmodSync(locked, 0o700);
    buildWheel(join(locked, "wheels"), { name: "hexr-hidden", module: "" });
    const r = resolveWheels(join(locked, "wheels"), ["hexr-hidden"], opts);
    if (process.getuid?.() === 0) {
      // The platform is root; the resolver runs as uid 65534, which root's 0700 directory keeps out.
      const e = await errorOf(r);
      expect(e.code).toBe("sandbox.package_install_failed");
      expect(e.message).toMatch(/cannot be read by the user pip's resolver runs as/);
    } else {
      // Without root the resolver runs as the platform's own user, the directory's owner.
      expect((await r).map((p) => basename(p))).toEqual(["hexr_hidden-1.0.0-py3-none-any.whl"]);
    }
  });
});
