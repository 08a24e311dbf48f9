import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hexr, startUp, waitForExit, type RunningPlatform } from "../../../../test/helpers/cli.js";
import { parseEnvPairs } from "./sandbox.js";

describe("hexr sandbox", { timeout: 120_000 }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), "hexr-cli-sandbox-"));
  let up: RunningPlatform;
  const run = (args: string[], input?: string) => hexr(["sandbox", ...args, "--data-dir", dataDir], {}, input);

  beforeAll(async () => {
    up = await startUp(dataDir);
  });
  afterAll(async () => {
    if (up?.child.exitCode === null) {
      up.child.kill("SIGTERM");
      await waitForExit(up.child);
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("runs python by default and passes the output through", () => {
    const r = run(["exec", "print('hello from the sandbox')"]);
    expect(r).toMatchObject({ code: 0, stdout: "hello from the sandbox\n", stderr: "" });
  });

  it("exits with the code's own exit status, stderr on stderr", () => {
    const r = run(["exec", "--language", "shell", "echo out; echo err >&2; exit 7"]);
    expect(r).toMatchObject({ code: 7, stdout: "out\n", stderr: "err\n" });
  });

  it("reads the code from stdin with '-' and from a file with --file", () => {
    expect(run(["exec", "-l", "shell", "-"], "echo from-stdin\n")).toMatchObject({ code: 0, stdout: "from-stdin\n" });
    const file = join(dataDir, "script.js");
    writeFileSync(file, "console.log(21 * 2)\n");
    expect(run(["exec", "-l", "javascript", "--file", file])).toMatchObject({ code: 0, stdout: "42\n" });
  });

  it("passes --env and prints the whole result with --json", () => {
    const r = run([
      "exec",
      "--json",
      "--env",
      "GREETING=hi=there",
      "-e",
      "WHO=me",
      "import os; print(os.environ['GREETING'], os.environ['WHO'])",
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      stdout: "hi=there me\n",
      exitCode: 0,
      ok: true,
      output: "hi=there me\n",
      backend: "namespace",
    });
  });

  it("kills at --timeout: exit 124 and a note", () => {
    const r = run(["exec", "--timeout", "0.5", "-l", "shell", "sleep 10"]);
    expect(r.code).toBe(124);
    expect(r.stderr).toContain("[hexr: execution killed after the timeout of 0.5 s]");
    const j = run(["exec", "--json", "--timeout", "0.5", "-l", "shell", "sleep 10"]);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ exitCode: 124, timedOut: true });
  });

  it.each([
    [["exec", "--language", "cobol", "x"], "--language must be one of"],
    [["exec", "--timeout", "soon", "x"], "--timeout must be a positive number"],
    [["exec", "--env", "NOEQUALS", "x"], "--env takes NAME=VALUE"],
    [["exec"], "no code given"],
    [["exec", "--env", "1BAD=x", "print(1)"], "envVars"],
  ])("refuses %j with a one-line message and exit 2", (args, message) => {
    const r = run(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("reports refusals of the service as JSON with --json", () => {
    const r = run(["exec", "--json", "--package", "numpy", "import numpy"]);
    expect(r.code).toBe(6);
    expect(JSON.parse(r.stderr)).toMatchObject({ error: { code: "sandbox.packages_not_configured" } });
  });

  it("says so when no platform runs", () => {
    const empty = mkdtempSync(join(tmpdir(), "hexr-cli-empty-"));
    const r = hexr(["sandbox", "exec", "print(1)", "--data-dir", empty]);
    expect(r.code).toBe(69);
    expect(r.stderr).toContain("hexr up");
    rmSync(empty, { recursive: true, force: true });
  });

  it("doctor probes this machine and reports what works", () => {
    const r = hexr(["sandbox", "doctor", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      backend: string;
      backends: Array<{ backend: string; available: boolean; checks: Array<{ name: string; ok: boolean }> }>;
    };
    expect(report.backend).toBe("namespace");
    const ns = report.backends.find((b) => b.backend === "namespace")!;
    expect(ns.available).toBe(true);
    expect(ns.checks.filter((c) => !c.ok)).toEqual([]);
    const text = hexr(["sandbox", "doctor"]);
    expect(text.stdout).toContain("namespace: OK");
    expect(text.stdout).toContain("executions run on: namespace");
    expect(text.stdout).not.toContain("packages:"); // no package source configured
  });

  it("doctor says when a configured package index cannot be reached (a warning: executions without packages still run)", () => {
    const config = join(dataDir, "doctor-packages.json");
    writeFileSync(
      config,
      JSON.stringify({ sandbox: { backend: "namespace", packages: { python: { indexUrl: "http://127.0.0.1:9/simple/" } } } }),
    );
    const r = hexr(["sandbox", "doctor", "--json", "--config", config]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { packages: Array<{ name: string; ok: boolean; detail: string }> };
    expect(report.packages.map((c) => [c.name, c.ok])).toEqual([
      ["packages:python", false],
      ["packages:cache", true],
    ]);
    expect(report.packages[0]!.detail).toContain("cannot reach 127.0.0.1:9 from this host");
    const text = hexr(["sandbox", "doctor", "--config", config]);
    expect(text.stdout).toContain("packages: PROBLEMS - where executions' packages come from");
    expect(text.stdout).toMatch(/\[warn\] packages:python: cannot reach 127\.0\.0\.1:9/);
  });

  it("has --help for every command", () => {
    for (const cmd of [["exec"], ["doctor"], []]) {
      const r = hexr(["sandbox", ...cmd, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("Usage: hexr sandbox");
    }
  });
});

describe("parseEnvPairs", () => {
  it("splits at the first '='", () => {
    expect(parseEnvPairs(["A=1", "B=x=y", "C="])).toEqual({ A: "1", B: "x=y", C: "" });
  });
});
