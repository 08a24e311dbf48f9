import { GrpcStatus, type GrpcStatusCode } from "@hexr/core";
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";

export { GrpcStatus, type GrpcStatusCode };

/** A protocol error: it crosses the wire as grpc-status + grpc-message. */
export class GrpcError extends Error {
  constructor(
    readonly code: GrpcStatusCode,
    message: string,
  ) {
    super(message);
    this.name = "GrpcError";
  }
}

const FRAME_HEADER = 5;

/** One length-prefixed message: compressed flag (always 0 here) + 4-byte big-endian length. */
export function encodeFrame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, FRAME_HEADER);
  return out;
}

/** Splits a body into messages; a compressed frame is refused since we never offer compression. */
export function decodeFrames(body: Buffer, maxMessageBytes: number): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < body.length) {
    if (body.length - off < FRAME_HEADER) throw new GrpcError(GrpcStatus.INTERNAL, "truncated gRPC frame");
    const flag = body[off]!;
    const len = body.readUInt32BE(off + 1);
    if (flag !== 0)
      throw new GrpcError(GrpcStatus.UNIMPLEMENTED, "compressed messages are not supported (grpc-accept-encoding: identity)");
    if (len > maxMessageBytes) throw new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, `message larger than ${maxMessageBytes} bytes`);
    if (body.length - off - FRAME_HEADER < len) throw new GrpcError(GrpcStatus.INTERNAL, "truncated gRPC frame");
    out.push(body.subarray(off + FRAME_HEADER, off + FRAME_HEADER + len));
    off += FRAME_HEADER + len;
  }
  return out;
}

/** grpc-message is percent-encoded: anything outside printable ASCII, and '%' itself. */
export function encodeGrpcMessage(message: string): string {
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** `grpc-timeout` (e.g. `100m`) in ms, or undefined when absent or malformed. */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (typeof value !== "string") return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  return m ? Number(m[1]) * TIMEOUT_UNIT_MS[m[2]!]! : undefined;
}

/**
 * The server side of one gRPC call on an HTTP/2 stream: response headers on the first message,
 * trailers (grpc-status, grpc-message) at the end, or a trailers-only response for an early error.
 */
export class GrpcResponder {
  private headersSent = false;
  private finished = false;

  constructor(private readonly stream: ServerHttp2Stream) {}

  get open(): boolean {
    return !this.finished && !this.stream.destroyed && !this.stream.closed;
  }

  send(message: Uint8Array): void {
    if (!this.open) return;
    if (!this.headersSent) {
      this.stream.respond(
        { ":status": 200, "content-type": "application/grpc", "grpc-accept-encoding": "identity" },
        { waitForTrailers: true },
      );
      this.headersSent = true;
    }
    this.stream.write(encodeFrame(message));
  }

  finish(code: GrpcStatusCode, message = ""): void {
    if (!this.open) return;
    this.finished = true;
    const trailers: Record<string, string> = { "grpc-status": String(code) };
    if (message) trailers["grpc-message"] = encodeGrpcMessage(message);
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond({ ":status": 200, "content-type": "application/grpc", ...trailers }, { endStream: true });
      return;
    }
    this.stream.once("wantTrailers", () => {
      try {
        this.stream.sendTrailers(trailers);
      } catch {
        // the peer reset the stream meanwhile
      }
    });
    this.stream.end();
  }
}

/** Checks what every gRPC request must look like; returns an HTTP status to answer with otherwise. */
export function checkGrpcRequest(headers: IncomingHttpHeaders): { status: number; message: string } | undefined {
  if (headers[":method"] !== "POST") return { status: 405, message: "gRPC requests use POST" };
  const ct = headers["content-type"];
  if (typeof ct !== "string" || !/^application\/grpc(\+proto)?(;.*)?$/.test(ct)) {
    return { status: 415, message: "content-type must be application/grpc" };
  }
  return undefined;
}

/** Reads a request body up to a limit; resolves with the bytes, rejects with a GrpcError. */
export function readBody(stream: ServerHttp2Stream, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        stream.removeAllListeners("data");
        stream.resume();
        reject(new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, `request larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    stream.once("end", () => resolve(Buffer.concat(chunks)));
    stream.once("aborted", () => reject(new GrpcError(GrpcStatus.CANCELLED, "the client cancelled the call")));
    stream.once("error", () => reject(new GrpcError(GrpcStatus.CANCELLED, "the stream failed")));
  });
}
