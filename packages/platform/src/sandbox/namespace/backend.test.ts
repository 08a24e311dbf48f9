import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildWheel, worldReadableTempDir } from "../test-support/packages.js";
import type { BackendExecRequest } from "../types.js";
import { NamespaceBackend } from "./backend.js";

const MiB = 1024 * 1024;
let seq = 0;

function request(over: Partial<BackendExecRequest>): BackendExecRequest {
  return {
    id: `t${++seq}`,
    code: "",
    language: "python",
    timeoutMs: 30_000,
    installTimeoutMs: 60_000,
    env: {},
    ...over,
  };
}

describe("namespace backend: packages fetched for one execution", () => {
  const backend = new NamespaceBackend({
    limits: { memoryBytes: 256 * MiB, pids: 128, cpus: 1, tmpfsBytes: 64 * MiB, maxOutputBytes: 64 * 1024 },
    warmPool: 1,
  });

  beforeAll(async () => {
    const health = await backend.start();
    expect(health.available, health.summary).toBe(true);
  });
  afterAll(() => backend.stop());

  it("installs python wheels from the execution's own directory, then removes it", async () => {
    const dir = worldReadableTempDir("hexr-fetched-py-");
    buildWheel(dir, { name: "fetchedone", module: "from fetchedtwo import TWO\nONE = 1 + TWO\n", requires: ["fetchedtwo"] });
    buildWheel(dir, { name: "fetchedtwo", module: "TWO = 2\n" });
    const r = await backend.exec(
      request({
        code: "import fetchedone\nprint(fetchedone.ONE)",
        install: { language: "python", sourceDir: dir, items: ["fetchedone"], origin: "fetched" },
      }),
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("3\n");
    expect(existsSync(dir)).toBe(false);
  });

  it("gives javascript a fetched node_modules tree in its private /tmp", async () => {
    const dir = worldReadableTempDir("hexr-fetched-js-");
    const pkg = join(dir, "node_modules", "fetched-js");
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "fetched-js", version: "1.0.0", main: "index.js" }));
    writeFileSync(join(pkg, "index.js"), "module.exports = (x) => `fetched ${x}`;\n");
    const r = await backend.exec(
      request({
        language: "javascript",
        code: "const f = require('fetched-js');\nconsole.log(f('ok'), require.resolve('fetched-js'));",
        install: { language: "javascript", sourceDir: dir, items: ["fetched-js"], origin: "fetched" },
      }),
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("fetched ok /tmp/.hexr/node/node_modules/fetched-js/index.js\n");
    expect(existsSync(dir)).toBe(false);
  });

  it("reports a fetched directory that lacks the requested package as an install failure", async () => {
    const dir = worldReadableTempDir("hexr-fetched-empty-");
    await expect(
      backend.exec(
        request({
          code: "print(1)",
          install: { language: "python", sourceDir: dir, items: ["notfetched"], origin: "fetched" },
        }),
      ),
    ).rejects.toMatchObject({ code: "sandbox.package_unavailable", details: { package: "notfetched" } });
    expect(existsSync(dir)).toBe(false);
  });
});
