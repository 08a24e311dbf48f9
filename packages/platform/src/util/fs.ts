import { chmodSync, renameSync, writeFileSync } from "node:fs";

/** Writes a file atomically (temp + rename) with the given mode, so readers never see half of it. */
export function writeFileAtomic(path: string, data: string | Buffer, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}
