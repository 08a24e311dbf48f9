/**
 * The sandbox client's HTTP: node:http(s) over keep-alive connections. An agent may run many
 * executions per second, and undici's `fetch` costs several times the CPU of a plain request for
 * these small JSON bodies (`bench/sandbox/cpu.ts` counts the client's CPU per execution).
 */

import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";

export interface TransportRequest {
  method: string;
  headers: Record<string, string>;
  body?: string;
  signal: AbortSignal;
}

export interface TransportResponse {
  status: number;
  text: string;
}

/** One request: resolves with the whole answer, rejects when the connection fails or `signal` aborts. */
export type Transport = (url: string, req: TransportRequest) => Promise<TransportResponse>;

const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

export const nodeTransport: Transport = (url, req) =>
  new Promise<TransportResponse>((resolve, reject) => {
    const u = new URL(url);
    const https = u.protocol === "https:";
    if (!https && u.protocol !== "http:") {
      reject(new Error(`unsupported protocol ${u.protocol}`));
      return;
    }
    if (req.signal.aborted) {
      reject(req.signal.reason as Error);
      return;
    }
    const headers: Record<string, string> = { ...req.headers };
    if (req.body !== undefined) headers["content-length"] = String(Buffer.byteLength(req.body));
    const options = { method: req.method, headers, agent: https ? agents.https : agents.http, signal: req.signal };
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    };
    const r = https ? httpsRequest(u, options, onResponse) : httpRequest(u, options, onResponse);
    r.on("error", reject);
    r.end(req.body);
  });

/** The same over a `fetch` implementation (one given in the client's options). */
export function fetchTransport(f: typeof fetch): Transport {
  return async (url, req) => {
    const res = await f(url, {
      method: req.method,
      headers: req.headers,
      ...(req.body !== undefined ? { body: req.body } : {}),
      signal: req.signal,
    });
    return { status: res.status, text: await res.text() };
  };
}
