import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ATTR, SPAN, SpanStatusCode, setupTelemetry, withSpan, type Telemetry } from "hexr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hexr, startUp, waitForExit, type RunningPlatform } from "../helpers/cli.js";

// `hexr traces` against a real `hexr up`, fed by the SDK's real OTLP exporter.
let dataDir: string;
let up: RunningPlatform;
let telemetry: Telemetry;
let traceId = "";

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "hexr-traces-cli-"));
  up = await startUp(dataDir);
  telemetry = setupTelemetry({
    spiffeId: "spiffe://hexr.local/agent/acme/content-crew/researcher",
    tenant: "acme",
    agent: "content-crew",
    role: "researcher",
    framework: "custom",
    endpoint: up.url,
    headers: { authorization: `Bearer ${up.adminKey}` },
    batch: { scheduledDelayMs: 10 },
  });
  await withSpan(SPAN.AGENT_INVOKE, { attributes: { [ATTR.FRAMEWORK]: "custom" } }, async (root) => {
    traceId = root.spanContext().traceId;
    withSpan(SPAN.CACHE_LOOKUP, { attributes: { [ATTR.CACHE_TIER]: "L1", [ATTR.CACHE_HIT]: true } }, () => undefined);
    withSpan(
      SPAN.LLM_CHAT,
      {
        attributes: {
          [ATTR.GEN_AI_REQUEST_MODEL]: "gpt-4o",
          [ATTR.GEN_AI_USAGE_INPUT_TOKENS]: 10,
          [ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]: 20,
          [ATTR.LLM_COST_USD]: 0.00025,
        },
      },
      () => undefined,
    );
    withSpan(SPAN.A2A_SEND, { attributes: { [ATTR.A2A_TARGET]: "writer", [ATTR.A2A_TASK_STATE]: "failed" } }, (s) =>
      s.setStatus({ code: SpanStatusCode.ERROR, message: "writer refused" }),
    );
  });
  await telemetry.forceFlush();
  expect(telemetry.spanExportStats).toMatchObject({ exported: 4, failed: 0 });
});

afterAll(async () => {
  await telemetry?.shutdown();
  if (up) {
    up.child.kill("SIGTERM");
    await waitForExit(up.child);
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe("hexr traces", () => {
  it("prints recent traces as trees with durations, SPIFFE IDs and the useful attributes", { timeout: 120_000 }, () => {
    const r = hexr(["traces", "--data-dir", dataDir]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(new RegExp(`^trace ${traceId}  \\d{4}-\\d\\d-\\d\\d .*  1 error\\(s\\)  4 spans$`));
    expect(lines[1]).toMatch(
      /^└─ hexr\.agent\.invoke {2}[\d.]+ (ms|s) {2}spiffe:\/\/hexr\.local\/agent\/acme\/content-crew\/researcher$/,
    );
    expect(lines[2]).toMatch(/^ {3}├─ hexr\.cache\.lookup {2}.* {2}L1 hit$/);
    expect(lines[3]).toMatch(/^ {3}├─ hexr\.llm\.chat {2}.* {2}gpt-4o {2}10→20 tokens {2}\$0\.00025$/);
    expect(lines[4]).toMatch(/^ {3}└─ hexr\.a2a\.send {2}[\d.]+ (ms|s) {2}✗ writer refused {2}spiffe:.* {2}→ writer \(failed\)$/);
  });

  it("shows one trace by id, and prints JSON for scripts", { timeout: 120_000 }, () => {
    const one = hexr(["traces", "--trace", traceId.toUpperCase(), "--data-dir", dataDir]);
    expect(one.code).toBe(0);
    expect(one.stdout.split("\n")[0]).toContain(`trace ${traceId}`);
    const json = hexr(["traces", "--agent", "content-crew", "--since", "1h", "--json", "--data-dir", dataDir]);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as Array<{ traceId: string; spans: Array<{ name: string; spiffeId: string }> }>;
    expect(parsed.map((t) => t.traceId)).toContain(traceId);
    expect(parsed.find((t) => t.traceId === traceId)!.spans.every((s) => s.spiffeId.endsWith("/content-crew/researcher"))).toBe(
      true,
    );
    const none = hexr(["traces", "--agent", "nobody", "--data-dir", dataDir]);
    expect([none.code, none.stdout]).toEqual([0, expect.stringContaining("no traces")]);
  });

  it("answers bad input with one line and the right exit code", { timeout: 180_000 }, () => {
    for (const [args, code, message] of [
      [["--trace", "xyz"], 2, "--trace must be a trace id of 32 hex digits"],
      [["--limit", "0"], 2, "--limit must be a whole number from 1 to 100"],
      [["--status", "meh"], 2, "--status must be ok or error"],
      [["--since", "yesterday"], 2, "since"],
      [["--trace", "0".repeat(31) + "1"], 4, "no trace"],
    ] as const) {
      const r = hexr(["traces", ...args, "--data-dir", dataDir]);
      expect(r.code).toBe(code);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toContain(message);
    }
    const json = hexr(["traces", "--trace", "xyz", "--json", "--data-dir", dataDir]);
    expect(JSON.parse(json.stderr)).toEqual({ error: { code: "cli.usage", message: expect.any(String) } });
    const elsewhere = hexr(["traces", "--data-dir", mkdtempSync(join(tmpdir(), "hexr-none-"))]);
    expect(elsewhere.code).toBe(69);
  });
});
