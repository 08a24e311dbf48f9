import { readlinkSync } from "node:fs";
import type { Logger } from "pino";
import type { Selector, WorkloadAttestor } from "../types.js";
import { readTrustedMarker, type MarkerVerdict } from "./context-marker.js";
import { createExeHasher, type ExeHasher } from "./exe-hash.js";
import { PROC_ROOT, readBootId, readProcIdsSync, readProcStatSync } from "./proc.js";

/** Selectors that only one process of this boot can ever have: what `hexr run` pins its entries to. */
export function processSelectors(pid: number, startTime: string, bootId: string): Selector[] {
  return [
    { type: "hexr", value: `pid:${pid}` },
    { type: "hexr", value: `start:${startTime}@${bootId}` },
  ];
}

export interface UnixAttestation {
  selectors: Selector[];
  marker: MarkerVerdict;
}

export interface UnixAttestorOptions {
  /** `<dataDir>/run/context`: where process context markers live. */
  contextDir: string;
  procRoot?: string;
  hasher?: ExeHasher;
  log?: Logger;
}

/**
 * The unix workload attestor: everything comes from the kernel (/proc/<pid>) except the hexr:tenant,
 * hexr:agent and hexr:role selectors, which come from the process's context marker and only when the
 * marker agrees with the kernel (its pid, its owner uid, the process start time and boot).
 */
export function createUnixAttestor({
  contextDir,
  procRoot = PROC_ROOT,
  hasher = createExeHasher(),
  log,
}: UnixAttestorOptions): WorkloadAttestor & { attestDetailed(pid: number): Promise<UnixAttestation> } {
  async function attestDetailed(pid: number): Promise<UnixAttestation> {
    // procfs lives in memory: synchronous reads cost microseconds and skip the libuv thread pool.
    const ids = readProcIdsSync(pid, procRoot);
    const stat = readProcStatSync(pid, procRoot);
    const uid = ids.uids[1];
    const gid = ids.gids[1];
    const bootId = readBootId(procRoot);
    const selectors: Selector[] = [
      { type: "unix", value: `uid:${uid}` },
      { type: "unix", value: `gid:${gid}` },
    ];
    const exeLink = `${procRoot}/${pid}/exe`;
    try {
      const path = readlinkSync(exeLink);
      const sha256 = await hasher.hash(exeLink);
      selectors.push({ type: "unix", value: `path:${path}` }, { type: "unix", value: `sha256:${sha256}` });
    } catch (err) {
      // Without ptrace access to the caller we cannot see its binary; fewer selectors only ever match fewer entries.
      log?.debug({ pid, err: (err as Error).message }, "attestation: executable not readable");
    }
    selectors.push(...processSelectors(pid, stat.startTime, bootId));
    const marker = await readTrustedMarker(contextDir, { pid, uid, startTime: stat.startTime, bootId });
    if (marker.trusted) {
      selectors.push(
        { type: "hexr", value: `tenant:${marker.marker.tenant}` },
        { type: "hexr", value: `agent:${marker.marker.agent_name}` },
        { type: "hexr", value: `role:${marker.marker.role}` },
      );
    } else if (marker.reason !== "no marker") {
      log?.warn({ pid, reason: marker.reason }, "attestation: process context marker ignored");
    }
    return { selectors, marker };
  }
  return {
    name: "unix",
    attestDetailed,
    async attest(pid: number) {
      return (await attestDetailed(pid)).selectors;
    },
  };
}
