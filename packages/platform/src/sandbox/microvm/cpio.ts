/**
 * A cpio "newc" archive writer: the format the Linux kernel unpacks as an initramfs. Entries are
 * directories, regular files, symlinks and character devices; hard links are stored as copies.
 */

export type CpioEntry =
  | { type: "dir"; path: string; mode?: number }
  | { type: "file"; path: string; data: Buffer; mode?: number }
  | { type: "symlink"; path: string; target: string }
  | { type: "chardev"; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

const hex8 = (n: number) => (n >>> 0).toString(16).padStart(8, "0");
const pad4 = (n: number) => (4 - (n % 4)) % 4;

function header(fields: {
  ino: number;
  mode: number;
  nlink: number;
  size: number;
  rdevMajor?: number;
  rdevMinor?: number;
  name: string;
}): Buffer {
  const name = Buffer.from(fields.name + "\0");
  const h = Buffer.from(
    "070701" +
      [
        fields.ino,
        fields.mode,
        0,
        0,
        fields.nlink,
        0,
        fields.size,
        0,
        0,
        fields.rdevMajor ?? 0,
        fields.rdevMinor ?? 0,
        name.length,
        0,
      ]
        .map(hex8)
        .join(""),
    "ascii",
  );
  return Buffer.concat([h, name, Buffer.alloc(pad4(h.length + name.length))]);
}

/** Serializes entries in order (parents must come before their children). */
export function writeCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const name = e.path === "." ? "." : e.path.replace(/^\/+/, "");
    if (!name) continue;
    let mode: number;
    let data: Buffer = Buffer.alloc(0);
    let rdevMajor = 0;
    let rdevMinor = 0;
    switch (e.type) {
      case "dir":
        mode = S_IFDIR | (e.mode ?? 0o755);
        break;
      case "file":
        mode = S_IFREG | (e.mode ?? 0o644);
        data = e.data;
        break;
      case "symlink":
        mode = S_IFLNK | 0o777;
        data = Buffer.from(e.target);
        break;
      case "chardev":
        mode = S_IFCHR | (e.mode ?? 0o600);
        rdevMajor = e.major;
        rdevMinor = e.minor;
        break;
    }
    parts.push(header({ ino: ino++, mode, nlink: e.type === "dir" ? 2 : 1, size: data.length, rdevMajor, rdevMinor, name }));
    if (data.length) parts.push(data, Buffer.alloc(pad4(data.length)));
  }
  parts.push(header({ ino: 0, mode: 0, nlink: 1, size: 0, name: "TRAILER!!!" }));
  return Buffer.concat(parts);
}
