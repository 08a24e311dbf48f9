import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { contextDirPath } from "../../packages/platform/src/identity/workload-api/server.js";
import { status } from "./reference-client.js";
import { PROTO_PATH } from "./reference-client.js";
import { runFixture, startFixture, startIdentityPlatform, type IdentityPlatform } from "./helpers.js";

// Attestation is by the kernel: these workloads are separate processes that try to obtain an
// identity that is not theirs, each with the tools a same-uid process has.
let p: IdentityPlatform;
let tmp: string;
let contextDir: string;
const ID = (agent: string) => `spiffe://hexr.local/agent/acme-corp/${agent}/main`;

beforeAll(async () => {
  p = await startIdentityPlatform();
  tmp = mkdtempSync(join(tmpdir(), "hexr-attest-"));
  contextDir = contextDirPath(p.dataDir);
});
afterAll(async () => {
  await p.dispose();
  rmSync(tmp, { recursive: true, force: true });
});
afterEach(() => p.deleteAllEntries());

const base = () => ({ socket: p.socketPath, proto: PROTO_PATH });
let n = 0;
const goFile = () => join(tmp, `go-${n++}`);

describe("per-process attestation", () => {
  it("an unregistered process is PERMISSION_DENIED", async () => {
    const r = await runFixture("fetch-svid.mjs", base());
    expect(r.json).toMatchObject({ ok: false, code: status.PERMISSION_DENIED });
  });

  it("a process gets the identity of an entry pinned to its pid and start time", async () => {
    const go = goFile();
    const f = await startFixture("fetch-svid.mjs", { ...base(), waitForFile: go });
    await p.registerProcess(f.pid, ID("researcher"));
    writeFileSync(go, "");
    expect((await f.result).json).toEqual({ ok: true, spiffeIds: [ID("researcher")] });
  });

  it("a process cannot take another live process's identity by naming its pid in a marker", async () => {
    const victimGo = goFile();
    const victim = await startFixture("fetch-svid.mjs", { ...base(), waitForFile: victimGo });
    await p.registerProcess(victim.pid, ID("payments"));
    const victimStart = victim.first["start"] as string;
    const forged = {
      agent_name: "payments",
      tenant: "acme-corp",
      role: "main",
      container_pid: victim.pid,
      start_time: victimStart,
      boot_id: "$boot",
    };
    // Marker under its own pid that claims the victim's pid, and one written under the victim's pid.
    const own = await runFixture("fetch-svid.mjs", { ...base(), markerDir: contextDir, marker: forged });
    expect(own.json).toMatchObject({ ok: false, code: status.PERMISSION_DENIED });
    const theirs = await runFixture("fetch-svid.mjs", {
      ...base(),
      markerDir: contextDir,
      markerName: victim.pid,
      marker: forged,
    });
    expect(theirs.json).toMatchObject({ ok: false, code: status.PERMISSION_DENIED });
    // The victim still gets its own identity.
    writeFileSync(victimGo, "");
    expect((await victim.result).json).toEqual({ ok: true, spiffeIds: [ID("payments")] });
  });

  describe("entries that match on marker selectors (tenant/agent/role)", () => {
    const markerEntry = () =>
      p.createEntry({
        spiffeId: ID("payments"),
        selectors: [`unix:uid:${process.getuid!()}`, "hexr:tenant:acme-corp", "hexr:agent:payments", "hexr:role:main"],
      });
    const marker = (over: Record<string, unknown> = {}) => ({
      agent_name: "payments",
      tenant: "acme-corp",
      role: "main",
      container_pid: "$pid",
      start_time: "$start",
      boot_id: "$boot",
      ...over,
    });

    it("apply to a process whose marker agrees with the kernel (same-uid trust, see docs/identity.md)", async () => {
      await markerEntry();
      const r = await runFixture("fetch-svid.mjs", { ...base(), markerDir: contextDir, marker: marker() });
      expect(r.json).toEqual({ ok: true, spiffeIds: [ID("payments")] });
    });

    it.each([
      ["a marker for another pid", { container_pid: 1 }],
      ["a marker for an earlier process with the same pid (recycled pid)", { start_time: "1" }],
      ["a marker from a previous boot", { boot_id: "00000000-0000-0000-0000-000000000000" }],
    ])("do not apply with %s", async (_why, over) => {
      await markerEntry();
      const r = await runFixture("fetch-svid.mjs", { ...base(), markerDir: contextDir, marker: marker(over) });
      expect(r.json).toMatchObject({ ok: false, code: status.PERMISSION_DENIED });
    });
  });

  describe("a connection handed to another process (SCM_RIGHTS / fork)", () => {
    it("is denied once the process that connected has exited, even if its pid is pinned by an entry", async () => {
      const out = join(tmp, `handoff-${n++}.json`);
      const go = goFile();
      const parent = await startFixture("handoff.mjs", { mode: "parent", socket: p.socketPath, out, go, parentExits: true });
      await p.registerProcess(parent.pid, ID("payments"));
      writeFileSync(go, "");
      await parent.result;
      const { readFileSync, existsSync } = await import("node:fs");
      while (!existsSync(out)) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 20));
      const res = JSON.parse(readFileSync(out, "utf8")) as { gotSvid: boolean; status: number };
      expect(res.gotSvid).toBe(false);
      expect(res.status).toBe(status.PERMISSION_DENIED);
    });

    it("is served as the connecting process while that process lives (SO_PEERCRED names the connector; documented)", async () => {
      const out = join(tmp, `handoff-${n++}.json`);
      const go = goFile();
      const parent = await startFixture("handoff.mjs", { mode: "parent", socket: p.socketPath, out, go, parentExits: false });
      await p.registerProcess(parent.pid, ID("payments"));
      writeFileSync(go, "");
      await parent.result;
      const { readFileSync } = await import("node:fs");
      const res = JSON.parse(readFileSync(out, "utf8")) as { gotSvid: boolean; status: number };
      expect(res.gotSvid).toBe(true);
    });
  });
});
