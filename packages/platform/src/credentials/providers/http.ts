import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { rootCertificates } from "node:tls";

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface PostOptions {
  headers?: Record<string, string>;
  timeoutMs: number;
  signal?: AbortSignal;
  agent?: HttpsAgent;
}

/** Cloud token responses are small; anything bigger is not one. */
const MAX_RESPONSE_BYTES = 1024 * 1024;

/** An HTTPS agent trusting the system roots plus `extraCa` (self-hosted or test endpoints). */
export function httpsAgentFor(extraCa: string[] | undefined): HttpsAgent | undefined {
  if (!extraCa || extraCa.length === 0) return undefined;
  return new HttpsAgent({ keepAlive: true, ca: [...rootCertificates, ...extraCa] });
}

/** Thrown for transport failures (refused, reset, TLS, timeout): the provider maps it to `cloud_unavailable`. */
export class TransportError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TransportError";
  }
}

/** POSTs `body` and reads the whole answer; rejects only on transport failures, never on HTTP status. */
export function post(url: string, body: string, opts: PostOptions): Promise<HttpResponse> {
  const u = new URL(url);
  const isHttps = u.protocol === "https:";
  const send = isHttps ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      u,
      {
        method: "POST",
        headers: { "content-length": Buffer.byteLength(body), accept: "application/json", ...opts.headers },
        timeout: opts.timeoutMs,
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(isHttps && opts.agent ? { agent: opts.agent } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy(new TransportError(`response from ${u.host} exceeds ${MAX_RESPONSE_BYTES} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", (err) => reject(new TransportError(err.message, { cause: err })));
      },
    );
    req.on("timeout", () => req.destroy(new TransportError(`no answer from ${u.host} within ${opts.timeoutMs} ms`)));
    req.on("error", (err) =>
      reject(err instanceof TransportError ? err : new TransportError(`${u.host}: ${err.message}`, { cause: err })),
    );
    req.end(body);
  });
}

export function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
