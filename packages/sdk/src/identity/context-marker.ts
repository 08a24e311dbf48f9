import { AgentName, HexrError, RoleName, TenantName } from "@hexr/core";
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The process context marker the attestor joins with kernel facts: `{agent_name, tenant, role,
 * container_pid, start_time, boot_id}` in `<dir>/<pid>.json`. It only helps the process it names:
 * the attestor checks the pid, the file owner and the process start time against the kernel.
 */
export interface ContextMarker {
  agent_name: string;
  tenant: string;
  role: string;
  container_pid: number;
  start_time: string;
  boot_id: string;
}

/** Field 22 of /proc/<pid>/stat: the process start time in clock ticks since boot. */
export function processStartTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const start = fields[22 - 3];
  if (!start || !/^\d+$/.test(start))
    throw new HexrError("identity.proc_unreadable", `cannot read the start time of pid ${pid}`, { kind: "internal" });
  return start;
}

export function bootId(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
}

export interface WriteMarkerOptions {
  /** `<dataDir>/run/context` of the local platform. */
  dir: string;
  agentName: string;
  tenant: string;
  role?: string;
  /** The process the marker describes; default this one. */
  pid?: number;
}

function checkName(schema: typeof TenantName, value: string, what: string): string {
  const r = schema.safeParse(value);
  if (!r.success)
    throw new HexrError(
      "identity.invalid_name",
      `${what} '${value.slice(0, 80)}' must be a DNS label (lowercase letters, digits, '-')`,
      { kind: "invalid_argument" },
    );
  return r.data;
}

/** Writes the marker atomically, mode 0600; returns its path. */
export function writeContextMarker({ dir, agentName, tenant, role = "main", pid = process.pid }: WriteMarkerOptions): string {
  const marker: ContextMarker = {
    agent_name: checkName(AgentName, agentName, "agent name"),
    tenant: checkName(TenantName, tenant, "tenant"),
    role: checkName(RoleName, role, "role"),
    container_pid: pid,
    start_time: processStartTime(pid),
    boot_id: bootId(),
  };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${pid}.json`);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(marker) + "\n", { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
  return path;
}

export function removeContextMarker(dir: string, pid: number = process.pid): void {
  rmSync(join(dir, `${pid}.json`), { force: true });
}
