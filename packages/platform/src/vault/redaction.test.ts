import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PlatformConfig } from "../config/schema.js";
import { createLogger } from "../logging/logger.js";
import { startPlatform, type Platform } from "../server.js";

const VALUE = "Zq9-very-secret-value-4711";

describe("secrets never reach the platform log", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "hexr-vault-log-"));
  let lines = "";
  let p: Platform;
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines += chunk.toString();
      done();
    },
  });

  beforeAll(async () => {
    const log = createLogger({ level: "trace", format: "json", destination: sink });
    p = await startPlatform(PlatformConfig.parse({ dataDir, port: 0 }), { log });
  });
  afterAll(async () => {
    await p.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("at trace level, through writes, reads, failures and a tampered row", async () => {
    const admin = { authorization: `Bearer ${p.adminKey}`, "content-type": "application/json" };
    await fetch(`${p.url}/api/v1/tenants`, { method: "POST", headers: admin, body: JSON.stringify({ name: "acme" }) });
    const path = `${p.url}/api/v1/tenants/acme/secrets/${encodeURIComponent("db/password")}`;
    expect((await fetch(path, { method: "PUT", headers: admin, body: JSON.stringify({ value: VALUE }) })).status).toBe(201);
    const token = (
      await p.identity.authority.mintJwtSvid("spiffe://hexr.local/agent/acme/bot/main", ["spiffe://hexr.local/system/vault"])
    ).token;
    const read = await fetch(path, { headers: { authorization: `Bearer ${token}` } });
    expect(((await read.json()) as { value: string }).value).toBe(VALUE);
    // failures: a conflicting write, a denied agent write, a body that is not JSON but holds the value
    await fetch(path, { method: "PUT", headers: admin, body: JSON.stringify({ value: VALUE, expectedVersion: 9 }) });
    await fetch(path, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ value: VALUE }),
    });
    await fetch(path, { method: "PUT", headers: admin, body: `{"value": "${VALUE}"` });
    // a tampered ciphertext makes a 500, which the router logs with the error
    const row = (await p.storage.get<{ c: string }>("SELECT ciphertext AS c FROM vault_versions"))!;
    const buf = Buffer.from(row.c, "base64");
    buf[buf.length - 1]! ^= 1;
    await p.storage.run("UPDATE vault_versions SET ciphertext = ?", [buf.toString("base64")]);
    const broken = await fetch(path, { headers: admin });
    expect(broken.status).toBe(500);
    expect(await broken.json()).toMatchObject({ code: "vault.integrity_error", detail: "internal error" });

    await new Promise((r) => setTimeout(r, 50));
    expect(lines).toContain("request failed");
    expect(lines).not.toContain(VALUE);
    expect(lines).not.toContain(token);
    expect(lines).not.toContain(p.adminKey);
  });
});
