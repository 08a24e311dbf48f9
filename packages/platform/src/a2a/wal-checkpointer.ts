/**
 * SQLite WAL checkpoints off the event loop. better-sqlite3 is synchronous, and an automatic
 * checkpoint (every 1000 WAL pages) syncs the database file inside whichever COMMIT crossed the
 * threshold: the whole server stalls for the fsync, tens of milliseconds on slow disks. Here the
 * request path never checkpoints (`wal_autocheckpoint = 0`); a worker thread with its own
 * connection runs PASSIVE checkpoints (they never block readers or the writer). Durability is
 * unchanged: commits are in the WAL either way.
 */
import { HexrError } from "@hexr/core";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import { createSqliteStorage } from "../storage/sqlite.js";
import type { Storage } from "../storage/types.js";

const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.filename);
db.pragma("busy_timeout = 1000");
const tick = () => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
  }
};
const timer = setInterval(tick, workerData.intervalMs);
parentPort.on("message", (m) => {
  if (m === "stop") {
    clearInterval(timer);
    tick();
    db.close();
    parentPort.postMessage({ stopped: true });
  }
});
`;

export interface CheckpointedSqliteOptions {
  filename: string;
  /** How often the worker checkpoints. */
  intervalMs?: number;
  onError?: (message: string) => void;
}

/** A SQLite Storage whose WAL is checkpointed by a worker thread instead of inside commits. */
export async function createCheckpointedSqliteStorage({
  filename,
  intervalMs = 500,
  onError,
}: CheckpointedSqliteOptions): Promise<Storage> {
  if (filename === ":memory:") return createSqliteStorage({ filename });
  const storage = createSqliteStorage({ filename });
  await storage.run("PRAGMA wal_autocheckpoint = 0");
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(WORKER, { eval: true, workerData: { filename, intervalMs, driver } });
  worker.unref();
  let failed = false;
  const fallBack = (message: string) => {
    onError?.(message);
    if (failed) return;
    failed = true;
    // Without the worker the WAL would grow forever: checkpoint in commits again.
    void storage.run("PRAGMA wal_autocheckpoint = 1000").catch(() => undefined);
  };
  worker.on("message", (m: { error?: string }) => {
    if (m.error) fallBack(m.error);
  });
  worker.on("error", (err) => fallBack(err.message));
  const close = storage.close.bind(storage);
  return Object.assign(storage, {
    async close() {
      if (!failed) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 2000);
          worker.once("message", () => {
            clearTimeout(t);
            resolve();
          });
          worker.postMessage("stop");
        });
      }
      await worker.terminate();
      await close();
    },
  });
}

/** `sqlite:/path` → checkpointed SQLite; anything else is not for this helper. */
export function sqliteFileOf(databaseUrl: string): string {
  if (!databaseUrl.startsWith("sqlite:"))
    throw new HexrError("a2a.not_sqlite", `${databaseUrl} is not a sqlite: URL`, { kind: "invalid_argument" });
  return databaseUrl.slice("sqlite:".length);
}
