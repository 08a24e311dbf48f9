import { mkdirSync } from "node:fs";
import type { Logger } from "pino";
import { createUnixAttestor } from "../attestation/unix-attestor.js";
import type { Authority, WorkloadAttestor } from "../types.js";
import { contextDirPath, startWorkloadApiServer, workloadSocketPath, type WorkloadApiServer } from "./server.js";
import { WorkloadApiService, type EntrySource } from "./service.js";

export interface WorkloadApiOptions {
  authority: Authority;
  entries: EntrySource;
  dataDir: string;
  log?: Logger;
  /** Defaults to the unix attestor reading markers from `<dataDir>/run/context`. */
  attestor?: WorkloadAttestor;
  socketPath?: string;
  clock?: () => number;
  resyncIntervalMs?: number;
}

export interface WorkloadApi {
  readonly socketPath: string;
  readonly contextDir: string;
  readonly service: WorkloadApiService;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The local Workload API as the identity module runs it: attestor + service + socket server. */
export function createWorkloadApi(opts: WorkloadApiOptions): WorkloadApi {
  const socketPath = opts.socketPath ?? workloadSocketPath(opts.dataDir);
  const contextDir = contextDirPath(opts.dataDir);
  const log = opts.log?.child({ module: "workload-api" });
  const attestor = opts.attestor ?? createUnixAttestor({ contextDir, ...(log ? { log } : {}) });
  const service = new WorkloadApiService({
    authority: opts.authority,
    entries: opts.entries,
    attestor,
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(log ? { log } : {}),
  });
  let server: WorkloadApiServer | undefined;
  return {
    socketPath,
    contextDir,
    service,
    async start() {
      mkdirSync(contextDir, { recursive: true, mode: 0o700 });
      server = await startWorkloadApiServer({
        socketPath,
        service,
        ...(log ? { log } : {}),
        ...(opts.resyncIntervalMs ? { resyncIntervalMs: opts.resyncIntervalMs } : {}),
      });
    },
    async stop() {
      await server?.close();
      server = undefined;
      service.close();
    },
  };
}
