import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSqliteStorage } from "../../../storage/sqlite.js";
import type { Storage } from "../../../storage/types.js";
import { readBootId, readProcStat } from "../../attestation/proc.js";
import { processSelectors } from "../../attestation/unix-attestor.js";
import { createAuthority, type AuthorityConfig, type LocalAuthority } from "../../authority/authority.js";
import { authorityMigrations } from "../../authority/store.js";
import { EntryService, type CreateEntryRequest } from "../../entries/service.js";
import { EntryStore, entryMigrations } from "../../entries/store.js";
import type { RegistrationEntry } from "../../types.js";
import { createWorkloadApi, type WorkloadApi } from "../workload-api.js";

export const TRUST_DOMAIN = "example.org";

export interface WorkloadApiFixture {
  dir: string;
  storage: Storage;
  authority: LocalAuthority;
  entries: EntryService;
  api: WorkloadApi;
  socketPath: string;
  /** Registers an entry pinned to one process (pid + start time), as `hexr run` does. */
  registerProcess(pid: number, spiffeId: string, extra?: Partial<CreateEntryRequest>): Promise<RegistrationEntry>;
  close(): Promise<void>;
}

/** A real authority (SQLite) + entry service + Workload API on a unix socket in a temp dir. */
export async function startWorkloadApiFixture(
  opts: { authority?: Partial<AuthorityConfig>; resyncIntervalMs?: number } = {},
): Promise<WorkloadApiFixture> {
  const dir = mkdtempSync(join(tmpdir(), "hexr-wl-"));
  const storage = createSqliteStorage({ filename: join(dir, "hexr.db") });
  await storage.migrate([...authorityMigrations, ...entryMigrations]);
  const authority = await createAuthority({
    storage,
    trustDomain: TRUST_DOMAIN,
    masterKey: randomBytes(32),
    issuer: "http://127.0.0.1:1",
    ...(opts.authority ? { config: opts.authority } : {}),
  });
  const entries = new EntryService({
    store: new EntryStore(storage),
    trustDomain: TRUST_DOMAIN,
    defaults: { x509SvidTtlSeconds: 3600, jwtSvidTtlSeconds: 300, maxSvidTtlSeconds: 86_400 },
  });
  await entries.refresh();
  const api = createWorkloadApi({
    authority,
    entries,
    dataDir: dir,
    ...(opts.resyncIntervalMs ? { resyncIntervalMs: opts.resyncIntervalMs } : {}),
  });
  await api.start();
  return {
    dir,
    storage,
    authority,
    entries,
    api,
    socketPath: api.socketPath,
    async registerProcess(pid, spiffeId, extra = {}) {
      const { startTime } = await readProcStat(pid);
      const selectors = processSelectors(pid, startTime, readBootId());
      return entries.create({ spiffeId, selectors, createdBy: "test", ...extra }, "test");
    },
    async close() {
      await api.stop();
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
