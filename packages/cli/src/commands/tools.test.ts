import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hexr, startUp, type RunningPlatform } from "../../../../test/helpers/cli.js";
import { toolSpecFromFlags } from "./tools.js";

const ROLE = "arn:aws:iam::123456789012:role/agent";

describe("toolSpecFromFlags", () => {
  it("maps flags to the provider's config and names what is wrong", () => {
    expect(toolSpecFromFlags({ provider: "aws", roleArn: ROLE, region: "us-east-1", sessionDuration: "3600" })).toEqual({
      provider: "aws",
      config: { roleArn: ROLE, region: "us-east-1", sessionDurationSeconds: 3600 },
    });
    expect(
      toolSpecFromFlags({
        provider: "azure",
        tenantId: "contoso.onmicrosoft.com",
        clientId: "5b3c1d2e-0f4a-4b6c-8d7e-9f0a1b2c3d4e",
      }).config,
    ).toEqual({
      tenantId: "contoso.onmicrosoft.com",
      clientId: "5b3c1d2e-0f4a-4b6c-8d7e-9f0a1b2c3d4e",
    });
    expect(() => toolSpecFromFlags({ provider: "aws", region: "us-east-1" })).toThrow("provider aws needs --role-arn");
    expect(() => toolSpecFromFlags({ provider: "gcp", audience: "x", roleArn: ROLE })).toThrow(
      "--role-arn does not apply to provider gcp",
    );
    expect(() => toolSpecFromFlags({ provider: "oracle" })).toThrow(/--provider must be one of aws, gcp, azure/);
    expect(() => toolSpecFromFlags({ provider: "aws", roleArn: ROLE, region: "us-east-1", sessionDuration: "15m" })).toThrow(
      /--session-duration must be a whole number/,
    );
  });
});

describe("hexr tools", () => {
  let dataDir: string;
  let up: RunningPlatform;
  const run = (...args: string[]) => hexr([...args, "--data-dir", dataDir]);

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "hexr-cli-tools-"));
    up = await startUp(dataDir);
    expect(run("tenants", "create", "acme-corp").code).toBe(0);
  });
  afterAll(() => {
    if (up.child.exitCode === null) up.child.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("adds, lists, shows, replaces and removes a tool", () => {
    const added = run(
      "tools",
      "add",
      "aws_s3",
      "--tenant",
      "acme-corp",
      "--provider",
      "aws",
      "--role-arn",
      ROLE,
      "--region",
      "us-east-1",
      "--sts-endpoint",
      "http://127.0.0.1:9/",
      "--json",
    );
    expect(added.code, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({
      name: "aws_s3",
      tenant: "acme-corp",
      provider: "aws",
      config: { roleArn: ROLE, region: "us-east-1", sessionDurationSeconds: 900, stsEndpoint: "http://127.0.0.1:9/" },
    });

    const table = run("tools", "list", "--tenant", "acme-corp");
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^NAME\s+PROVIDER\s+TARGET/);
    expect(table.stdout).toContain(`aws_s3  aws       ${ROLE} (us-east-1)`);
    expect(JSON.parse(run("tools", "list", "--tenant", "acme-corp", "--json").stdout)).toHaveLength(1);
    expect(run("tools", "get", "aws_s3", "--tenant", "acme-corp").stdout).toContain("sessionDurationSeconds: 900");

    const dup = run(
      "tools",
      "add",
      "aws_s3",
      "--tenant",
      "acme-corp",
      "--provider",
      "aws",
      "--role-arn",
      ROLE,
      "--region",
      "eu-west-1",
    );
    expect(dup.code).toBe(5);
    expect(dup.stderr.trim()).toBe("hexr: tenant 'acme-corp' already has a tool 'aws_s3'");
    const replaced = run(
      "tools",
      "add",
      "aws_s3",
      "--tenant",
      "acme-corp",
      "--provider",
      "aws",
      "--role-arn",
      ROLE,
      "--region",
      "eu-west-1",
      "--replace",
    );
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(replaced.stdout).toBe(`replaced tool aws_s3 in acme-corp: aws ${ROLE} (eu-west-1)\n`);

    expect(run("tools", "rm", "aws_s3", "--tenant", "acme-corp").stdout).toBe("removed tool aws_s3 from acme-corp\n");
    const again = run("tools", "rm", "aws_s3", "--tenant", "acme-corp", "--json");
    expect(again.code).toBe(4);
    expect(JSON.parse(again.stderr)).toMatchObject({ error: { code: "credentials.tool_not_found" } });
  });

  it("reports bad input with one line and an exit code, and stores nothing", () => {
    const bad = run(
      "tools",
      "add",
      "s3",
      "--tenant",
      "acme-corp",
      "--provider",
      "aws",
      "--role-arn",
      "arn:aws:iam::1:user/x",
      "--region",
      "us-east-1",
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^hexr: invalid body: config\.roleArn: must be an IAM role ARN/);
    const usage = run("tools", "add", "s3", "--tenant", "acme-corp", "--provider", "gcp", "--region", "us-east-1");
    expect(usage.code).toBe(2);
    expect(usage.stderr.trim()).toBe("hexr: --region does not apply to provider gcp");
    expect(run("tools", "add", "s3", "--provider", "aws").code).toBe(2); // --tenant is required
    expect(run("tools", "list", "--tenant", "nope").code).toBe(4);
    expect(JSON.parse(run("tools", "list", "--tenant", "acme-corp", "--json").stdout)).toEqual([]);
    const help = hexr(["tools", "add", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--role-arn <arn>");
  });
});
