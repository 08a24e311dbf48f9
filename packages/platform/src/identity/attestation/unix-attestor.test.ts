import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { markerPath } from "./context-marker.js";
import { createExeHasher } from "./exe-hash.js";
import { readBootId, readProcStat } from "./proc.js";
import { createUnixAttestor } from "./unix-attestor.js";

let dir: string;
let nodeSha: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hexr-attestor-"));
  nodeSha = createHash("sha256").update(readFileSync(process.execPath)).digest("hex");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sel = (ss: Array<{ type: string; value: string }>) => ss.map((s) => `${s.type}:${s.value}`);

describe("unix attestor", () => {
  it("derives uid, gid, path, sha256 and the process selectors from /proc, and no hexr identity without a marker", async () => {
    const hasher = createExeHasher();
    const attestor = createUnixAttestor({ contextDir: dir, hasher });
    const { startTime } = await readProcStat(process.pid);
    const s = sel(await attestor.attest(process.pid));
    expect(s).toEqual([
      `unix:uid:${process.geteuid!()}`,
      `unix:gid:${process.getegid!()}`,
      `unix:path:${realpathSync(process.execPath)}`,
      `unix:sha256:${nodeSha}`,
      `hexr:pid:${process.pid}`,
      `hexr:start:${startTime}@${readBootId()}`,
    ]);
    // The binary is hashed once and then served from the cache.
    await attestor.attest(process.pid);
    expect(hasher.size).toBe(1);
  });

  it("adds tenant, agent and role from a marker that agrees with the kernel", async () => {
    const attestor = createUnixAttestor({ contextDir: dir });
    const { startTime } = await readProcStat(process.pid);
    writeFileSync(
      markerPath(dir, process.pid),
      JSON.stringify({
        agent_name: "researcher",
        tenant: "acme-corp",
        role: "main",
        container_pid: process.pid,
        start_time: startTime,
        boot_id: readBootId(),
      }),
      { mode: 0o600 },
    );
    const s = sel(await attestor.attest(process.pid));
    expect(s.slice(-3)).toEqual(["hexr:tenant:acme-corp", "hexr:agent:researcher", "hexr:role:main"]);
  });

  it("ignores a marker copied from another process (its pid and start time do not match ours)", async () => {
    const attestor = createUnixAttestor({ contextDir: dir });
    const { startTime } = await readProcStat(process.ppid);
    writeFileSync(
      markerPath(dir, process.pid),
      JSON.stringify({
        agent_name: "payments",
        tenant: "acme-corp",
        role: "main",
        container_pid: process.ppid,
        start_time: startTime,
        boot_id: readBootId(),
      }),
      { mode: 0o600 },
    );
    const r = await attestor.attestDetailed(process.pid);
    expect(sel(r.selectors).some((s) => s.startsWith("hexr:tenant:"))).toBe(false);
    expect(r.marker).toMatchObject({ trusted: false });
  });

  it("fails with a typed error for a pid that does not exist", async () => {
    const attestor = createUnixAttestor({ contextDir: dir });
    await expect(attestor.attest(2 ** 22 + 17)).rejects.toMatchObject({ code: "identity.attestation_failed" });
  });
});
