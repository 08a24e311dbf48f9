import { afterEach, describe, expect, it } from "vitest";
import { CALLER_HEADER, MESH_TOKEN_HEADER, startBridge } from "./bridge.js";
import type { AgentContext, AgentHandler } from "./define.js";

const TOKEN = "t".repeat(43);
let closeBridge: (() => Promise<void>) | undefined;
afterEach(async () => {
  await closeBridge?.();
  closeBridge = undefined;
});

async function bridge(handler: AgentHandler) {
  const seen: AgentContext[] = [];
  const b = await startBridge({
    handler,
    meshToken: TOKEN,
    context: (c) => {
      const ctx = {
        spiffeId: "spiffe://hexr.local/agent/t/a/main",
        tenant: "t",
        agent: "a",
        role: "main",
        call: async () => undefined,
        ...c,
      } as unknown as AgentContext;
      seen.push(ctx);
      return ctx;
    },
  });
  closeBridge = b.close;
  const invoke = (body: unknown, headers: Record<string, string> = { [MESH_TOKEN_HEADER]: TOKEN }) =>
    fetch(`http://127.0.0.1:${b.port}/invoke`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  return { invoke, seen, port: b.port };
}

describe("agent bridge", () => {
  it("runs the handler with the caller the proxy verified", async () => {
    const { invoke, seen } = await bridge(async (input) => ({ got: input }));
    const res = await invoke(
      { input: { q: 1 }, taskId: "task-1" },
      { [MESH_TOKEN_HEADER]: TOKEN, [CALLER_HEADER]: "spiffe://hexr.local/agent/t/b/main" },
    );
    expect(await res.json()).toEqual({ output: { got: { q: 1 } } });
    expect(seen[0]).toMatchObject({ caller: "spiffe://hexr.local/agent/t/b/main", taskId: "task-1" });
  });

  it("refuses callers without the mesh token, even with a caller header", async () => {
    const { invoke, seen } = await bridge(async () => "secret");
    for (const headers of [{}, { [MESH_TOKEN_HEADER]: "wrong" }, { [CALLER_HEADER]: "spiffe://hexr.local/agent/t/b/main" }]) {
      const res = await invoke({ input: 1 }, headers);
      expect(res.status).toBe(403);
    }
    expect(seen).toHaveLength(0);
  });

  it("streams generator updates as NDJSON when asked, and returns the last value otherwise", async () => {
    const { invoke } = await bridge(async function* () {
      yield "a";
      yield "b";
    });
    expect(await (await invoke({ input: null })).json()).toEqual({ output: "b" });
    const res = await invoke({ input: null, stream: true });
    expect(res.headers.get("content-type")).toBe("application/x-ndjson");
    expect(
      (await res.text())
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l)),
    ).toEqual([{ update: "a" }, { update: "b" }, { output: "b" }]);
  });

  it("hides unexpected handler errors and shows deliberate ones", async () => {
    let fail: Error = new Error("db password is hunter2");
    const { invoke } = await bridge(async () => {
      throw fail;
    });
    const hidden = await invoke({ input: 1 });
    expect(hidden.status).toBe(500);
    expect(await hidden.text()).not.toContain("hunter2");
    fail = Object.assign(new Error("send a text"), { expose: true });
    expect(await (await invoke({ input: 1 })).json()).toEqual({
      error: { code: "agent.handler_failed", message: "send a text" },
    });
  });

  it("rejects malformed bodies", async () => {
    const { invoke } = await bridge(async () => 1);
    expect((await invoke("{nope")).status).toBe(400);
    expect((await invoke({ notInput: 1 })).status).toBe(400);
  });

  it("aborts the handler's signal when the caller goes away", async () => {
    let aborted!: () => void;
    const wasAborted = new Promise<void>((r) => (aborted = r));
    const { port } = await bridge(async (_i, ctx) => {
      ctx.signal.addEventListener("abort", () => aborted());
      await new Promise((r) => setTimeout(r, 10_000));
      return 1;
    });
    const ac = new AbortController();
    const pending = fetch(`http://127.0.0.1:${port}/invoke`, {
      method: "POST",
      headers: { [MESH_TOKEN_HEADER]: TOKEN },
      body: '{"input":1}',
      signal: ac.signal,
    }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    await wasAborted;
    await pending;
  });
});
