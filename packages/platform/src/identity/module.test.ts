import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { PlatformConfig } from "../config/schema.js";
import { startTestPlatform } from "../test-support/platform.js";
import { configuredIssuer } from "./module.js";

// Identity tests do not exercise the code sandbox; its background probes only slow start and stop.
const NO_SANDBOX = { sandbox: { enabled: false } };

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("identity module in the platform", () => {
  it("creates a 0600 master key, and keeps the same CA across a platform restart", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "hexr-identity-module-"));
    dirs.push(dataDir);
    const first = await startTestPlatform({ dataDir, config: NO_SANDBOX });
    const bundle = first.identity.authority.bundle();
    const svid = await first.identity.authority.mintX509Svid("spiffe://hexr.local/agent/acme/bot/main");
    await first.dispose();
    expect(statSync(join(dataDir, "master.key")).mode & 0o777).toBe(0o600);

    const second = await startTestPlatform({ dataDir, config: NO_SANDBOX });
    try {
      expect(second.identity.authority.bundle()).toEqual(bundle);
      expect(second.identity.authority.verifyX509Svid(svid.certChainDer).spiffeId).toBe(
        "spiffe://hexr.local/agent/acme/bot/main",
      );
    } finally {
      await second.dispose();
    }
  });

  it("refuses to start when the master key no longer opens the CA keys, naming the cause", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "hexr-identity-module-"));
    dirs.push(dataDir);
    const first = await startTestPlatform({ dataDir, config: NO_SANDBOX });
    await first.dispose();
    const original = readFileSync(join(dataDir, "master.key"));
    writeFileSync(join(dataDir, "master.key"), randomBytes(32).toString("base64") + "\n", { mode: 0o600 });
    await expect(startTestPlatform({ dataDir, config: NO_SANDBOX })).rejects.toMatchObject({
      code: "identity.ca_keys_unreadable",
    });
    // Putting the right key back recovers: nothing was overwritten.
    writeFileSync(join(dataDir, "master.key"), original, { mode: 0o600 });
    const again = await startTestPlatform({ dataDir, config: NO_SANDBOX });
    await again.dispose();
  });

  it("uses the configured trust domain and exposes readiness", async () => {
    const p = await startTestPlatform({ config: { ...NO_SANDBOX, trustDomain: "prod.example" } });
    try {
      expect(p.identity.authority.trustDomain).toBe("prod.example");
      const svid = await p.identity.authority.mintJwtSvid("spiffe://prod.example/agent/a/b/c", ["x"]);
      await expect(p.identity.authority.validateJwtSvid(svid.token, "x")).resolves.toMatchObject({
        spiffeId: "spiffe://prod.example/agent/a/b/c",
      });
      expect(p.identity.ready!()).toBe(true);
      const ready = (await (await fetch(`${p.url}/readyz`)).json()) as { checks: Record<string, string> };
      expect(ready.checks["identity"]).toBe("ok");
    } finally {
      await p.dispose();
    }
  });
});

describe("configuredIssuer", () => {
  const cfg = (o: Record<string, unknown>) => PlatformConfig.parse({ dataDir: "/tmp/x", ...o });
  it("prefers publicUrl, else host:port, and waits for the listen address when the port is 0", () => {
    expect(configuredIssuer(cfg({ publicUrl: "https://hexr.example.com" }))).toBe("https://hexr.example.com");
    expect(configuredIssuer(cfg({ port: 7420 }))).toBe("http://127.0.0.1:7420");
    expect(configuredIssuer(cfg({ host: "0.0.0.0", port: 8080 }))).toBe("http://127.0.0.1:8080");
    expect(configuredIssuer(cfg({ host: "::1", port: 8080 }))).toBe("http://[::1]:8080");
    expect(configuredIssuer(cfg({ port: 0 }))).toBeUndefined();
  });

  it("rejects inconsistent identity settings with the dotted path", () => {
    const r = PlatformConfig.safeParse({ dataDir: "/tmp/x", identity: { x509SvidTtlSeconds: 7200, maxSvidTtlSeconds: 3600 } });
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => i.path.join("."))).toContain("identity.x509SvidTtlSeconds");
    const r2 = PlatformConfig.safeParse({ dataDir: "/tmp/x", identity: { caTtlSeconds: 3600 } });
    expect(r2.error!.issues.map((i) => i.path.join("."))).toContain("identity.caTtlSeconds");
    expect(PlatformConfig.safeParse({ dataDir: "/tmp/x", identity: { nope: 1 } }).success).toBe(false);
  });
});
