import { readdirSync, readFileSync } from "node:fs";

const O_CLOEXEC = 0o2000000;

/**
 * File descriptors of this process that a child would inherit: those without close-on-exec, which
 * can only come from whoever started the platform (Node opens everything close-on-exec). bubblewrap
 * passes inherited descriptors on to the sandboxed program, so the spawner covers them with /dev/null.
 */
export function inheritableFds(procSelf = "/proc/self"): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync(`${procSelf}/fd`);
  } catch {
    return out;
  }
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd < 3) continue;
    try {
      const info = readFileSync(`${procSelf}/fdinfo/${fd}`, "utf8");
      const m = /^flags:\s*([0-7]+)$/m.exec(info);
      if (m && (parseInt(m[1]!, 8) & O_CLOEXEC) === 0) out.push(fd);
    } catch {
      // closed meanwhile (e.g. the directory handle of readdirSync itself)
    }
  }
  return out.sort((a, b) => a - b);
}
