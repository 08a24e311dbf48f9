import type { Migration, Queryable, Storage } from "../../storage/types.js";

/**
 * Authority state: roots (self-signed trust anchors) and key slots. A slot is one generation of
 * signing material — an intermediate CA under a root plus a JWT signing key — that moves through
 * `prepared → active → old → retired`, as SPIRE's CA manager does. Private keys are stored sealed
 * with the master key (never as PEM); certificates and public keys in the clear (base64 DER).
 */
export const authorityMigrations: Migration[] = [
  {
    id: "identity/001-authority",
    up: `CREATE TABLE identity_roots (
      id TEXT PRIMARY KEY,
      trust_domain TEXT NOT NULL,
      cert_der TEXT NOT NULL,
      sealed_key TEXT,
      not_before BIGINT NOT NULL,
      not_after BIGINT NOT NULL,
      created_at BIGINT NOT NULL
    );
    CREATE TABLE identity_slots (
      id TEXT PRIMARY KEY,
      trust_domain TEXT NOT NULL,
      state TEXT NOT NULL,
      root_id TEXT NOT NULL REFERENCES identity_roots (id),
      x509_cert_der TEXT NOT NULL,
      x509_sealed_key TEXT,
      jwt_kid TEXT NOT NULL UNIQUE,
      jwt_public_der TEXT NOT NULL,
      jwt_sealed_key TEXT,
      not_before BIGINT NOT NULL,
      not_after BIGINT NOT NULL,
      created_at BIGINT NOT NULL,
      activated_at BIGINT,
      deactivated_at BIGINT,
      retired_at BIGINT
    );
    CREATE UNIQUE INDEX identity_slots_one_active ON identity_slots (trust_domain) WHERE state = 'active';
    CREATE UNIQUE INDEX identity_slots_one_prepared ON identity_slots (trust_domain) WHERE state = 'prepared';
    CREATE TABLE identity_bundle (
      trust_domain TEXT PRIMARY KEY,
      sequence BIGINT NOT NULL,
      updated_at BIGINT NOT NULL
    )`,
  },
];

export type SlotState = "prepared" | "active" | "old" | "retired";

export interface RootRow {
  id: string;
  trust_domain: string;
  cert_der: string;
  sealed_key: string | null;
  not_before: number;
  not_after: number;
  created_at: number;
}

export interface SlotRow {
  id: string;
  trust_domain: string;
  state: SlotState;
  root_id: string;
  x509_cert_der: string;
  x509_sealed_key: string | null;
  jwt_kid: string;
  jwt_public_der: string;
  jwt_sealed_key: string | null;
  not_before: number;
  not_after: number;
  created_at: number;
  activated_at: number | null;
  deactivated_at: number | null;
  retired_at: number | null;
}

const ROOT_COLS = "id, trust_domain, cert_der, sealed_key, not_before, not_after, created_at";
const SLOT_COLS =
  "id, trust_domain, state, root_id, x509_cert_der, x509_sealed_key, jwt_kid, jwt_public_der, jwt_sealed_key, not_before, not_after, created_at, activated_at, deactivated_at, retired_at";

/** PostgreSQL returns BIGINT as string; normalise numeric columns. */
function num<T extends object>(row: T, cols: Array<keyof T>): T {
  for (const c of cols) if (row[c] !== null && row[c] !== undefined) (row[c] as unknown) = Number(row[c]);
  return row;
}

export class AuthorityStore {
  constructor(
    private readonly db: Storage,
    readonly trustDomain: string,
  ) {}

  transaction<T>(fn: (tx: AuthorityTx) => Promise<T>): Promise<T> {
    return this.db.transaction((q) => fn(new AuthorityTx(q, this.trustDomain)));
  }

  /** Current state in one read: live slots (not retired), the roots they use, and the bundle sequence. */
  async load(): Promise<{ slots: SlotRow[]; roots: RootRow[]; sequence: number }> {
    return new AuthorityTx(this.db, this.trustDomain).load();
  }
}

export class AuthorityTx {
  constructor(
    private readonly q: Queryable,
    private readonly td: string,
  ) {}

  async load(): Promise<{ slots: SlotRow[]; roots: RootRow[]; sequence: number }> {
    const slots = (
      await this.q.all<SlotRow>(
        `SELECT ${SLOT_COLS} FROM identity_slots WHERE trust_domain = ? AND state <> 'retired' ORDER BY created_at, id`,
        [this.td],
      )
    ).map((r) => num(r, ["not_before", "not_after", "created_at", "activated_at", "deactivated_at", "retired_at"]));
    const roots = (
      await this.q.all<RootRow>(
        `SELECT ${ROOT_COLS} FROM identity_roots WHERE trust_domain = ? AND id IN (SELECT root_id FROM identity_slots WHERE trust_domain = ? AND state <> 'retired') ORDER BY created_at, id`,
        [this.td, this.td],
      )
    ).map((r) => num(r, ["not_before", "not_after", "created_at"]));
    const seq = await this.q.get<{ sequence: number }>("SELECT sequence FROM identity_bundle WHERE trust_domain = ?", [this.td]);
    return { slots, roots, sequence: Number(seq?.sequence ?? 0) };
  }

  async insertRoot(r: RootRow): Promise<void> {
    await this.q.run(`INSERT INTO identity_roots (${ROOT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)`, [
      r.id,
      r.trust_domain,
      r.cert_der,
      r.sealed_key,
      r.not_before,
      r.not_after,
      r.created_at,
    ]);
  }

  async insertSlot(s: SlotRow): Promise<void> {
    await this.q.run(`INSERT INTO identity_slots (${SLOT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
      s.id,
      s.trust_domain,
      s.state,
      s.root_id,
      s.x509_cert_der,
      s.x509_sealed_key,
      s.jwt_kid,
      s.jwt_public_der,
      s.jwt_sealed_key,
      s.not_before,
      s.not_after,
      s.created_at,
      s.activated_at,
      s.deactivated_at,
      s.retired_at,
    ]);
  }

  async activate(preparedId: string, now: number): Promise<boolean> {
    await this.q.run("UPDATE identity_slots SET state = 'old', deactivated_at = ? WHERE trust_domain = ? AND state = 'active'", [
      now,
      this.td,
    ]);
    const r = await this.q.run(
      "UPDATE identity_slots SET state = 'active', activated_at = ? WHERE id = ? AND trust_domain = ? AND state = 'prepared'",
      [now, preparedId, this.td],
    );
    return r.changes === 1;
  }

  /** Drops a prepared slot that expired before it was ever activated. */
  async discardPrepared(id: string): Promise<boolean> {
    const r = await this.q.run(
      "UPDATE identity_slots SET state = 'retired', x509_sealed_key = NULL, jwt_sealed_key = NULL WHERE id = ? AND state = 'prepared'",
      [id],
    );
    return r.changes === 1;
  }

  /** Retires an old slot and forgets its private keys: nothing may be signed with them again. */
  async retire(id: string, now: number): Promise<boolean> {
    const r = await this.q.run(
      "UPDATE identity_slots SET state = 'retired', retired_at = ?, x509_sealed_key = NULL, jwt_sealed_key = NULL WHERE id = ? AND trust_domain = ? AND state = 'old'",
      [now, id, this.td],
    );
    return r.changes === 1;
  }

  /** Bumps `spiffe_sequence`; returns the new value. */
  async bumpSequence(now: number): Promise<number> {
    const cur = await this.q.get<{ sequence: number }>("SELECT sequence FROM identity_bundle WHERE trust_domain = ?", [this.td]);
    if (!cur) {
      await this.q.run("INSERT INTO identity_bundle (trust_domain, sequence, updated_at) VALUES (?, 1, ?)", [this.td, now]);
      return 1;
    }
    const next = Number(cur.sequence) + 1;
    await this.q.run("UPDATE identity_bundle SET sequence = ?, updated_at = ? WHERE trust_domain = ?", [next, now, this.td]);
    return next;
  }

  /** Forgets the private key of a root nobody references any more. */
  async dropUnusedRootKeys(): Promise<void> {
    await this.q.run(
      "UPDATE identity_roots SET sealed_key = NULL WHERE trust_domain = ? AND sealed_key IS NOT NULL AND id NOT IN (SELECT root_id FROM identity_slots WHERE trust_domain = ? AND state <> 'retired')",
      [this.td, this.td],
    );
  }
}
