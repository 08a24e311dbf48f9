import { HexrError } from "@hexr/core";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";

/** Readers of /proc/<pid> for attestation; the root is injectable so tests can point at fixtures. */
export const PROC_ROOT = "/proc";

export interface ProcStat {
  /** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot, kept as text (it is an opaque identity). */
  startTime: string;
  ppid: number;
}

/** Parses /proc/<pid>/stat; the command name (field 2) may contain spaces and parentheses, so split after the last ')'. */
export function parseProcStat(text: string): ProcStat {
  const close = text.lastIndexOf(")");
  if (close === -1 || text.indexOf("(") === -1) throw procError("stat has no parenthesized command name");
  const rest = text
    .slice(close + 2)
    .trim()
    .split(" ");
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  const startTime = rest[22 - 3];
  const ppid = Number(rest[4 - 3]);
  if (startTime === undefined || !/^\d+$/.test(startTime) || !Number.isInteger(ppid)) throw procError("stat is truncated");
  return { startTime, ppid };
}

export interface ProcIds {
  /** real, effective, saved, filesystem */
  uids: [number, number, number, number];
  gids: [number, number, number, number];
}

export function parseProcStatus(text: string): ProcIds {
  const ids = (key: string): [number, number, number, number] => {
    const line = text.split("\n").find((l) => l.startsWith(`${key}:`));
    const nums = line
      ?.slice(key.length + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    if (!nums || nums.length !== 4 || nums.some((n) => !Number.isInteger(n) || n < 0))
      throw procError(`status has no valid ${key} line`);
    return nums as [number, number, number, number];
  };
  return { uids: ids("Uid"), gids: ids("Gid") };
}

function procError(message: string, cause?: unknown): HexrError {
  return new HexrError("identity.attestation_failed", `cannot read the caller's process: ${message}`, {
    kind: "permission_denied",
    cause,
  });
}

async function read(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw procError(`${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err);
  }
}

function readSync(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw procError(`${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err);
  }
}

export async function readProcStat(pid: number, root = PROC_ROOT): Promise<ProcStat> {
  return parseProcStat(await read(`${root}/${pid}/stat`));
}

export function readProcStatSync(pid: number, root = PROC_ROOT): ProcStat {
  return parseProcStat(readSync(`${root}/${pid}/stat`));
}

export async function readProcIds(pid: number, root = PROC_ROOT): Promise<ProcIds> {
  return parseProcStatus(await read(`${root}/${pid}/status`));
}

export function readProcIdsSync(pid: number, root = PROC_ROOT): ProcIds {
  return parseProcStatus(readSync(`${root}/${pid}/status`));
}

let bootId: string | undefined;

/** The kernel's random id of this boot: start times are only unique together with it. */
export function readBootId(root = PROC_ROOT): string {
  if (bootId !== undefined && root === PROC_ROOT) return bootId;
  const id = readSync(`${root}/sys/kernel/random/boot_id`).trim();
  if (root === PROC_ROOT) bootId = id;
  return id;
}
