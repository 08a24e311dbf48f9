import { Agent, request } from "node:http";
import { summarize, type LatencySummary } from "./stats.js";

export interface LoadOptions {
  url: string;
  headers?: Record<string, string>;
  /** concurrent keep-alive connections */
  concurrency: number;
  /** total requests, after warm-up */
  requests: number;
  warmup?: number;
}

/** Closed-loop HTTP load over keep-alive connections; every response is checked for 200 and read fully. */
export async function runLoad(opts: LoadOptions): Promise<LatencySummary> {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency });
  const url = new URL(opts.url);
  const one = () =>
    new Promise<number>((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      const req = request(
        { host: url.hostname, port: url.port, path: url.pathname + url.search, method: "GET", agent, headers: opts.headers },
        (res) => {
          res.resume();
          res.on("end", () => {
            if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode} from ${opts.url}`));
            else resolve(Number(process.hrtime.bigint() - t0) / 1e6);
          });
        },
      );
      req.on("error", reject);
      req.end();
    });
  const run = async (total: number, samples?: number[]) => {
    let issued = 0;
    await Promise.all(
      Array.from({ length: opts.concurrency }, async () => {
        while (issued < total) {
          issued++;
          const ms = await one();
          samples?.push(ms);
        }
      }),
    );
  };
  await run(opts.warmup ?? Math.min(2000, opts.requests / 5));
  const samples: number[] = [];
  const t0 = performance.now();
  await run(opts.requests, samples);
  const wall = performance.now() - t0;
  agent.destroy();
  return summarize(samples, wall);
}
