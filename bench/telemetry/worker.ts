/**
 * One side of bench/telemetry (see run.ts): runs a trivial hexrAgent handler (1 ms of async work)
 * N times, with or without telemetry, and prints its latencies as JSON on stdout.
 *
 * - `direct`: the handler called in process, wrapped (or not) in the invocation span;
 * - `bridge`: POST /invoke on the SDK's agent bridge over loopback HTTP, as the sidecars call it.
 *
 * With telemetry, everything runs: setupTelemetry with the OTLP/protobuf exporter to a real
 * platform (`hexr up`), batch export, span-derived metrics pushed every second, redaction.
 */
import { Agent, request } from "node:http";
import { hexrAgent, setupTelemetry, traceAgentInvocation, type AgentContext } from "hexr";
import { startBridge } from "../../packages/sdk/dist/agent/bridge.js";

const [mode, countArg, endpoint, adminKey] = process.argv.slice(2);
const N = Number(countArg);
const instrumented = mode === "with";

const sleep1ms = () => new Promise<void>((r) => setTimeout(r, 1));
const def = hexrAgent({ name: "bench-agent" }, async (input: unknown) => {
  await sleep1ms();
  return input;
});
const handler = def.roles["main"]!;

const telemetry = instrumented
  ? setupTelemetry({
      spiffeId: "spiffe://hexr.local/agent/bench/bench-agent/main",
      tenant: "bench",
      agent: "bench-agent",
      role: "main",
      framework: "custom",
      endpoint,
      headers: { authorization: `Bearer ${adminKey}` },
      metricIntervalMs: 1000,
    })
  : undefined;

const ctx = {
  spiffeId: "spiffe://hexr.local/agent/bench/bench-agent/main",
  tenant: "bench",
  agent: "bench-agent",
  role: "main",
} as unknown as AgentContext;
const invoke = (input: unknown, c: AgentContext = ctx) =>
  instrumented ? traceAgentInvocation({ framework: "custom", caller: c.caller }, () => handler(input, c)) : handler(input, c);

/**
 * Latencies in ms, and how long (µs) the event loop was busy during the loop: the work this process
 * did, background export included, measured precisely even when the machine is loaded.
 */
async function timeLoop(n: number, fn: () => Promise<unknown>): Promise<{ ms: number[]; busyUs: number }> {
  const ms: number[] = [];
  const elu0 = performance.eventLoopUtilization();
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return { ms, busyUs: performance.eventLoopUtilization(elu0).active * 1000 };
}

const bridge = await startBridge({
  handler: (input, c) => invoke(input, c) as ReturnType<typeof handler>,
  meshToken: "bench-token",
  context: ({ caller, signal }) => ({ ...ctx, caller, signal }) as AgentContext,
});
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const body = JSON.stringify({ input: { q: "hello" } });
const post = () =>
  new Promise<void>((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: bridge.port,
        path: "/invoke",
        method: "POST",
        agent,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          "x-hexr-mesh-token": "bench-token",
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
      },
    );
    req.on("error", reject);
    req.end(body);
  });

// Warm-up, long enough for V8 to optimise the instrumentation too (a cold span costs several times a hot one).
const WARM = Math.max(2000, N);
await timeLoop(WARM, () => invoke({ q: "warm" }) as Promise<unknown>);
await timeLoop(WARM, post);
await telemetry?.forceFlush(10_000);
const direct = await timeLoop(N, () => invoke({ q: "hello" }) as Promise<unknown>);
// let the direct loop's spans leave before the bridge loop, so each loop pays for its own export
await telemetry?.forceFlush(10_000);
const viaBridge = await timeLoop(N, post);
await telemetry?.forceFlush(10_000);
const stats = telemetry ? { exported: telemetry.spanExportStats.exported, failed: telemetry.spanExportStats.failed } : undefined;
await telemetry?.shutdown();
agent.destroy();
await bridge.close();
process.stdout.write(JSON.stringify({ direct, bridge: viaBridge, stats }) + "\n");
