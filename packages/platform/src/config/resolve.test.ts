import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveConfig } from "./resolve.js";

describe("resolveConfig", () => {
  let cwd: string;
  beforeEach(() => {
    cwd = mkdtempSync(join(tmpdir(), "hexr-config-"));
  });
  afterEach(() => rmSync(cwd, { recursive: true, force: true }));

  it("uses defaults when nothing is set", () => {
    const { config, file } = resolveConfig({ cwd, env: { HOME: "/home/u" } });
    expect(file).toBeUndefined();
    expect(config).toMatchObject({
      host: "127.0.0.1",
      port: 7420,
      trustDomain: "hexr.local",
      log: { level: "info", format: "auto" },
    });
    expect(config.dataDir).toMatch(/\.hexr$/);
  });

  it("layers flags over env over file over defaults", () => {
    writeFileSync(join(cwd, "hexr.config.yaml"), "port: 1000\nhost: 0.0.0.0\nlog:\n  level: warn\ntrustDomain: file.example\n");
    const { config, sources } = resolveConfig({
      cwd,
      env: { HEXR_PORT: "2000", HEXR_LOG_LEVEL: "debug", HEXR_HOME: "data" },
      flags: { port: 3000 },
    });
    expect(config.port).toBe(3000);
    expect(config.log.level).toBe("debug");
    expect(config.host).toBe("0.0.0.0");
    expect(config.trustDomain).toBe("file.example");
    expect(config.dataDir).toBe(join(cwd, "data"));
    expect(sources).toMatchObject({ port: "flag", "log.level": "env", host: "file" });
  });

  it("reads JSON config files too, and an explicit --config path", () => {
    writeFileSync(join(cwd, "custom.json"), JSON.stringify({ port: 9999 }));
    expect(resolveConfig({ cwd, env: {}, configFile: "custom.json" }).config.port).toBe(9999);
    expect(() => resolveConfig({ cwd, env: {}, configFile: "missing.json" })).toThrow("does not exist");
  });

  it("names the dotted path of an unknown key", () => {
    writeFileSync(join(cwd, "hexr.config.json"), JSON.stringify({ log: { levle: "info" } }));
    expect(() => resolveConfig({ cwd, env: {} })).toThrow(/log\.levle .*unknown key/);
  });

  it("names the path and the source of a bad value", () => {
    expect(() => resolveConfig({ cwd, env: { HEXR_PORT: "99999" } })).toThrow(/port \(from HEXR_PORT\): .*65535/);
    expect(() => resolveConfig({ cwd, env: { HEXR_PORT: "abc" } })).toThrow(/port \(from HEXR_PORT\): expected a number/);
    expect(() => resolveConfig({ cwd, env: {}, flags: { "log.level": "loud" } })).toThrow(/log\.level \(from --log-level\)/);
    expect(() => resolveConfig({ cwd, env: { HEXR_TRUST_DOMAIN: "Bad.Domain" } })).toThrow(/trustDomain/);
    expect(() => resolveConfig({ cwd, env: { HEXR_DATABASE_URL: "mysql://x" } })).toThrow(/databaseUrl/);
  });

  it("reports a config file that does not parse", () => {
    writeFileSync(join(cwd, "hexr.config.json"), "{ nope");
    expect(() => resolveConfig({ cwd, env: {} })).toThrow(/not valid JSON/);
    writeFileSync(join(cwd, "hexr.config.json"), "[1,2]");
    expect(() => resolveConfig({ cwd, env: {} })).toThrow(/object at the top level/);
  });
});
