/**
 * Readers for the package archives a microVM execution installs (wheels are zip files, npm packages
 * gzipped tar files), in memory: nothing of an archive is written on the host. The guest gets the
 * files as a flat bundle its job process writes out with plain file calls (under TCG, importing
 * python's zipfile and tarfile alone takes about a second).
 */

import { HexrError } from "@hexr/core";
import { gunzipSync, inflateRawSync } from "node:zlib";

export interface ArchiveFile {
  /** Relative path, `/`-separated, checked: no absolute paths, no `.` or `..` parts. */
  path: string;
  executable: boolean;
  data: Buffer;
}

function broken(origin: string, why: string): HexrError {
  return new HexrError("sandbox.package_install_failed", `the package archive ${origin} cannot be read: ${why}`, {
    kind: "failed_precondition",
  });
}

/** A relative path that stays where it is put, or undefined. */
export function safePath(path: string): string | undefined {
  const clean = path.replace(/\/+$/, "");
  if (!clean || clean.startsWith("/") || /[\\\0\n]/.test(clean)) return undefined;
  return clean.split("/").some((p) => p === "" || p === "." || p === "..") ? undefined : clean;
}

/** Keeps track of how much an archive unpacks to, so a small archive cannot fill the guest. */
export class Budget {
  used = 0;
  constructor(
    readonly max: number,
    private readonly tooLarge: (bytes: number) => HexrError,
  ) {}

  take(bytes: number): void {
    this.used += bytes;
    if (this.used > this.max) throw this.tooLarge(this.used);
  }

  get left(): number {
    return this.max - this.used;
  }
}

/** The files of a zip archive (stored or deflated entries; directories skipped). */
export function readZip(buf: Buffer, origin: string, budget: Budget): ArchiveFile[] {
  // The end-of-central-directory record: its 22 bytes plus a comment of up to 64 KiB at the end.
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 65535); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw broken(origin, "not a zip file");
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const out: ArchiveFile[] = [];
  for (let n = 0; n < count; n++) {
    if (p + 46 > buf.length || buf.readUInt32LE(p) !== 0x02014b50) throw broken(origin, "a damaged central directory");
    const method = buf.readUInt16LE(p + 10);
    const compressed = buf.readUInt32LE(p + 20);
    const size = buf.readUInt32LE(p + 24);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const attrs = buf.readUInt32LE(p + 38);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.toString("utf8", p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    if (name.endsWith("/")) continue;
    const path = safePath(name);
    if (!path) throw broken(origin, `it holds the path '${name.slice(0, 200)}'`);
    if (local + 30 > buf.length || buf.readUInt32LE(local) !== 0x04034b50) throw broken(origin, `a damaged entry ${path}`);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const raw = buf.subarray(start, start + compressed);
    budget.take(size);
    let data: Buffer;
    if (method === 0) data = Buffer.from(raw);
    else if (method === 8) {
      try {
        data = inflateRawSync(raw, { maxOutputLength: Math.max(1, size) });
      } catch (err) {
        throw broken(origin, `${path}: ${(err as Error).message}`);
      }
    } else throw broken(origin, `${path} is compressed with method ${method} (only stored and deflated entries are read)`);
    if (data.length !== size) throw broken(origin, `${path} is ${data.length} bytes, its header says ${size}`);
    out.push({ path, executable: ((attrs >>> 16) & 0o111) !== 0, data });
  }
  return out;
}

/** The files of a gzipped tar archive (regular files; pax and GNU long names honoured; links skipped). */
export function readTarGz(gz: Buffer, origin: string, budget: Budget): ArchiveFile[] {
  let tar: Buffer;
  try {
    tar = gunzipSync(gz, { maxOutputLength: Math.max(1, budget.left + 1024 * 1024) });
  } catch (err) {
    throw broken(origin, (err as Error).message);
  }
  const out: ArchiveFile[] = [];
  const field = (h: Buffer, off: number, len: number) => h.toString("utf8", off, off + len).replace(/\0[\s\S]*$/, "");
  let next: { path?: string } = {};
  for (let p = 0; p + 512 <= tar.length;) {
    const h = tar.subarray(p, p + 512);
    if (h.every((b) => b === 0)) break;
    const size = parseInt(field(h, 124, 12).trim() || "0", 8);
    if (!Number.isFinite(size) || size < 0) throw broken(origin, "a damaged tar header");
    const type = String.fromCharCode(h[156]!);
    const body = tar.subarray(p + 512, p + 512 + size);
    p += 512 + Math.ceil(size / 512) * 512;
    if (type === "x") {
      // pax: "<len> key=value\n" records; only the path matters here.
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString("utf8"));
      if (m) next.path = m[1];
      continue;
    }
    if (type === "L") {
      next.path = body.toString("utf8").replace(/\0[\s\S]*$/, "");
      continue;
    }
    if (type === "g") continue;
    const prefix = field(h, 345, 155);
    const name = next.path ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    next = {};
    if (type !== "0" && type !== "\0" && type !== "7") continue; // directories are implied; links are not needed
    const path = safePath(name);
    if (!path) throw broken(origin, `it holds the path '${name.slice(0, 200)}'`);
    budget.take(size);
    out.push({ path, executable: (parseInt(field(h, 100, 8).trim() || "0", 8) & 0o111) !== 0, data: Buffer.from(body) });
  }
  return out;
}

/**
 * The bundle the guest's job process writes out: per file a line `<x|-> <size> <path>\n` and the
 * bytes; paths relative to /tmp/.hexr (checked again in the guest).
 */
export function bundle(files: Array<{ path: string; executable: boolean; data: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    parts.push(Buffer.from(`${f.executable ? "x" : "-"} ${f.data.length} ${f.path}\n`), f.data);
  }
  return Buffer.concat(parts);
}
