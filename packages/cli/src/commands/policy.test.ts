import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../../../platform/src/test-support/platform.js";
import { parseResource, policyNameFromFile } from "./policy.js";
import { hexrAsync, type CliResult } from "./test-support/hexr-async.js";

const BOT = "spiffe://hexr.local/agent/acme/bot/main";
const PROD_GUARD = `@id("no-prod")
forbid (principal is Hexr::Agent, action == Hexr::Action::"vault:read", resource is Hexr::Secret)
when { resource.name like "prod/*" };
`;

describe("policy CLI helpers", () => {
  it("parses Type:id resources and names policies after their file", () => {
    expect(parseResource("Secret:db/password")).toEqual({ type: "Secret", id: "db/password" });
    expect(parseResource("Agent:spiffe://hexr.local/agent/a/b/c")).toEqual({
      type: "Agent",
      id: "spiffe://hexr.local/agent/a/b/c",
    });
    for (const bad of ["Secret", ":x", "Secret:"]) expect(() => parseResource(bad)).toThrow(/<Type>:<id>/);
    expect(policyNameFromFile("/x/prod-guard.cedar")).toBe("prod-guard");
  });
});

describe("hexr policy", () => {
  let p: TestPlatform;
  let dir: string;
  let run: (args: string[], input?: string) => Promise<CliResult>;

  beforeAll(async () => {
    p = await startTestPlatform();
    dir = mkdtempSync(join(tmpdir(), "hexr-cli-policy-"));
    await p.api("/api/v1/tenants", { method: "POST", json: { name: "acme" } });
    const key = (
      (await (await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "acme" } })).json()) as {
        key: string;
      }
    ).key;
    run = (args, input) => hexrAsync(args, { HEXR_PLATFORM_URL: p.url, HEXR_API_KEY: key, HEXR_TENANT: "acme" }, input);
    writeFileSync(join(dir, "prod-guard.cedar"), PROD_GUARD);
  });
  afterAll(async () => {
    await p.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it("apply in audit mode, list, get; test; log shows flagged decisions; replay predicts the enforce rollout; delete", async () => {
    const file = join(dir, "prod-guard.cedar");
    const applied = await run(["policy", "apply", file, "--mode", "audit", "--description", "agents stay off prod"]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toBe("applied prod-guard version 1 in audit mode (prod-guard#no-prod)\n");
    expect((await run(["policy", "apply", file, "--mode", "audit", "--description", "agents stay off prod"])).stdout).toBe(
      "prod-guard unchanged (version 1, audit)\n",
    );
    expect((await run(["policy", "list"])).stdout).toMatch(/\nprod-guard\s+1\s+audit\s+1\s+/);
    const got = await run(["policy", "get", "prod-guard"]);
    expect(got.stdout).toContain("// prod-guard version 1, mode audit");
    expect(got.stdout).toContain('@id("no-prod")');

    // Traffic: an agent reads a prod secret (allowed, flagged by the audit policy) and a dev one.
    await p.api(`/api/v1/tenants/acme/secrets/${encodeURIComponent("prod/db")}`, { method: "PUT", json: { value: "p" } });
    await p.api(`/api/v1/tenants/acme/secrets/${encodeURIComponent("dev/db")}`, { method: "PUT", json: { value: "d" } });
    const token = (await p.identity.authority.mintJwtSvid(BOT, ["spiffe://hexr.local/system/vault"])).token;
    for (const name of ["prod/db", "prod/db", "dev/db"]) {
      expect((await p.api(`/api/v1/tenants/acme/secrets/${encodeURIComponent(name)}`, { auth: token })).status).toBe(200);
    }

    const test = await run(["policy", "test", "--principal", BOT, "--action", "vault:read", "--resource", "Secret:prod/db"]);
    expect(test.code).toBe(0);
    expect(test.stdout).toMatch(
      /^ALLOW \(flagged, audit mode\)\n {2}audit mode: vault:read on Secret 'prod\/db' would be denied by prod-guard#no-prod/,
    );
    const expectDeny = await run([
      "policy",
      "test",
      "--principal",
      BOT,
      "--action",
      "vault:read",
      "--resource",
      "Secret:prod/db",
      "--candidate",
      file,
      "--expect",
      "deny",
    ]);
    expect(expectDeny.code).toBe(0);
    expect(expectDeny.stdout).toMatch(/^DENY\n {2}forbidden by prod-guard#no-prod/);
    expect(
      (
        await run([
          "policy",
          "test",
          "--principal",
          BOT,
          "--action",
          "vault:read",
          "--resource",
          "Secret:dev/db",
          "--expect",
          "deny",
        ])
      ).code,
    ).toBe(1);

    const log = await run(["policy", "log", "--flagged"]);
    expect(log.stdout).toMatch(/^AT\s+PRINCIPAL\s+ACTION\s+RESOURCE\s+RESULT\s+POLICIES\s+MICROS\n/);
    expect(log.stdout.match(/Secret:prod\/db\s+allow \(audit\)\s+prod-guard#no-prod/g)).toHaveLength(2);
    const logJson = JSON.parse((await run(["policy", "log", "--json", "--principal", BOT])).stdout) as unknown[];
    expect(logJson).toHaveLength(3);

    const replay = await run(["policy", "replay", file, "--since", "1h"]);
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toMatch(/^replayed \d+ decisions since .*: 2 would change\n/);
    expect(replay.stdout).toContain(
      `\n${BOT}: 2 allowed → denied, 0 denied → allowed\n  allowed → denied  vault:read Secret:prod/db  ×2\n`,
    );

    const enforce = await run(["policy", "apply", file, "--mode", "enforce"]);
    expect(enforce.stdout).toBe("applied prod-guard version 2 in enforce mode (prod-guard#no-prod)\n");
    expect((await p.api(`/api/v1/tenants/acme/secrets/${encodeURIComponent("prod/db")}`, { auth: token })).status).toBe(403);
    expect((await run(["policy", "get", "prod-guard", "--ver", "1", "--json"])).stdout).toContain('"mode": "audit"');

    expect((await run(["policy", "delete", "prod-guard"])).stdout).toBe("deleted policy prod-guard\n");
    expect((await p.api(`/api/v1/tenants/acme/secrets/${encodeURIComponent("prod/db")}`, { auth: token })).status).toBe(200);
  }, 300_000);

  it("invalid policies: Cedar's message in one line, exit 2 (syntax) or 6 (schema)", async () => {
    const syntax = join(dir, "broken.cedar");
    writeFileSync(syntax, "permit (principal, action, resource) when { principal.tenant == };\n");
    const r = await run(["policy", "apply", syntax]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^hexr: the policy does not parse: 1:\d+: /);
    const schema = join(dir, "team-rule.cedar");
    writeFileSync(
      schema,
      `permit (principal is Hexr::Agent, action == Hexr::Action::"vault:read", resource) when { principal.team == "x" };\n`,
    );
    const s = await run(["policy", "apply", schema]);
    expect(s.code).toBe(6);
    expect(s.stderr).toContain("team");
    expect((await run(["policy", "get", "broken"])).code).toBe(4);
  }, 120_000);

  it("usage errors", async () => {
    expect((await run(["policy", "apply", join(dir, "missing.cedar")])).stderr).toMatch(
      /^hexr: cannot read .*missing\.cedar: ENOENT\n$/,
    );
    expect((await run(["policy", "apply", join(dir, "prod-guard.cedar"), "--mode", "loud"])).code).toBe(2);
    expect((await run(["policy", "test", "--principal", BOT, "--action", "vault:read", "--resource", "db"])).code).toBe(2);
    expect(
      (await run(["policy", "test", "--principal", BOT, "--action", "vault:read", "--resource", "Secret:x", "--context", "[1]"]))
        .code,
    ).toBe(2);
    expect((await run(["policy", "replay", join(dir, "prod-guard.cedar"), "--since", "last week"])).code).toBe(2);
    expect((await run(["policy", "log", "--limit", "0"])).code).toBe(2);
  }, 120_000);
});
