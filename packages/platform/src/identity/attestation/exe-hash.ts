import { createHash } from "node:crypto";
import { createReadStream, statSync } from "node:fs";

export interface ExeHasherOptions {
  /** Binaries remembered; a node binary takes ~0.3 s to hash, so each is hashed once per version. */
  maxEntries?: number;
}

/**
 * SHA-256 of a process's executable, read through `/proc/<pid>/exe` (the binary actually running,
 * even if its path was replaced since) and cached by (device, inode, size, mtime, ctime).
 */
export function createExeHasher({ maxEntries = 256 }: ExeHasherOptions = {}) {
  const cache = new Map<string, Promise<string>>();
  return {
    async hash(exeLink: string): Promise<string> {
      const st = statSync(exeLink, { bigint: true });
      const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      let pending = cache.get(key);
      if (pending) {
        // Refresh its place in the LRU order.
        cache.delete(key);
        cache.set(key, pending);
        return pending;
      }
      pending = new Promise<string>((resolve, reject) => {
        const h = createHash("sha256");
        createReadStream(exeLink)
          .on("data", (chunk) => h.update(chunk))
          .on("error", reject)
          .on("end", () => resolve(h.digest("hex")));
      });
      cache.set(key, pending);
      pending.catch(() => cache.delete(key));
      while (cache.size > maxEntries) cache.delete(cache.keys().next().value as string);
      return pending;
    },
    get size(): number {
      return cache.size;
    },
  };
}
export type ExeHasher = ReturnType<typeof createExeHasher>;
