/**
 * A lean HTTP/1.1 keep-alive load client over raw sockets: the client must cost far less CPU than
 * the servers it compares, or both measure the client. One request in flight per connection;
 * responses with Content-Length or chunked bodies (SSE) are parsed and checked by the caller.
 */
import { connect, type Socket } from "node:net";

export interface RawResponse {
  status: number;
  body: string;
}

/** One keep-alive connection issuing requests one after another. */
export class RawConnection {
  private socket: Socket;
  private buf = "";
  private pending: { resolve: (r: RawResponse) => void; reject: (e: Error) => void } | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      this.buf += d;
      this.tryParse();
    });
    socket.on("error", (e) => this.fail(e));
    socket.on("close", () => this.fail(new Error("connection closed")));
  }

  static open(port: number, host = "127.0.0.1"): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const s = connect(port, host, () => resolve(new RawConnection(s)));
      s.once("error", reject);
    });
  }

  private fail(e: Error): void {
    const p = this.pending;
    this.pending = undefined;
    p?.reject(e);
  }

  private tryParse(): void {
    if (!this.pending) return;
    const head = this.buf.indexOf("\r\n\r\n");
    if (head === -1) return;
    const headers = this.buf.slice(0, head).toLowerCase();
    const status = Number(headers.slice(9, 12));
    const start = head + 4;
    let body: string;
    let end: number;
    const cl = /\r\ncontent-length:\s*(\d+)/.exec(headers);
    if (cl) {
      end = start + Number(cl[1]);
      if (this.buf.length < end) return;
      body = this.buf.slice(start, end);
    } else if (headers.includes("transfer-encoding: chunked")) {
      let pos = start;
      const parts: string[] = [];
      for (;;) {
        const nl = this.buf.indexOf("\r\n", pos);
        if (nl === -1) return;
        const size = parseInt(this.buf.slice(pos, nl), 16);
        if (this.buf.length < nl + 2 + size + 2) return;
        if (size === 0) {
          end = nl + 4;
          break;
        }
        parts.push(this.buf.slice(nl + 2, nl + 2 + size));
        pos = nl + 2 + size + 2;
      }
      body = parts.join("");
    } else {
      this.fail(new Error(`unsupported response framing: ${headers.split("\r\n")[0]}`));
      return;
    }
    this.buf = this.buf.slice(end);
    const p = this.pending;
    this.pending = undefined;
    // Bodies are ASCII JSON here; latin1 keeps the byte counts right for the framing.
    p.resolve({ status, body: Buffer.from(body, "latin1").toString("utf8") });
  }

  /** POSTs `body` to `path` and resolves with the full response. */
  post(path: string, body: string, headers: Record<string, string>): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      let head = `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: ${Buffer.byteLength(body)}\r\n`;
      for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
      this.socket.write(head + "\r\n" + body);
    });
  }

  close(): void {
    this.pending = undefined;
    this.socket.destroy();
  }
}
