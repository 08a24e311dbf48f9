import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local server that speaks the HTTP APIs of OpenAI (chat completions, responses) and Anthropic
 * (messages), JSON and SSE streaming, as their SDKs expect them. Replies are deterministic: the
 * reply text is fixed, input tokens are the number of words in the prompt, output tokens the
 * number of words in the reply.
 */
export interface FakeProviders {
  url: string;
  /** Request bodies received, by path. */
  requests: Array<{ path: string; body: Record<string, unknown>; headers: IncomingMessage["headers"] }>;
  /** The next request gets this error status instead of a reply. */
  failNext(status: number, type?: string): void;
  /** The next stream is cut after its first chunk (the socket is destroyed). */
  breakNextStream(): void;
  close(): Promise<void>;
}

export const REPLY = "Hexr traces every call";
const REPLY_WORDS = REPLY.split(" ");

function words(v: unknown): number {
  const text = JSON.stringify(v ?? "");
  return text
    .split(/[^A-Za-z0-9']+/)
    .filter(Boolean)
    .filter((w) => !["role", "user", "content", "system", "type", "text", "input_text", "assistant"].includes(w)).length;
}

function sse(res: ServerResponse): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
}

function send(res: ServerResponse, data: unknown, event?: string): void {
  res.write(`${event ? `event: ${event}\n` : ""}data: ${JSON.stringify(data)}\n\n`);
}

const tick = () => new Promise((r) => setTimeout(r, 2));

export async function startFakeProviders(): Promise<FakeProviders> {
  const requests: FakeProviders["requests"] = [];
  let failure: { status: number; type: string } | undefined;
  let breakStream = false;

  async function openaiChat(body: Record<string, unknown>, res: ServerResponse) {
    const model = String(body["model"]) === "gpt-4o" ? "gpt-4o-2024-08-06" : String(body["model"]);
    const input = words(body["messages"]);
    const usage = { prompt_tokens: input, completion_tokens: REPLY_WORDS.length, total_tokens: input + REPLY_WORDS.length };
    const base = { id: "chatcmpl-fake1", created: 1_700_000_000, model, system_fingerprint: "fp_fake" };
    if (body["stream"] !== true) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          ...base,
          object: "chat.completion",
          choices: [
            { index: 0, message: { role: "assistant", content: REPLY, refusal: null }, logprobs: null, finish_reason: "stop" },
          ],
          usage,
        }),
      );
      return;
    }
    sse(res);
    const chunk = (delta: Record<string, unknown>, finish: string | null) => ({
      ...base,
      object: "chat.completion.chunk",
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });
    send(res, chunk({ role: "assistant", content: "" }, null));
    for (const [i, w] of REPLY_WORDS.entries()) {
      await tick();
      send(res, chunk({ content: i === 0 ? w : " " + w }, null));
      if (breakStream) {
        breakStream = false;
        res.destroy();
        return;
      }
    }
    send(res, chunk({}, "stop"));
    const opts = body["stream_options"] as { include_usage?: boolean } | undefined;
    if (opts?.include_usage) send(res, { ...base, object: "chat.completion.chunk", choices: [], usage });
    res.write("data: [DONE]\n\n");
    res.end();
  }

  async function openaiResponses(body: Record<string, unknown>, res: ServerResponse) {
    const model = String(body["model"]) === "gpt-4o" ? "gpt-4o-2024-08-06" : String(body["model"]);
    const input = words(body["input"]) + words(body["instructions"]);
    const response = (status: string, withOutput: boolean) => ({
      id: "resp_fake1",
      object: "response",
      created_at: 1_700_000_000,
      status,
      model,
      error: null,
      incomplete_details: null,
      instructions: body["instructions"] ?? null,
      output: withOutput
        ? [
            {
              type: "message",
              id: "msg_fake1",
              status: "completed",
              role: "assistant",
              content: [{ type: "output_text", text: REPLY, annotations: [] }],
            },
          ]
        : [],
      parallel_tool_calls: true,
      tool_choice: "auto",
      tools: [],
      usage: withOutput
        ? {
            input_tokens: input,
            input_tokens_details: { cached_tokens: 0 },
            output_tokens: REPLY_WORDS.length,
            output_tokens_details: { reasoning_tokens: 0 },
            total_tokens: input + REPLY_WORDS.length,
          }
        : null,
    });
    if (body["stream"] !== true) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(response("completed", true)));
      return;
    }
    sse(res);
    let seq = 0;
    send(res, { type: "response.created", sequence_number: seq++, response: response("in_progress", false) }, "response.created");
    for (const [i, w] of REPLY_WORDS.entries()) {
      await tick();
      send(
        res,
        {
          type: "response.output_text.delta",
          sequence_number: seq++,
          item_id: "msg_fake1",
          output_index: 0,
          content_index: 0,
          delta: i === 0 ? w : " " + w,
        },
        "response.output_text.delta",
      );
    }
    send(
      res,
      { type: "response.completed", sequence_number: seq++, response: response("completed", true) },
      "response.completed",
    );
    res.end();
  }

  async function anthropicMessages(body: Record<string, unknown>, res: ServerResponse) {
    const model = String(body["model"]);
    const input = words(body["messages"]) + words(body["system"]);
    const usage = {
      input_tokens: input,
      output_tokens: REPLY_WORDS.length,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 7,
    };
    if (body["stream"] !== true) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id: "msg_fake1",
          type: "message",
          role: "assistant",
          model,
          content: [{ type: "text", text: REPLY }],
          stop_reason: "end_turn",
          stop_sequence: null,
          usage,
        }),
      );
      return;
    }
    sse(res);
    send(
      res,
      {
        type: "message_start",
        message: {
          id: "msg_fake1",
          type: "message",
          role: "assistant",
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { ...usage, output_tokens: 1 },
        },
      },
      "message_start",
    );
    send(res, { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }, "content_block_start");
    for (const [i, w] of REPLY_WORDS.entries()) {
      await tick();
      send(
        res,
        { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: i === 0 ? w : " " + w } },
        "content_block_delta",
      );
      if (breakStream) {
        breakStream = false;
        res.destroy();
        return;
      }
    }
    send(res, { type: "content_block_stop", index: 0 }, "content_block_stop");
    send(
      res,
      {
        type: "message_delta",
        delta: { stop_reason: "end_turn", stop_sequence: null },
        usage: { output_tokens: REPLY_WORDS.length },
      },
      "message_delta",
    );
    send(res, { type: "message_stop" }, "message_stop");
    res.end();
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString() || "{}") as Record<string, unknown>;
      } catch {
        // keep {}
      }
      const path = (req.url ?? "").split("?")[0]!;
      requests.push({ path, body, headers: req.headers });
      if (failure) {
        const f = failure;
        failure = undefined;
        res.writeHead(f.status, { "content-type": "application/json", "x-should-retry": "false" });
        res.end(
          path.endsWith("/messages")
            ? JSON.stringify({ type: "error", error: { type: f.type, message: "fake failure" } })
            : JSON.stringify({ error: { message: "fake failure", type: f.type, code: null, param: null } }),
        );
        return;
      }
      const handler = path.endsWith("/chat/completions")
        ? openaiChat
        : path.endsWith("/responses")
          ? openaiResponses
          : path.endsWith("/messages")
            ? anthropicMessages
            : undefined;
      if (!handler) {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `no route ${path}` } }));
        return;
      }
      handler(body, res).catch(() => res.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    failNext(status, type = "rate_limit_error") {
      failure = { status, type };
    },
    breakNextStream() {
      breakStream = true;
    },
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
