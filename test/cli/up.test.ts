import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hexr, startUp, waitForExit, type RunningPlatform } from "../helpers/cli.js";

describe("hexr up and the management CLI", () => {
  let dataDir: string;
  let up: RunningPlatform;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "hexr-cli-"));
    up = await startUp(dataDir);
  });
  afterAll(async () => {
    if (up.child.exitCode === null) up.child.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("writes platform.json and a 0600 admin key", () => {
    expect(statSync(join(dataDir, "admin.key")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, "platform.json")).mode & 0o777).toBe(0o600);
    expect(up.adminKey).toMatch(/^hexr_/);
  });

  it("manages tenants and keys with --json output and the local admin key", () => {
    const created = hexr(["tenants", "create", "acme-corp", "--display-name", "Acme", "--json", "--data-dir", dataDir]);
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ name: "acme-corp", displayName: "Acme" });

    const list = hexr(["tenants", "list", "--json", "--data-dir", dataDir]);
    expect(JSON.parse(list.stdout).map((t: { name: string }) => t.name)).toEqual(["acme-corp"]);

    const key = hexr(["keys", "create", "--tenant", "acme-corp", "--json", "--data-dir", dataDir]);
    expect(key.code).toBe(0);
    const { id, key: secret } = JSON.parse(key.stdout) as { id: string; key: string };

    // The tenant key reaches the platform through HEXR_PLATFORM_URL + HEXR_API_KEY, like a remote one.
    const asTenant = hexr(["tenants", "get", "acme-corp", "--json"], { HEXR_PLATFORM_URL: up.url, HEXR_API_KEY: secret });
    expect(asTenant.code).toBe(0);

    const keys = hexr(["keys", "list", "--json", "--data-dir", dataDir]);
    expect(keys.stdout).not.toContain(secret.slice(22));
    expect(hexr(["keys", "revoke", id, "--data-dir", dataDir]).code).toBe(0);
    const revoked = hexr(["tenants", "get", "acme-corp"], { HEXR_PLATFORM_URL: up.url, HEXR_API_KEY: secret });
    expect(revoked.code).toBe(77);
    expect(revoked.stderr).toContain("unknown, revoked or expired");
  });

  it("reports errors in one line with an exit code per kind", () => {
    const dup = hexr(["tenants", "create", "acme-corp", "--data-dir", dataDir]);
    expect(dup.code).toBe(5);
    expect(dup.stderr.trim()).toBe("hexr: tenant 'acme-corp' already exists");

    const bad = hexr(["tenants", "create", "Not_A_Label", "--json", "--data-dir", dataDir]);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stderr).error.code).toBe("request.validation_failed");

    const missing = hexr(["tenants", "get", "nobody", "--data-dir", dataDir]);
    expect(missing.code).toBe(4);

    const usage = hexr(["keys", "create", "--data-dir", dataDir]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--admin or --tenant");

    const noPlatform = hexr(["tenants", "list", "--data-dir", join(dataDir, "elsewhere")]);
    expect(noPlatform.code).toBe(69);
    expect(noPlatform.stderr).toContain("hexr up");

    expect(hexr(["no-such-command"]).code).toBe(2);
    expect(hexr(["tenants", "--help"]).stdout).toContain("create");
  });

  it("refuses a second platform on the same data dir", () => {
    const second = hexr(["up", "--data-dir", dataDir, "--port", "0", "--log-format", "json"]);
    expect(second.code).toBe(5);
    expect(second.stderr).toContain("already running");
  });

  it("validates configuration with the dotted path of the problem", () => {
    const ok = hexr(["config", "validate", "--json"], { HEXR_PORT: "8000", HEXR_HOME: dataDir });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ valid: true, config: { port: 8000 }, sources: { port: "env" } });
    const bad = hexr(["config", "validate"], { HEXR_LOG_LEVEL: "shouty" });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("log.level (from HEXR_LOG_LEVEL)");
  });

  it("shuts down gracefully on SIGTERM and removes platform.json", async () => {
    up.child.kill("SIGTERM");
    expect(await waitForExit(up.child)).toBe(0);
    expect(existsSync(join(dataDir, "platform.json"))).toBe(false);
    expect(up.output()).toContain('"msg":"stopped"');
  });
});

describe("durability", () => {
  it("loses no acknowledged write when hexr up is killed with SIGKILL mid-write", { timeout: 120_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "hexr-kill-"));
    try {
      const up = await startUp(dataDir);
      const acked: string[] = [];
      const failures: string[] = [];
      let n = 0;
      let stop = false;
      const writer = async () => {
        while (!stop) {
          const name = `t-${n++}`;
          const res = await fetch(`${up.url}/api/v1/tenants`, {
            method: "POST",
            headers: { authorization: `Bearer ${up.adminKey}`, "content-type": "application/json" },
            body: JSON.stringify({ name }),
          }).catch(() => undefined);
          if (res?.status === 201) acked.push(name);
          else if (!res) return;
          else failures.push(`${res.status} ${await res.text()}`);
        }
      };
      const writers = Array.from({ length: 4 }, writer);
      const deadline = Date.now() + 60_000;
      while (acked.length < 150) {
        if (failures.length > 0 || Date.now() > deadline) {
          throw new Error(`writes failed before the kill: ${failures.slice(0, 3).join("; ")}\n${up.output()}`);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      up.child.kill("SIGKILL");
      stop = true;
      await Promise.all(writers);
      await waitForExit(up.child);

      // Restart on the same data dir: the stale platform.json of the killed process must not block it.
      const again = await startUp(dataDir);
      const res = await fetch(`${again.url}/api/v1/tenants?limit=1000`, {
        headers: { authorization: `Bearer ${again.adminKey}` },
      });
      const names = new Set(((await res.json()) as { items: Array<{ name: string }> }).items.map((t) => t.name));
      const lost = acked.filter((a) => !names.has(a));
      expect(acked.length).toBeGreaterThanOrEqual(150);
      expect(lost).toEqual([]);
      again.child.kill("SIGTERM");
      await waitForExit(again.child);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
