import { AgentName, RoleName, TenantName } from "@hexr/core";
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";

/**
 * The process context marker: `{agent_name, tenant, role, container_pid, start_time, boot_id}` in
 * `<dataDir>/run/context/<pid>.json`, written by `hexr run` (or the SDK) for one process. The
 * attestor believes it only when it agrees with what the kernel says about that process.
 */
export const ContextMarker = z.object({
  agent_name: AgentName,
  tenant: TenantName,
  role: RoleName,
  container_pid: z.number().int().positive(),
  /** /proc/<pid>/stat field 22 of the process the marker describes. */
  start_time: z.string().regex(/^\d{1,20}$/),
  boot_id: z.string().regex(/^[0-9a-f-]{8,64}$/),
});
export type ContextMarker = z.infer<typeof ContextMarker>;

export const MARKER_MAX_BYTES = 4096;

export function markerPath(contextDir: string, pid: number): string {
  return join(contextDir, `${pid}.json`);
}

/** The kernel facts a marker must agree with. */
export interface MarkerFacts {
  pid: number;
  /** Effective uid of the process: the marker file must belong to it. */
  uid: number;
  startTime: string;
  bootId: string;
}

export type MarkerVerdict = { trusted: true; marker: ContextMarker } | { trusted: false; reason: string };

/** Reads `<contextDir>/<pid>.json` and says whether it may be believed for this process, and why not. */
export async function readTrustedMarker(contextDir: string, facts: MarkerFacts): Promise<MarkerVerdict> {
  const path = markerPath(contextDir, facts.pid);
  // Markers are tiny and local: synchronous reads are cheaper than a thread-pool round trip per call.
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return { trusted: false, reason: "no marker" };
  }
  if (!st.isFile()) return { trusted: false, reason: "marker is not a regular file" };
  if (st.uid !== facts.uid)
    return { trusted: false, reason: `marker is owned by uid ${st.uid}, not the caller's uid ${facts.uid}` };
  if ((st.mode & 0o022) !== 0) return { trusted: false, reason: "marker is writable by group or others" };
  if (st.size > MARKER_MAX_BYTES) return { trusted: false, reason: "marker is too large" };
  let text: string;
  try {
    // O_NOFOLLOW: the file checked above cannot be swapped for a symlink in between.
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const again = fstatSync(fd);
      if (again.ino !== st.ino || again.dev !== st.dev) return { trusted: false, reason: "marker changed while being read" };
      const buf = Buffer.alloc(MARKER_MAX_BYTES);
      const n = readSync(fd, buf, 0, MARKER_MAX_BYTES, 0);
      text = buf.subarray(0, n).toString("utf8");
    } finally {
      closeSync(fd);
    }
  } catch {
    return { trusted: false, reason: "marker cannot be read" };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { trusted: false, reason: "marker is not JSON" };
  }
  const parsed = ContextMarker.safeParse(json);
  if (!parsed.success)
    return { trusted: false, reason: `marker is malformed (${parsed.error.issues[0]?.path.join(".") || "root"})` };
  const m = parsed.data;
  if (m.container_pid !== facts.pid)
    return { trusted: false, reason: `marker names pid ${m.container_pid}, the caller is pid ${facts.pid}` };
  if (m.boot_id !== facts.bootId) return { trusted: false, reason: "marker was written before the last boot" };
  if (m.start_time !== facts.startTime)
    return { trusted: false, reason: "marker was written for an earlier process with the same pid" };
  return { trusted: true, marker: m };
}
