import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hexr, startUp, type RunningPlatform } from "../../../../test/helpers/cli.js";
import { parseDuration } from "./identity.js";

const ID = "spiffe://hexr.local/agent/acme-corp/researcher/main";

describe("parseDuration", () => {
  it("reads seconds and unit suffixes, and rejects anything else", () => {
    expect(parseDuration("300", "--ttl")).toBe(300);
    expect(parseDuration("90s", "--ttl")).toBe(90);
    expect(parseDuration("15m", "--ttl")).toBe(900);
    expect(parseDuration("1h", "--ttl")).toBe(3600);
    expect(parseDuration("2d", "--ttl")).toBe(172_800);
    for (const bad of ["", "0", "-5", "1.5h", "1w", "abc", "1h30m"])
      expect(() => parseDuration(bad, "--ttl")).toThrow(/--ttl must be/);
  });
});

describe("hexr identity", () => {
  let dataDir: string;
  let up: RunningPlatform;
  const run = (...args: string[]) => hexr([...args, "--data-dir", dataDir]);

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "hexr-cli-identity-"));
    up = await startUp(dataDir);
    expect(run("tenants", "create", "acme-corp").code).toBe(0);
  });
  afterAll(() => {
    if (up.child.exitCode === null) up.child.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("creates, lists, shows and deletes registration entries", () => {
    const created = run(
      "identity",
      "entries",
      "create",
      "--spiffe-id",
      ID,
      "--selector",
      "unix:uid:1000",
      "--selector",
      "hexr:agent:researcher",
      "--ttl",
      "15m",
      "--json",
    );
    expect(created.code, created.stderr).toBe(0);
    const entry = JSON.parse(created.stdout) as { id: string; tenant: string; x509SvidTtlSeconds: number; selectors: unknown[] };
    expect(entry).toMatchObject({ tenant: "acme-corp", x509SvidTtlSeconds: 900 });
    expect(entry.selectors).toEqual([
      { type: "hexr", value: "agent:researcher" },
      { type: "unix", value: "uid:1000" },
    ]);

    const list = run("identity", "entries", "list", "--json");
    expect((JSON.parse(list.stdout) as Array<{ id: string }>).map((e) => e.id)).toEqual([entry.id]);
    const table = run("identity", "entries", "list", "--tenant", "acme-corp");
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+SPIFFEID\s+SELECTORS/);
    expect(table.stdout).toMatch(
      new RegExp(`\\n${entry.id}\\s+${ID}\\s+hexr:agent:researcher,unix:uid:1000\\s+acme-corp\\s+900s\\s+300s\\s+-\\n`),
    );
    expect(JSON.parse(run("identity", "entries", "get", entry.id, "--json").stdout)).toEqual(JSON.parse(created.stdout));

    const human = run("identity", "entries", "delete", entry.id);
    expect(human.code).toBe(0);
    expect(human.stdout).toBe(`deleted entry ${entry.id}\n`);
    const again = run("identity", "entries", "delete", entry.id);
    expect(again.code).toBe(4);
    expect(again.stderr).toBe(`hexr: registration entry '${entry.id}' does not exist\n`);
    expect(run("identity", "entries", "list").stdout).toBe("(none)\n");
  });

  it("gives one-line errors with exit codes by kind, JSON errors with --json", () => {
    const args = ["identity", "entries", "create", "--spiffe-id", ID, "--selector", "unix:uid:7"];
    expect(run(...args).code).toBe(0);
    const dup = run(...args);
    expect(dup.code).toBe(5);
    expect(dup.stderr).toMatch(/^hexr: an identical entry exists already \([0-9a-f]{32}\)\n$/);

    const badSelector = run("identity", "entries", "create", "--spiffe-id", ID, "--selector", "nocolon", "--json");
    expect(badSelector.code).toBe(2);
    expect(JSON.parse(badSelector.stderr).error.code).toBe("identity.invalid_selector");

    const noSelector = run("identity", "entries", "create", "--spiffe-id", ID);
    expect(noSelector.code).toBe(2);
    expect(noSelector.stderr).toContain("give at least one --selector");

    const badTtl = run("identity", "entries", "create", "--spiffe-id", ID, "--selector", "a:b", "--ttl", "soon");
    expect(badTtl.code).toBe(2);
    expect(badTtl.stderr).toBe("hexr: --ttl must be a positive duration such as 300, 90s, 15m, 1h or 2d (got 'soon')\n");

    const foreign = run("identity", "entries", "create", "--spiffe-id", "spiffe://evil.org/agent/a/b/c", "--selector", "a:b");
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toContain("not in this platform's trust domain hexr.local");

    expect(run("identity", "entries", "create", "--selector", "a:b").code).toBe(2); // --spiffe-id is required
    expect(run("identity", "entries", "list", "--tenant", "nobody").code).toBe(4);
    expect(run("identity", "authority", "rotate", "sideways").code).toBe(2);
  });

  it("has --help on every command", () => {
    const help = hexr(["identity", "entries", "create", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--spiffe-id <id>");
    expect(help.stdout).toContain("--selector <type:value>");
    expect(hexr(["identity", "--help"]).stdout).toContain("entries");
  });

  it("prints the bundle and the CA status, and rotates on request", () => {
    const bundle = JSON.parse(run("identity", "bundle").stdout) as { keys: Array<{ use: string }>; spiffe_sequence: number };
    expect(bundle.keys.map((k) => k.use).sort()).toEqual(["jwt-svid", "x509-svid"]);
    const prepared = run("identity", "authority", "rotate", "prepare", "--json");
    expect(prepared.code, prepared.stderr).toBe(0);
    expect(JSON.parse(prepared.stdout).sequence).toBe(bundle.spiffe_sequence + 1);
    const status = run("identity", "authority", "status");
    expect(status.stdout).toMatch(/prepared/);
    expect(status.stdout).toMatch(/active/);
    expect(run("identity", "authority", "rotate", "activate").code).toBe(0);
    const early = run("identity", "authority", "rotate", "retire");
    expect(early.code).toBe(6);
    expect(early.stderr).toMatch(/^hexr: old CA slots still back unexpired SVIDs; they can be retired at \d{4}-/);
  });
});
