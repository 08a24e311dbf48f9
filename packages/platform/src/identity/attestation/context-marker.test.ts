import { chmodSync, chownSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { markerPath, readTrustedMarker, type MarkerFacts } from "./context-marker.js";

let dir: string;
const BOOT = "0d4b1c2e-1111-2222-3333-444455556666";
const facts: MarkerFacts = { pid: 4242, uid: process.getuid!(), startTime: "123456", bootId: BOOT };
const good = {
  agent_name: "researcher",
  tenant: "acme-corp",
  role: "main",
  container_pid: 4242,
  start_time: "123456",
  boot_id: BOOT,
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "hexr-marker-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function write(content: unknown, pid = 4242, mode = 0o600): string {
  const p = markerPath(dir, pid);
  writeFileSync(p, typeof content === "string" ? content : JSON.stringify(content), { mode });
  chmodSync(p, mode);
  return p;
}

describe("readTrustedMarker", () => {
  it("trusts a marker that agrees with the kernel facts", async () => {
    write(good);
    expect(await readTrustedMarker(dir, facts)).toEqual({ trusted: true, marker: good });
  });

  it("reports a missing marker", async () => {
    expect(await readTrustedMarker(dir, facts)).toEqual({ trusted: false, reason: "no marker" });
  });

  it.each([
    ["a marker naming another pid", { ...good, container_pid: 4243 }, /names pid 4243/],
    ["a marker for an earlier process with the same pid", { ...good, start_time: "123455" }, /earlier process/],
    ["a marker from a previous boot", { ...good, boot_id: "ffffffff-1111-2222-3333-444455556666" }, /last boot/],
    ["a tenant that is not a DNS label", { ...good, tenant: "Acme/../x" }, /malformed \(tenant\)/],
    ["a missing field", { ...good, role: undefined }, /malformed \(role\)/],
    ["a non-numeric start time", { ...good, start_time: "12 34" }, /malformed/],
  ])("refuses %s", async (_name, content, reason) => {
    write(content);
    const v = await readTrustedMarker(dir, facts);
    expect(v.trusted).toBe(false);
    expect(v.trusted ? "" : v.reason).toMatch(reason);
  });

  it("refuses garbage, oversized files and directories", async () => {
    write("{not json");
    expect(await readTrustedMarker(dir, facts)).toMatchObject({ trusted: false, reason: "marker is not JSON" });
    write(JSON.stringify({ ...good, pad: "x".repeat(5000) }));
    expect(await readTrustedMarker(dir, facts)).toMatchObject({ trusted: false, reason: "marker is too large" });
    rmSync(markerPath(dir, 4242));
    const { mkdirSync } = await import("node:fs");
    mkdirSync(markerPath(dir, 4242));
    expect(await readTrustedMarker(dir, facts)).toMatchObject({ trusted: false, reason: "marker is not a regular file" });
  });

  it("refuses a symlink to another process's marker", async () => {
    const real = write({ ...good, container_pid: 5000 }, 5000);
    symlinkSync(real, markerPath(dir, 4242));
    expect(await readTrustedMarker(dir, facts)).toMatchObject({ trusted: false, reason: "marker is not a regular file" });
  });

  it("refuses a marker owned by another uid or writable by others", async () => {
    const p = write(good);
    chownSync(p, 65534, 65534);
    expect((await readTrustedMarker(dir, facts)) as { reason: string }).toMatchObject({ trusted: false });
    expect(((await readTrustedMarker(dir, facts)) as { reason: string }).reason).toMatch(/owned by uid 65534/);
    chownSync(p, facts.uid, 0);
    chmodSync(p, 0o622);
    expect(await readTrustedMarker(dir, facts)).toMatchObject({
      trusted: false,
      reason: "marker is writable by group or others",
    });
  });
});
