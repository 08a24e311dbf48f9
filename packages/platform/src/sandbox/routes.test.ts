import type { ExecResult, SandboxStatus } from "@hexr/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../test-support/platform.js";

describe("sandbox over HTTP", () => {
  let p: TestPlatform;
  let acmeKey: string;
  let agentToken: (audience?: string) => Promise<string>;
  const SANDBOX_AUD = "spiffe://hexr.local/system/sandbox";

  beforeAll(async () => {
    p = await startTestPlatform({
      config: { sandbox: { maxCodeBytes: 4096, maxTimeoutSeconds: 10, namespace: { warmPool: 1 } } },
    });
    for (const name of ["acme", "other"])
      expect((await p.api("/api/v1/tenants", { method: "POST", json: { name } })).status).toBe(201);
    const key = await p.api("/api/v1/keys", { method: "POST", json: { name: "ops", scope: "tenant", tenant: "acme" } });
    acmeKey = ((await key.json()) as { key: string }).key;
    agentToken = async (audience = SANDBOX_AUD) =>
      (await p.identity.authority.mintJwtSvid("spiffe://hexr.local/agent/acme/analyst/main", [audience])).token;
  });
  afterAll(async () => {
    await p?.dispose();
  });

  const execute = (body: unknown, auth?: string | null, path = "/api/v1/sandbox/execute") =>
    p.api(path, { method: "POST", json: body, ...(auth !== undefined ? { auth } : {}) });

  it("reports its status to any authenticated caller", async () => {
    const res = await p.api("/api/v1/sandbox/status", { auth: acmeKey });
    expect(res.status).toBe(200);
    expect((await res.json()) as SandboxStatus).toEqual({
      enabled: true,
      backend: "namespace",
      languages: ["python", "shell", "javascript"],
    });
    expect((await p.api("/api/v1/sandbox/status", { auth: null })).status).toBe(401);
  });

  it("shows the doctor's checks to admins only", async () => {
    const res = await p.api("/api/v1/sandbox/doctor");
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      backends: Array<{ backend: string; available: boolean; checks: Array<{ name: string; ok: boolean }> }>;
    };
    expect(body.backends[0]).toMatchObject({ backend: "namespace", available: true });
    expect(body.backends[0]!.checks.find((c) => c.name === "probe")?.ok).toBe(true);
    expect((await p.api("/api/v1/sandbox/doctor", { auth: acmeKey })).status).toBe(403);
  });

  it("executes for an admin, a tenant key and an agent with a JWT-SVID addressed to the sandbox", async () => {
    for (const auth of [undefined, acmeKey, await agentToken()]) {
      const res = await execute({ code: "print(6 * 7)" }, auth);
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-store");
      const r = (await res.json()) as ExecResult;
      expect(r).toMatchObject({ stdout: "42\n", stderr: "", exitCode: 0, ok: true, output: "42\n", backend: "namespace" });
    }
  });

  it("executes on a tenant's route for members of that tenant only", async () => {
    const ok = await execute({ code: "echo ok", language: "shell" }, acmeKey, "/api/v1/tenants/acme/sandbox/execute");
    expect(ok.status).toBe(200);
    const other = await execute({ code: "echo no", language: "shell" }, acmeKey, "/api/v1/tenants/other/sandbox/execute");
    expect(other.status).toBe(403);
    expect(await other.json()).toMatchObject({ code: "auth.forbidden" });
    const agentOther = await execute(
      { code: "echo no", language: "shell" },
      await agentToken(),
      "/api/v1/tenants/other/sandbox/execute",
    );
    expect(agentOther.status).toBe(403);
  });

  it("refuses a JWT-SVID addressed to another service, and a missing credential", async () => {
    const wrong = await execute({ code: "1" }, await agentToken("spiffe://hexr.local/system/vault"));
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ code: "sandbox.wrong_audience" });
    const none = await execute({ code: "1" }, null);
    expect(none.status).toBe(401);
  });

  it("asks the policy engine: an enforced forbid denies agents, admins still run", async () => {
    const put = await p.api("/api/v1/tenants/acme/policies/no-sandbox", {
      method: "PUT",
      json: { policy: `forbid (principal is Hexr::Agent, action == Hexr::Action::"sandbox:exec", resource);`, mode: "enforce" },
    });
    expect(put.status).toBeLessThan(300);
    try {
      const denied = await execute({ code: "print('should not run')" }, await agentToken());
      expect(denied.status).toBe(403);
      expect(await denied.json()).toMatchObject({ code: "policy.denied" });
      expect((await execute({ code: "print(1)" })).status).toBe(200);
    } finally {
      expect((await p.api("/api/v1/tenants/acme/policies/no-sandbox", { method: "DELETE" })).status).toBeLessThan(300);
    }
    expect((await execute({ code: "print(1)" }, await agentToken())).status).toBe(200);
  });

  it("warns through a header when a warn-mode policy would deny", async () => {
    const put = await p.api("/api/v1/tenants/acme/policies/warn-sandbox", {
      method: "PUT",
      json: {
        policy: `forbid (principal is Hexr::Agent, action == Hexr::Action::"sandbox:exec", resource) when { context has language && context.language == "shell" };`,
        mode: "warn",
      },
    });
    expect(put.status, await put.clone().text()).toBeLessThan(300);
    try {
      const res = await execute({ code: "echo warned", language: "shell" }, await agentToken());
      expect(res.status).toBe(200);
      expect(res.headers.get("hexr-policy-warning")).toMatch(/^deny; mode=warn/);
      expect(((await res.json()) as ExecResult).stdout).toBe("warned\n");
      const quiet = await execute({ code: "print('python is fine')" }, await agentToken());
      expect(quiet.headers.get("hexr-policy-warning")).toBeNull();
    } finally {
      await p.api("/api/v1/tenants/acme/policies/warn-sandbox", { method: "DELETE" });
    }
  });

  it.each([
    ["an empty body", undefined, 400, "request.body_required"],
    ["no code", {}, 400, "request.validation_failed"],
    ["an unknown language", { code: "1", language: "cobol" }, 400, "request.validation_failed"],
    ["a negative timeout", { code: "1", timeout: -1 }, 400, "request.validation_failed"],
    ["a timeout above the limit", { code: "1", timeout: 11 }, 400, "sandbox.timeout_too_long"],
    ["a bad env name", { code: "1", envVars: { "A-B": "x" } }, 400, "request.validation_failed"],
    ["an unknown field", { code: "1", image: "ubuntu" }, 400, "request.validation_failed"],
    ["an option smuggled as a package", { code: "1", packages: ["--index-url=http://x"] }, 400, "sandbox.invalid_package"],
    ["code over the limit", { code: "#".repeat(5000) }, 413, "sandbox.code_too_large"],
    ["packages nobody configured", { code: "1", packages: ["numpy"] }, 422, "sandbox.packages_not_configured"],
  ])("answers %s with a problem document", async (_label, body, status, code) => {
    const res = body === undefined ? await p.api("/api/v1/sandbox/execute", { method: "POST" }) : await execute(body);
    expect(res.status).toBe(status);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(await res.json()).toMatchObject({ code, status });
  });

  it("returns non-zero exits, timeouts and OOM kills as results, not errors", async () => {
    const res = await execute({ code: "import time\ntime.sleep(5)", timeout: 0.5 });
    expect(res.status).toBe(200);
    expect((await res.json()) as ExecResult).toMatchObject({ exitCode: 124, timedOut: true, ok: false });
  });
});
