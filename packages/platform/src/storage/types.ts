/**
 * The storage interface every service persists through. SQL is written once, portable between
 * SQLite and PostgreSQL: `?` placeholders, TEXT/BIGINT/INTEGER columns, JSON and binary kept as TEXT
 * (base64 for binary), booleans as 0/1, timestamps as epoch milliseconds (BIGINT).
 */
export type SqlValue = string | number | bigint | boolean | null;

export interface RunResult {
  /** Rows inserted, updated or deleted. */
  changes: number;
}

export interface Queryable {
  all<T = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  get<T = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined>;
  run(sql: string, params?: readonly SqlValue[]): Promise<RunResult>;
}

export type Dialect = "sqlite" | "postgres";

export interface Migration {
  /** Globally unique and ordered within its service, e.g. `tenants/001-create`. Never renamed. */
  id: string;
  /** One SQL script, or one per dialect where they differ. Statements separated by `;`. */
  up: string | Record<Dialect, string>;
}

export interface Storage extends Queryable {
  readonly dialect: Dialect;
  /** Runs `fn` in one transaction; rolls back when it throws. Inside `fn` use `tx`, never the storage itself. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Applies the migrations not yet applied, in order, each in its own transaction; returns their ids. */
  migrate(migrations: readonly Migration[]): Promise<string[]>;
  /** Cheap liveness check used by /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** True when `err` is a uniqueness violation in either dialect. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string } | null;
  return e?.code === "SQLITE_CONSTRAINT_UNIQUE" || e?.code === "SQLITE_CONSTRAINT_PRIMARYKEY" || e?.code === "23505";
}
