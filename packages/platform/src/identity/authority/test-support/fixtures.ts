import { randomBytes } from "node:crypto";
import { sqliteFixture, type StorageFixture } from "../../../test-support/storage.js";
import type { Storage } from "../../../storage/types.js";
import { LocalAuthority, type AuthorityConfig } from "../authority.js";
import { authorityMigrations } from "../store.js";

/** A controllable clock for expiry and rotation tests. */
export class TestClock {
  constructor(public now = Date.now()) {}
  readonly fn = (): number => this.now;
  advance(ms: number): void {
    this.now += ms;
  }
}

export interface AuthorityFixture {
  storage: Storage;
  authority: LocalAuthority;
  masterKey: Buffer;
  clock: TestClock;
  fixture: StorageFixture;
  /** A second authority object over the same storage (a restart). */
  reopen(opts?: { masterKey?: Buffer }): Promise<LocalAuthority>;
  dispose(): Promise<void>;
}

export async function authorityFixture(
  opts: { fixture?: StorageFixture; trustDomain?: string; config?: Partial<AuthorityConfig>; issuer?: string } = {},
): Promise<AuthorityFixture> {
  const fixture = opts.fixture ?? sqliteFixture();
  const storage = await fixture.open();
  await storage.migrate(authorityMigrations);
  const masterKey = randomBytes(32);
  const clock = new TestClock();
  const make = (key: Buffer) =>
    new LocalAuthority({
      storage,
      trustDomain: opts.trustDomain ?? "hexr.local",
      masterKey: key,
      clock: clock.fn,
      ...(opts.issuer ? { issuer: opts.issuer } : {}),
      ...(opts.config ? { config: opts.config } : {}),
    });
  const authority = make(masterKey);
  await authority.init();
  return {
    storage,
    authority,
    masterKey,
    clock,
    fixture,
    async reopen(o = {}) {
      const a = make(o.masterKey ?? masterKey);
      await a.init();
      return a;
    },
    async dispose() {
      await storage.close();
      await fixture.cleanup();
    },
  };
}
