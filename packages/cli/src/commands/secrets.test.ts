import { startTestPlatform, type TestPlatform } from "../../../platform/src/test-support/platform.js";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hexrAsync, type CliResult } from "./test-support/hexr-async.js";
import { readSecretInput } from "./secrets.js";

describe("readSecretInput", () => {
  const stdin = (s: string | Buffer) => async () => Buffer.from(s);
  it("reads stdin with '-', dropping one trailing newline", async () => {
    expect(await readSecretInput("-", {}, stdin("s3cret\n"))).toEqual({ value: "s3cret", encoding: "utf8" });
    expect(await readSecretInput("-", {}, stdin("s3cret\r\n"))).toEqual({ value: "s3cret", encoding: "utf8" });
    expect(await readSecretInput("-", { keepNewline: true }, stdin("s3cret\n"))).toEqual({ value: "s3cret\n", encoding: "utf8" });
    expect(await readSecretInput("-", { binary: true }, stdin(Buffer.from([0, 255, 10])))).toEqual({
      value: "AP8K",
      encoding: "base64",
    });
  });
  it("refuses values on the command line, empty values, both sources, and non-UTF-8 text", async () => {
    await expect(readSecretInput("hunter2", {}, stdin(""))).rejects.toThrow(/not taken from the command line/);
    await expect(readSecretInput(undefined, {}, stdin(""))).rejects.toThrow(/exactly one/);
    await expect(readSecretInput("-", { fromFile: "/x" }, stdin(""))).rejects.toThrow(/exactly one/);
    await expect(readSecretInput("-", {}, stdin("\n"))).rejects.toThrow(/empty/);
    await expect(readSecretInput("-", {}, stdin(Buffer.from([0xff, 0xfe])))).rejects.toThrow(/--binary/);
    await expect(readSecretInput(undefined, { fromFile: "/nonexistent/file" }, stdin(""))).rejects.toMatchObject({
      code: "cli.file_unreadable",
    });
  });
});

for (const storage of ["sqlite", "postgres"] as const) {
  describe(`hexr secrets (${storage})`, () => {
    let p: TestPlatform;
    let dir: string;
    let acmeKey: string;
    const as =
      (key: string) =>
      (args: string[], input?: string): Promise<CliResult> =>
        hexrAsync(args, { HEXR_PLATFORM_URL: p.url, HEXR_API_KEY: key, HEXR_TENANT: "" }, input);
    let acme: (args: string[], input?: string) => Promise<CliResult>;

    beforeAll(async () => {
      p = await startTestPlatform({ storage });
      dir = mkdtempSync(join(tmpdir(), "hexr-cli-secrets-"));
      for (const name of ["acme", "globex"]) await p.api("/api/v1/tenants", { method: "POST", json: { name } });
      acmeKey = (
        (await (await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "acme" } })).json()) as {
          key: string;
        }
      ).key;
      acme = as(acmeKey);
    });
    afterAll(async () => {
      await p.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it("put from stdin, get, versions, list, rm", async () => {
      const put = await acme(["secrets", "put", "db/password", "-", "--tenant", "acme"], "first-pass\n");
      expect(put.code, put.stderr).toBe(0);
      expect(put.stdout).toBe("wrote db/password version 1\n");
      expect((await acme(["secrets", "put", "db/password", "-", "--tenant", "acme", "--json"], "second-pass")).stdout).toContain(
        '"version": 2',
      );
      expect((await acme(["secrets", "get", "db/password", "--tenant", "acme"])).stdout).toBe("second-pass");
      expect((await acme(["secrets", "get", "db/password", "--tenant", "acme", "--ver", "1"])).stdout).toBe("first-pass");
      expect(JSON.parse((await acme(["secrets", "get", "db/password", "--tenant", "acme", "--json"])).stdout)).toMatchObject({
        version: 2,
        value: "second-pass",
      });

      const versions = await acme(["secrets", "versions", "db/password", "--tenant", "acme"]);
      expect(versions.stdout).toMatch(/^VERSION\s+SIZEBYTES\s+ENCODING/);
      expect(versions.stdout.trim().split("\n")).toHaveLength(3);
      const list = await acme(["secrets", "list", "db/", "--tenant", "acme"]);
      expect(list.stdout).toMatch(/\ndb\/password\s+2\s+/);
      expect(list.stdout).not.toContain("second-pass");

      expect((await acme(["secrets", "rm", "db/password", "--tenant", "acme", "--ver", "1"])).stdout).toBe(
        "destroyed db/password version 1\n",
      );
      const destroyed = await acme(["secrets", "get", "db/password", "--tenant", "acme", "--ver", "1"]);
      expect(destroyed.code).toBe(4);
      expect(destroyed.stderr).toBe("hexr: version 1 of secret 'db/password' was destroyed\n");
      expect((await acme(["secrets", "rm", "db/password", "--tenant", "acme"])).stdout).toBe("deleted db/password\n");
      const gone = await acme(["secrets", "get", "db/password", "--tenant", "acme"]);
      expect(gone.code).toBe(4);
      expect(gone.stderr).toBe("hexr: secret 'db/password' was deleted in tenant 'acme'\n");
      expect((await acme(["secrets", "list", "--tenant", "acme", "--all"])).stdout).toMatch(/db\/password\s+2\s+\S+\s+true/);
    }, 300_000);

    it("put from a file, binary values come back byte for byte", async () => {
      const bytes = randomBytes(64);
      const file = join(dir, "key.bin");
      writeFileSync(file, bytes);
      expect((await acme(["secrets", "put", "tls/key", "--from-file", file, "--binary", "--tenant", "acme"])).code).toBe(0);
      const r = await acme(["secrets", "get", "tls/key", "--tenant", "acme", "--json"]);
      expect(Buffer.from((JSON.parse(r.stdout) as { value: string }).value, "base64").equals(bytes)).toBe(true);
      const text = join(dir, "pw.txt");
      writeFileSync(text, "from-file-value\n");
      expect((await acme(["secrets", "put", "app/pw", "--from-file", text, "--tenant", "acme"])).code).toBe(0);
      expect((await acme(["secrets", "get", "app/pw", "--tenant", "acme"])).stdout).toBe("from-file-value");
    }, 300_000);

    it("tenant A's agent (JWT-SVID) and tenant A's key can never read tenant B's secret", async () => {
      const globexKey = (
        (await (await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "globex" } })).json()) as {
          key: string;
        }
      ).key;
      expect((await as(globexKey)(["secrets", "put", "db/password", "-", "--tenant", "globex"], "globex-only")).code).toBe(0);
      const token = (
        await p.identity.authority.mintJwtSvid("spiffe://hexr.local/agent/acme/bot/main", ["spiffe://hexr.local/system/vault"])
      ).token;
      for (const run of [as(token), acme]) {
        const r = await run(["secrets", "get", "db/password", "--tenant", "globex"]);
        expect(r.code).toBe(77);
        expect(r.stdout).toBe("");
        expect(r.stderr).not.toContain("globex-only");
        expect((await run(["secrets", "list", "--tenant", "globex"])).code).toBe(77);
      }
      // the agent reads its own tenant's secrets through the same CLI
      expect((await acme(["secrets", "put", "shared/x", "-", "--tenant", "acme"], "acme-x")).code).toBe(0);
      expect((await as(token)(["secrets", "get", "shared/x", "--tenant", "acme"])).stdout).toBe("acme-x");
    }, 300_000);

    it("usage errors are one line with exit code 2; --json errors are JSON", async () => {
      const argv = await acme(["secrets", "put", "x", "hunter2", "--tenant", "acme"]);
      expect(argv.code).toBe(2);
      expect(argv.stderr).toMatch(/^hexr: secret values are not taken from the command line/);
      expect(argv.stderr.trim().split("\n")).toHaveLength(1);
      expect((await acme(["secrets", "get", "x"])).stderr).toBe(
        "hexr: give the tenant with --tenant <name> (or set HEXR_TENANT)\n",
      );
      const bad = await acme(["secrets", "put", "../x", "-", "--tenant", "acme"], "v");
      expect(bad.code).toBe(2);
      const j = await acme(["secrets", "get", "nope", "--tenant", "acme", "--json"]);
      expect(j.code).toBe(4);
      expect(JSON.parse(j.stderr)).toMatchObject({ error: { code: "vault.secret_not_found" } });
      expect((await acme(["secrets", "get", "nope", "--tenant", "acme", "--ver", "0"])).code).toBe(2);
    }, 300_000);
  });
}
