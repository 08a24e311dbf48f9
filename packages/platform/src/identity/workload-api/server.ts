import { HexrError, isHexrError } from "@hexr/core";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { createServer as createH2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { connect, createServer as createNetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import { trackCaller as defaultTrackCaller, type Caller } from "../attestation/caller.js";
import {
  checkGrpcRequest,
  decodeFrames,
  GrpcError,
  GrpcResponder,
  GrpcStatus,
  parseGrpcTimeout,
  readBody,
  type GrpcStatusCode,
} from "./grpc.js";
import {
  decode,
  encode,
  messages,
  SERVICE_NAME,
  type JwtSvidRequestMessage,
  type ValidateJwtSvidRequestMessage,
} from "./proto.js";
import type { AttestableCaller, WorkloadApiService } from "./service.js";

/** Longest path a unix socket address holds (sun_path is 108 bytes with its NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;

/**
 * `<dataDir>/run/workload.sock`, where the local platform serves the Workload API; when that path is
 * too long for a socket address, a private directory under the system temp dir named after the data
 * dir (platform.json records whichever is used).
 */
export function workloadSocketPath(dataDir: string): string {
  const preferred = join(dataDir, "run", "workload.sock");
  if (Buffer.byteLength(preferred) <= MAX_SOCKET_PATH_BYTES) return preferred;
  const uid = process.getuid?.() ?? 0;
  const tag = createHash("sha256").update(dataDir).digest("hex").slice(0, 16);
  return join(tmpdir(), `hexr-${uid}-${tag}`, "workload.sock");
}

/** `<dataDir>/run/context`: process context markers. */
export function contextDirPath(dataDir: string): string {
  return join(dataDir, "run", "context");
}

export interface WorkloadApiServerOptions {
  socketPath: string;
  service: WorkloadApiService;
  log?: Logger;
  /** Largest request message accepted. */
  maxMessageBytes?: number;
  /** How often an open stream re-attests its caller even when nothing announced a change. */
  resyncIntervalMs?: number;
  trackCaller?: (socket: Socket) => Caller;
}

export interface WorkloadApiServer {
  readonly socketPath: string;
  /** Ends open streams with UNAVAILABLE (clients reconnect), closes connections, removes the socket. */
  close(): Promise<void>;
}

const SECURITY_HEADER = "workload.spiffe.io";
const CALLER = Symbol("hexr.workloadCaller");
type ConnectionCaller = { caller: Caller } | { error: unknown };

interface Call {
  responder: GrpcResponder;
  caller: AttestableCaller;
  request: Buffer;
  /** Resolves when the client goes away or the server stops. */
  done: Promise<void>;
  isDone(): boolean;
}

type Method =
  | { kind: "unary"; run(call: Call): Promise<Uint8Array> }
  | { kind: "stream"; next(call: Call): Promise<{ bytes: Uint8Array; refreshAt?: number }> };

const UNSUPPORTED = new Set(["FetchWITSVID", "FetchWITBundles"]);

function methods(service: WorkloadApiService): Map<string, Method> {
  const path = (m: string) => `/${SERVICE_NAME}/${m}`;
  return new Map<string, Method>([
    [
      path("FetchX509SVID"),
      {
        kind: "stream",
        async next(call) {
          decode(messages.X509SVIDRequest, call.request);
          const state = await service.x509SvidState(call.caller);
          return { bytes: encode(messages.X509SVIDResponse, state.message), refreshAt: state.refreshAt };
        },
      },
    ],
    [
      path("FetchX509Bundles"),
      {
        kind: "stream",
        async next(call) {
          decode(messages.X509BundlesRequest, call.request);
          return { bytes: encode(messages.X509BundlesResponse, await service.x509BundlesState(call.caller)) };
        },
      },
    ],
    [
      path("FetchJWTBundles"),
      {
        kind: "stream",
        async next(call) {
          decode(messages.JWTBundlesRequest, call.request);
          return { bytes: encode(messages.JWTBundlesResponse, await service.jwtBundlesState(call.caller)) };
        },
      },
    ],
    [
      path("FetchJWTSVID"),
      {
        kind: "unary",
        async run(call) {
          const req = decode<JwtSvidRequestMessage>(messages.JWTSVIDRequest, call.request);
          return encode(messages.JWTSVIDResponse, await service.fetchJwtSvid(call.caller, req));
        },
      },
    ],
    [
      path("ValidateJWTSVID"),
      {
        kind: "unary",
        async run(call) {
          const req = decode<ValidateJwtSvidRequestMessage>(messages.ValidateJWTSVIDRequest, call.request);
          return encode(messages.ValidateJWTSVIDResponse, await service.validateJwtSvid(call.caller, req));
        },
      },
    ],
  ]);
}

const STATUS_BY_KIND: Partial<Record<string, GrpcStatusCode>> = {
  invalid_argument: GrpcStatus.INVALID_ARGUMENT,
  permission_denied: GrpcStatus.PERMISSION_DENIED,
  unauthenticated: GrpcStatus.UNAUTHENTICATED,
  not_found: GrpcStatus.NOT_FOUND,
  unavailable: GrpcStatus.UNAVAILABLE,
  timeout: GrpcStatus.DEADLINE_EXCEEDED,
  failed_precondition: GrpcStatus.FAILED_PRECONDITION,
};

/** Maps an inner error to a gRPC status once, at the edge; internal details never reach the caller. */
function toGrpcError(err: unknown, log: Logger | undefined): GrpcError {
  if (err instanceof GrpcError) return err;
  if (isHexrError(err)) {
    const code = STATUS_BY_KIND[err.kind];
    if (code !== undefined) return new GrpcError(code, err.message);
  }
  log?.error({ err }, "workload api: internal error");
  return new GrpcError(GrpcStatus.INTERNAL, "internal error");
}

/** The socket's directory gates who can connect: it must be ours, a real directory, closed to others. */
function checkPrivateDir(dir: string): void {
  const st = lstatSync(dir);
  const uid = process.getuid?.() ?? st.uid;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw new HexrError(
      "identity.workload_socket_dir_unsafe",
      `${dir} must be a directory owned by uid ${uid} with mode 0700 (it controls who can reach the Workload API)`,
      { kind: "failed_precondition" },
    );
  }
}

function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return Promise.resolve();
  if (!lstatSync(path).isSocket()) {
    return Promise.reject(
      new HexrError(
        "identity.workload_socket_blocked",
        `${path} exists and is not a socket; remove it or choose another data dir`,
        {
          kind: "conflict",
        },
      ),
    );
  }
  return new Promise((resolve, reject) => {
    const probe = connect(path);
    probe.once("connect", () => {
      probe.destroy();
      reject(new HexrError("identity.workload_socket_in_use", `another process serves ${path}`, { kind: "conflict" }));
    });
    probe.once("error", () => {
      // Nobody listens: a leftover from a process that died.
      try {
        unlinkSync(path);
        resolve();
      } catch (err) {
        reject(err as Error);
      }
    });
  });
}

/**
 * The SPIFFE Workload API on a unix socket. We own the HTTP/2 layer (node:http2 fed by a net.Server)
 * because gRPC libraries hide the connection, and the connection is the only thing the kernel vouches
 * for: each accepted socket's SO_PEERCRED names the calling process.
 */
export async function startWorkloadApiServer(opts: WorkloadApiServerOptions): Promise<WorkloadApiServer> {
  const { socketPath, service, log } = opts;
  const maxMessageBytes = opts.maxMessageBytes ?? 64 * 1024;
  const resyncIntervalMs = opts.resyncIntervalMs ?? 10_000;
  const track = opts.trackCaller ?? defaultTrackCaller;
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES)
    throw new HexrError(
      "identity.workload_socket_path",
      `the socket path ${socketPath} is longer than a unix socket address allows (107 bytes)`,
      {
        kind: "invalid_argument",
      },
    );
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  checkPrivateDir(dirname(socketPath));
  await removeStaleSocket(socketPath);

  const table = methods(service);
  const sessions = new Set<Http2Session>();
  const active = new Set<{ stop(): void }>();
  let closing = false;

  const h2 = createH2Server({ settings: { maxConcurrentStreams: 128 } });
  h2.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    session.on("error", (err) => log?.debug({ err: err.message }, "workload api: session error"));
  });
  h2.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    handle(stream, headers).catch((err: unknown) => log?.error({ err }, "workload api: unhandled call error"));
  });

  async function handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    stream.on("error", () => undefined);
    const badRequest = checkGrpcRequest(headers);
    if (badRequest) {
      stream.respond({ ":status": badRequest.status, "content-type": "text/plain; charset=utf-8" });
      stream.end(badRequest.message);
      return;
    }
    const responder = new GrpcResponder(stream);
    const path = String(headers[":path"] ?? "");
    const method = table.get(path);
    if (!method) {
      const name = path.startsWith(`/${SERVICE_NAME}/`) ? path.slice(SERVICE_NAME.length + 2) : "";
      responder.finish(
        GrpcStatus.UNIMPLEMENTED,
        UNSUPPORTED.has(name)
          ? `${name}: the WIT-SVID profile is not supported by this server`
          : `unknown method ${path.slice(0, 200)}`,
      );
      return;
    }
    if (headers[SECURITY_HEADER] !== "true") {
      responder.finish(GrpcStatus.INVALID_ARGUMENT, "security header missing from request");
      return;
    }
    const conn = (stream.session?.socket as unknown as { [CALLER]?: ConnectionCaller } | undefined)?.[CALLER];
    if (!conn || "error" in conn) {
      const e = toGrpcError(conn?.error ?? new GrpcError(GrpcStatus.PERMISSION_DENIED, "the caller could not be attested"), log);
      responder.finish(e.code, e.message);
      return;
    }

    let finished = false;
    let wake: () => void = () => undefined;
    const done = new Promise<void>((resolve) => {
      const end = () => {
        finished = true;
        resolve();
        wake();
      };
      stream.once("close", end);
      const stopper = {
        stop() {
          responder.finish(GrpcStatus.UNAVAILABLE, "the Workload API is shutting down");
          end();
        },
      };
      active.add(stopper);
      stream.once("close", () => active.delete(stopper));
    });
    const timeoutMs = parseGrpcTimeout(headers["grpc-timeout"]);
    const deadline =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            responder.finish(GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded");
            stream.close();
          }, timeoutMs);

    try {
      const frames = decodeFrames(await readBody(stream, maxMessageBytes + 5), maxMessageBytes);
      if (frames.length !== 1)
        throw new GrpcError(GrpcStatus.INTERNAL, `expected exactly one request message, got ${frames.length}`);
      const call: Call = { responder, caller: conn.caller, request: frames[0]!, done, isDone: () => finished || closing };
      if (method.kind === "unary") {
        const reply = await method.run(call);
        responder.send(reply);
        responder.finish(GrpcStatus.OK);
        return;
      }
      // Server streaming: the full state now, then again whenever it changes (SVID half-life, bundle, entries).
      let last: Buffer | undefined;
      const unsubscribe = service.onChange(() => wake());
      try {
        while (!call.isDone()) {
          const state = await method.next(call);
          if (call.isDone()) break;
          const bytes = Buffer.from(state.bytes);
          if (!last || !bytes.equals(last)) {
            responder.send(bytes);
            last = bytes;
          }
          const untilRefresh = state.refreshAt === undefined ? Infinity : state.refreshAt - Date.now();
          const delay = Math.max(50, Math.min(untilRefresh, resyncIntervalMs));
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, delay);
            wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
        }
      } finally {
        unsubscribe();
      }
    } catch (err) {
      const e = toGrpcError(err, log);
      log?.debug({ method: path, pid: conn.caller.pid, code: e.code, message: e.message }, "workload api: call failed");
      responder.finish(e.code, e.message);
    } finally {
      if (deadline) clearTimeout(deadline);
    }
  }

  const netServer = createNetServer((socket) => {
    let conn: ConnectionCaller;
    try {
      conn = { caller: track(socket) };
    } catch (err) {
      conn = { error: err };
    }
    (socket as unknown as Record<symbol, ConnectionCaller>)[CALLER] = conn;
    socket.once("close", () => {
      if ("caller" in conn) conn.caller.close();
    });
    socket.on("error", () => undefined);
    h2.emit("connection", socket);
  });

  await new Promise<void>((resolve, reject) => {
    netServer.once("error", reject);
    netServer.listen(socketPath, () => {
      netServer.off("error", reject);
      resolve();
    });
  });
  log?.info({ socket: socketPath }, "SPIFFE Workload API listening");

  let closed: Promise<void> | undefined;
  return {
    socketPath,
    close: () =>
      (closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((r) => netServer.close(() => r()));
        for (const a of [...active]) a.stop();
        for (const s of sessions) s.close();
        const grace = setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, 2000);
        await stopped;
        clearTimeout(grace);
        try {
          unlinkSync(socketPath);
        } catch {
          // already gone
        }
      })()),
  };
}
