import { isHexrError } from "@hexr/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readBootId, readProcStat } from "../../../platform/src/identity/attestation/proc.js";
import { processSelectors } from "../../../platform/src/identity/attestation/unix-attestor.js";
import { startTestPlatform, type TestPlatform } from "../../../platform/src/test-support/platform.js";
import { defaultIdentity } from "../identity/default.js";
import { sandbox, SandboxClient } from "./index.js";

const AGENT = "spiffe://hexr.local/agent/acme/analyst/main";

let p: TestPlatform;
let acmeKey: string;

beforeAll(async () => {
  p = await startTestPlatform({ config: { sandbox: { namespace: { warmPool: 1 } } } });
  expect((await p.api("/api/v1/tenants", { method: "POST", json: { name: "acme" } })).status).toBe(201);
  const key = await p.api("/api/v1/keys", { method: "POST", json: { name: "ops", scope: "tenant", tenant: "acme" } });
  acmeKey = ((await key.json()) as { key: string }).key;
});
afterAll(async () => {
  await p?.dispose();
});

async function errorCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (isHexrError(err)) return err.code;
    throw err;
  }
  return "no error";
}

describe("sandbox (SDK)", () => {
  it("works with no configuration: the agent's attested identity gets a JWT-SVID for the sandbox", async () => {
    const { startTime } = await readProcStat(process.pid);
    const entry = await p.api("/api/v1/identity/entries", {
      method: "POST",
      json: { spiffeId: AGENT, selectors: processSelectors(process.pid, startTime, readBootId()), createdBy: "test" },
    });
    expect(entry.status).toBe(201);
    const saved = { ...process.env };
    process.env["SPIFFE_ENDPOINT_SOCKET"] = `unix://${p.info.workloadSocket}`;
    process.env["HEXR_PLATFORM_URL"] = p.url;
    delete process.env["HEXR_API_KEY"];
    delete process.env["HEXR_TRUST_DOMAIN"];
    try {
      expect(await sandbox.isEnabled()).toBe(true);
      const r = await sandbox.exec("import os; print(os.environ['MY_VAR'])", { envVars: { MY_VAR: "hello" } });
      expect(r).toMatchObject({ stdout: "hello\n", stderr: "", exitCode: 0, ok: true, output: "hello\n" });
      expect(r.durationMs).toBeGreaterThan(0);
      const failed = await sandbox.exec("1/0");
      expect(failed.ok).toBe(false);
      expect(failed.exitCode).toBe(1);
      expect(failed.stderr).toContain("ZeroDivisionError");
      const sh = await sandbox.exec("whoami && cat /etc/os-release | head -n 1", { language: "shell", timeout: 10 });
      expect(sh.stdout).toMatch(/^nobody\nPRETTY_NAME=/);
    } finally {
      defaultIdentity().close();
      process.env = saved;
    }
  });

  it("uses an API key when given one, and a tenant's route when asked", async () => {
    const c = new SandboxClient({ platformUrl: p.url, apiKey: acmeKey, tenant: "acme" });
    const r = await c.exec("console.log([1, 2, 3].map((x) => x * 2).join(','))", { language: "javascript" });
    expect(r.stdout).toBe("2,4,6\n");
    const t = await c.exec("import time\ntime.sleep(3)", { timeout: 0.5 });
    expect(t).toMatchObject({ exitCode: 124, ok: false, timedOut: true });
  });

  it("throws the service's typed error for a refused request", async () => {
    const c = new SandboxClient({ platformUrl: p.url, apiKey: acmeKey });
    expect(await errorCode(c.exec("1", { packages: ["numpy"] }))).toBe("sandbox.packages_not_configured");
    expect(await errorCode(c.exec(""))).toBe("request.validation_failed");
    const other = new SandboxClient({ platformUrl: p.url, apiKey: acmeKey, tenant: "someone-else" });
    expect(await errorCode(other.exec("1"))).toBe("auth.forbidden");
    const bad = new SandboxClient({ platformUrl: p.url, apiKey: "hexr_not_a_real_key" });
    expect(await errorCode(bad.exec("1"))).toBe("auth.invalid_api_key");
  });

  it("isEnabled is false, never an exception, when the service cannot be used", async () => {
    expect(await new SandboxClient({}, {}).isEnabled()).toBe(false); // nothing configured
    expect(await new SandboxClient({ platformUrl: "http://127.0.0.1:9", apiKey: "k" }, {}).isEnabled()).toBe(false); // unreachable
    expect(await new SandboxClient({ platformUrl: p.url, apiKey: "wrong" }, {}).isEnabled()).toBe(false); // refused
    expect(await errorCode(new SandboxClient({}, {}).exec("1"))).toBe("sandbox.not_configured");
    expect(await errorCode(new SandboxClient({ platformUrl: p.url }, {}).exec("1"))).toBe("sandbox.not_configured");
    expect(await errorCode(new SandboxClient({ platformUrl: "http://127.0.0.1:9", apiKey: "k" }, {}).exec("1"))).toBe(
      "sandbox.unreachable",
    );
  });

  it("cancels an execution through its signal", async () => {
    const c = new SandboxClient({ platformUrl: p.url, apiKey: acmeKey });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    expect(await errorCode(c.exec("sleep 20", { language: "shell", signal: ac.signal }))).toBe("sandbox.aborted");
  });
});
