import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HEXR_BIN, REPO, hexr, startUp, waitForExit, type RunningPlatform } from "../helpers/cli.js";

// Issue 9's acceptance test: run content-crew, send it a message through the platform's A2A
// ingress, and find one trace with spans of the platform, the researcher and the writer, each
// attributed to its SPIFFE ID, through the API and the CLI.

const TENANT = "acme-corp";
const RESEARCHER = `spiffe://hexr.local/agent/${TENANT}/content-crew/researcher`;
const WRITER = `spiffe://hexr.local/agent/${TENANT}/content-crew/writer`;
const PLATFORM = "spiffe://hexr.local/system/platform";

interface Span {
  spanId: string;
  parentSpanId: string | null;
  name: string;
  spiffeId: string | null;
  service: string | null;
  status: { code: string };
  attributes: Record<string, unknown>;
}

let dataDir: string;
let up: RunningPlatform;
let run: ChildProcess;
let runOutput = "";

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "hexr-crew-trace-"));
  up = await startUp(dataDir);
  expect(hexr(["tenants", "create", TENANT, "--data-dir", dataDir]).code).toBe(0);
  run = spawn(
    process.execPath,
    [HEXR_BIN, "run", join(REPO, "examples/content-crew/agent.ts"), "--tenant", TENANT, "--data-dir", dataDir, "--json"],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, HEXR_PLATFORM_URL: "", HEXR_API_KEY: "", OPENAI_API_KEY: "" },
    },
  );
  run.stderr!.on("data", (d: Buffer) => (runOutput += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`content-crew not ready:\n${runOutput}`)), 90_000);
    run.once("exit", (code) => reject(new Error(`hexr run exited ${code}:\n${runOutput}`)));
    createInterface({ input: run.stdout! }).on("line", (line) => {
      runOutput += line + "\n";
      try {
        if ((JSON.parse(line) as { event?: string }).event === "ready") {
          clearTimeout(timer);
          resolve();
        }
      } catch {
        // role output
      }
    });
  });
}, 120_000);

afterAll(async () => {
  if (run && run.exitCode === null) {
    run.kill("SIGINT");
    await waitForExit(run);
  }
  if (up) {
    up.child.kill("SIGTERM");
    await waitForExit(up.child);
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe("content-crew, traced end to end", () => {
  it(
    "one message gives one trace with the platform's, the researcher's and the writer's spans, each under its SPIFFE ID",
    { timeout: 120_000 },
    async () => {
      const res = await fetch(`${up.url}/a2a/${TENANT}/content-crew`, {
        method: "POST",
        headers: { authorization: `Bearer ${up.adminKey}`, "content-type": "application/json" },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "message/send",
          params: {
            message: {
              kind: "message",
              messageId: randomUUID(),
              role: "user",
              parts: [{ kind: "text", text: "Agents need identity. Identity makes agents accountable." }],
            },
          },
        }),
      });
      expect(res.status).toBe(200);
      const answer = (await res.json()) as { result?: { status?: { state?: string } }; error?: unknown };
      expect(answer.error).toBeUndefined();

      const auth = { authorization: `Bearer ${up.adminKey}` };
      let spans: Span[] = [];
      let traceId = "";
      for (
        let i = 0;
        i < 200 && !(spans.some((s) => s.spiffeId === WRITER) && spans.some((s) => s.spiffeId === RESEARCHER));
        i++
      ) {
        await new Promise((r) => setTimeout(r, 250));
        const list = (await (await fetch(`${up.url}/api/v1/traces?agent=content-crew&limit=5`, { headers: auth })).json()) as {
          items: Array<{ traceId: string }>;
        };
        if (!list.items[0]) continue;
        traceId = list.items[0].traceId;
        spans = ((await (await fetch(`${up.url}/api/v1/traces/${traceId}`, { headers: auth })).json()) as { spans: Span[] })
          .spans;
      }
      const byId = new Map(spans.map((s) => [s.spanId, s]));
      const who = (s: Span) => s.spiffeId;
      expect(new Set(spans.map(who))).toEqual(new Set([PLATFORM, RESEARCHER, WRITER]));

      // the platform's ingress span is the root; the researcher's invocation is below it
      const roots = spans.filter((s) => !s.parentSpanId || !byId.has(s.parentSpanId));
      expect(roots.map((s) => [s.name, who(s)])).toEqual([["POST /a2a/:tenant/:agent", PLATFORM]]);
      const invokes = spans.filter((s) => s.name === "hexr.agent.invoke");
      const researcher = invokes.find((s) => who(s) === RESEARCHER)!;
      const writer = invokes.find((s) => who(s) === WRITER)!;
      const ancestors = (s: Span): Span[] =>
        s.parentSpanId && byId.has(s.parentSpanId) ? [byId.get(s.parentSpanId)!, ...ancestors(byId.get(s.parentSpanId)!)] : [];
      expect(ancestors(researcher).map(who)).toContain(PLATFORM);
      // the researcher's call to the writer is a hexr.a2a.send span, and the writer's invocation is under it
      const send = spans.find((s) => s.name === "hexr.a2a.send" && who(s) === RESEARCHER)!;
      expect(send.attributes["hexr.a2a.target"]).toContain("writer");
      expect(ancestors(writer).map((s) => s.spanId)).toContain(send.spanId);
      expect(ancestors(send).map((s) => s.spanId)).toContain(researcher.spanId);
      for (const s of spans) expect(s.status.code).not.toBe("error");

      // the CLI shows the same tree
      const cli = hexr(["traces", "--trace", traceId, "--data-dir", dataDir]);
      expect(cli.code).toBe(0);
      for (const id of [PLATFORM, RESEARCHER, WRITER]) expect(cli.stdout).toContain(id);

      // and the metrics saw it, labelled by identity (agents push metrics every 15 s)
      const writerSeries = new RegExp(
        `hexr_agent_invocations_total\\{tenant="${TENANT}",agent="content-crew",role="writer",spiffe_id="${WRITER}",[^}]*status="ok"\\} [1-9]`,
      );
      let metrics = "";
      for (let i = 0; i < 160 && !writerSeries.test(metrics); i++) {
        await new Promise((r) => setTimeout(r, 250));
        metrics = await (await fetch(`${up.url}/metrics`, { headers: auth })).text();
      }
      expect(metrics).toMatch(writerSeries);
    },
  );
});
