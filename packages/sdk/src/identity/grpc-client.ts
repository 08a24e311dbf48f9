import {
  connect as h2connect,
  constants as h2constants,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
} from "node:http2";
import { connect as netConnect } from "node:net";
import type { WorkloadEndpoint } from "./endpoint.js";
import { GrpcCode, WorkloadApiError } from "./errors.js";

const FRAME_HEADER = 5;

function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, FRAME_HEADER);
  return out;
}

function decodeGrpcMessage(v: string | string[] | undefined): string {
  if (typeof v !== "string") return "";
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

/** gRPC over HTTP/2: the status an HTTP error maps to when the server is not speaking gRPC. */
function statusForHttp(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return GrpcCode.INTERNAL;
    case 401:
      return GrpcCode.UNAUTHENTICATED;
    case 403:
      return GrpcCode.PERMISSION_DENIED;
    case 404:
      return GrpcCode.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcCode.UNAVAILABLE;
    default:
      return GrpcCode.UNKNOWN;
  }
}

export interface StreamHandle {
  cancel(): void;
  /** Resolves when the server ends the stream with OK or it is cancelled; rejects with WorkloadApiError otherwise. */
  done: Promise<void>;
}

export interface GrpcClientOptions {
  /** Metadata sent with every call (the Workload API's security header). */
  metadata?: Record<string, string>;
  maxMessageBytes?: number;
}

/**
 * A small gRPC client on node:http2 for unary and server-streaming calls, enough for the Workload
 * API. The connection is held only while a unary call is in flight: watch streams alone do not keep
 * the process alive.
 */
export class GrpcClient {
  private session: ClientHttp2Session | undefined;
  private inflight = 0;
  private readonly metadata: Record<string, string>;
  private readonly maxMessageBytes: number;

  constructor(
    private readonly endpoint: WorkloadEndpoint,
    opts: GrpcClientOptions = {},
  ) {
    this.metadata = opts.metadata ?? {};
    this.maxMessageBytes = opts.maxMessageBytes ?? 4 * 1024 * 1024;
  }

  private connection(): ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const ep = this.endpoint;
    const s = h2connect(
      ep.kind === "unix" ? "http://localhost" : `http://${ep.host.includes(":") ? `[${ep.host}]` : ep.host}:${ep.port}`,
      {
        createConnection: () => (ep.kind === "unix" ? netConnect(ep.path) : netConnect(ep.port, ep.host)),
      },
    );
    s.on("error", () => undefined);
    s.once("close", () => {
      if (this.session === s) this.session = undefined;
    });
    if (this.inflight === 0) s.unref();
    this.session = s;
    return s;
  }

  private hold(delta: 1 | -1): void {
    this.inflight += delta;
    const s = this.session;
    if (!s || s.destroyed) return;
    if (this.inflight > 0) s.ref();
    else s.unref();
  }

  private start(method: string, body: Buffer, timeoutMs: number | undefined): ClientHttp2Stream {
    const headers: Record<string, string> = {
      ":method": "POST",
      ":path": method,
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-accept-encoding": "identity",
      "user-agent": "hexr-sdk",
      ...this.metadata,
    };
    if (timeoutMs !== undefined) headers["grpc-timeout"] = `${Math.max(1, Math.ceil(timeoutMs))}m`;
    const req = this.connection().request(headers);
    req.end(frame(body));
    return req;
  }

  /** Runs a call, handing each message to `onMessage`; settles with the call's final status. */
  private run(req: ClientHttp2Stream, onMessage: (m: Buffer) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      let pending: Buffer = Buffer.alloc(0);
      let status: number | undefined;
      let message = "";
      let failed: WorkloadApiError | undefined;
      const fail = (e: WorkloadApiError) => {
        failed ??= e;
        req.close(h2constants.NGHTTP2_CANCEL);
      };
      const takeStatus = (h: IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) {
          status = Number(h["grpc-status"]);
          message = decodeGrpcMessage(h["grpc-message"]);
        }
      };
      req.on("response", (h) => {
        const http = Number(h[":status"]);
        if (http !== 200) return fail(new WorkloadApiError(statusForHttp(http), `HTTP ${http} from the Workload API`));
        const ct = String(h["content-type"] ?? "");
        if (!ct.startsWith("application/grpc"))
          return fail(new WorkloadApiError(GrpcCode.UNKNOWN, `unexpected content-type ${ct}`));
        takeStatus(h);
      });
      req.on("trailers", takeStatus);
      req.on("data", (chunk: Buffer) => {
        if (failed) return;
        pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
        while (pending.length >= FRAME_HEADER) {
          if (pending[0] !== 0)
            return fail(new WorkloadApiError(GrpcCode.INTERNAL, "compressed message received without negotiation"));
          const len = pending.readUInt32BE(1);
          if (len > this.maxMessageBytes)
            return fail(new WorkloadApiError(GrpcCode.RESOURCE_EXHAUSTED, `message larger than ${this.maxMessageBytes} bytes`));
          if (pending.length < FRAME_HEADER + len) break;
          const msg = pending.subarray(FRAME_HEADER, FRAME_HEADER + len);
          pending = pending.subarray(FRAME_HEADER + len);
          try {
            onMessage(Buffer.from(msg));
          } catch (err) {
            return fail(err instanceof WorkloadApiError ? err : new WorkloadApiError(GrpcCode.INTERNAL, (err as Error).message));
          }
        }
      });
      req.on(
        "error",
        (err) => (failed ??= new WorkloadApiError(GrpcCode.UNAVAILABLE, `Workload API connection failed: ${err.message}`)),
      );
      req.on("close", () => {
        if (failed) return reject(failed);
        if (status === undefined) {
          const cancelled = req.rstCode === h2constants.NGHTTP2_CANCEL;
          return reject(
            new WorkloadApiError(
              cancelled ? GrpcCode.CANCELLED : GrpcCode.UNAVAILABLE,
              cancelled ? "call cancelled" : "the Workload API closed the call without a status",
            ),
          );
        }
        if (status !== GrpcCode.OK) return reject(new WorkloadApiError(status, message || `gRPC status ${status}`));
        if (pending.length) return reject(new WorkloadApiError(GrpcCode.INTERNAL, "truncated message at end of stream"));
        resolve();
      });
    });
  }

  async unary(method: string, body: Buffer, opts: { timeoutMs?: number } = {}): Promise<Buffer> {
    this.hold(1);
    try {
      const req = this.start(method, body, opts.timeoutMs);
      let reply: Buffer | undefined;
      let count = 0;
      await this.run(req, (m) => {
        count++;
        reply = m;
      });
      if (count !== 1 || !reply) throw new WorkloadApiError(GrpcCode.INTERNAL, `expected one response message, got ${count}`);
      return reply;
    } finally {
      this.hold(-1);
    }
  }

  /** A server stream; `onMessage` gets every message until the stream ends or is cancelled. */
  stream(method: string, body: Buffer, onMessage: (m: Buffer) => void): StreamHandle {
    const req = this.start(method, body, undefined);
    let cancelled = false;
    const done = this.run(req, onMessage).catch((err: unknown) => {
      if (cancelled && err instanceof WorkloadApiError && err.grpcCode === GrpcCode.CANCELLED) return;
      throw err;
    });
    return {
      cancel() {
        cancelled = true;
        if (!req.closed) req.close(h2constants.NGHTTP2_CANCEL);
      },
      done,
    };
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}
