import { createOpenAI } from "@ai-sdk/openai";
import Anthropic from "@anthropic-ai/sdk";
import { SpanStatusCode } from "@opentelemetry/api";
import { generateText, streamText } from "ai";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { setupMemoryTelemetry, type MemoryTelemetry } from "../telemetry/memory.js";
import { ATTR, METRIC, SPAN } from "../telemetry/semconv.js";
import { withSpan } from "../telemetry/span.js";
import { hexrLlm, setLlmPrices, DEFAULT_PRICES, priceOf } from "./index.js";
import { REPLY, startFakeProviders, type FakeProviders } from "./test-support/fake-providers.js";

let fake: FakeProviders;
let t: MemoryTelemetry;
beforeAll(async () => {
  fake = await startFakeProviders();
});
afterAll(async () => fake?.close());
beforeEach(() => {
  t = setupMemoryTelemetry();
  fake.requests.length = 0;
});
afterEach(async () => t.shutdown());

const openai = () => new OpenAI({ apiKey: "sk-test-not-a-real-key-000000", baseURL: `${fake.url}/v1`, maxRetries: 0 });
const anthropic = () => new Anthropic({ apiKey: "sk-ant-test-not-a-real-key-0000", baseURL: fake.url, maxRetries: 0 });
const llmSpans = () => t.spansNamed(SPAN.LLM_CHAT);
const only = () => {
  const spans = llmSpans();
  expect(spans).toHaveLength(1);
  return spans[0]!;
};
const cost = (model: string, input: number, output: number) =>
  (input * priceOf(model)!.input + output * priceOf(model)!.output) / 1e6;

describe("hexrLlm with the OpenAI SDK", () => {
  it("records a chat completion with GenAI attributes, tokens and cost, and returns it unchanged", async () => {
    const client = hexrLlm(openai());
    const res = await client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "say hi to the team" }],
      temperature: 0.2,
      max_tokens: 50,
    });
    expect(res.choices[0]!.message.content).toBe(REPLY);
    expect(res.usage).toEqual({ prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 });
    const span = only();
    expect(span.attributes).toMatchObject({
      [ATTR.GEN_AI_OPERATION]: "chat",
      [ATTR.GEN_AI_PROVIDER]: "openai",
      [ATTR.GEN_AI_REQUEST_MODEL]: "gpt-4o",
      [ATTR.GEN_AI_RESPONSE_MODEL]: "gpt-4o-2024-08-06",
      [ATTR.GEN_AI_RESPONSE_ID]: "chatcmpl-fake1",
      [ATTR.GEN_AI_RESPONSE_FINISH_REASONS]: ["stop"],
      [ATTR.GEN_AI_REQUEST_TEMPERATURE]: 0.2,
      [ATTR.GEN_AI_REQUEST_MAX_TOKENS]: 50,
      [ATTR.GEN_AI_USAGE_INPUT_TOKENS]: 5,
      [ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]: 4,
      [ATTR.LLM_STREAMING]: false,
      [ATTR.SERVER_ADDRESS]: "127.0.0.1",
    });
    expect(span.attributes[ATTR.LLM_COST_USD]).toBeCloseTo(cost("gpt-4o", 5, 4), 12);
    expect(span.status.code).toBe(SpanStatusCode.OK);
    // no prompt or completion content by default
    expect(span.attributes[ATTR.GEN_AI_INPUT_MESSAGES]).toBeUndefined();
    expect(span.attributes[ATTR.GEN_AI_OUTPUT_MESSAGES]).toBeUndefined();
    // the request went out exactly as written
    expect(fake.requests[0]!.body).toEqual({
      model: "gpt-4o",
      messages: [{ role: "user", content: "say hi to the team" }],
      temperature: 0.2,
      max_tokens: 50,
    });
  });

  it("keeps the SDK's promise API (withResponse) and is a child of the active span", async () => {
    const client = hexrLlm(openai());
    const { data, response } = await withSpan(SPAN.AGENT_INVOKE, () =>
      client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }] }).withResponse(),
    );
    expect(response.status).toBe(200);
    expect(data.id).toBe("chatcmpl-fake1");
    const agent = t.spansNamed(SPAN.AGENT_INVOKE)[0]!;
    expect(only().parentSpanContext?.spanId).toBe(agent.spanContext().spanId);
  });

  it("measures a stream: time to first token, tokens from the usage chunk, span ends with the stream", async () => {
    const client = hexrLlm(openai());
    const stream = await client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "stream it please" }],
      stream: true,
    });
    expect(llmSpans()).toHaveLength(0); // not over until the stream is read
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text).toBe(REPLY);
    const span = only();
    expect(span.attributes).toMatchObject({
      [ATTR.LLM_STREAMING]: true,
      [ATTR.GEN_AI_USAGE_INPUT_TOKENS]: 3,
      [ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]: 4,
      [ATTR.GEN_AI_RESPONSE_FINISH_REASONS]: ["stop"],
    });
    expect(span.attributes[ATTR.LLM_TIME_TO_FIRST_TOKEN_MS]).toBeGreaterThan(0);
    expect(fake.requests[0]!.body["stream_options"]).toEqual({ include_usage: true });
  });

  it("leaves stream_options alone when asked to, and then has no token counts", async () => {
    const client = hexrLlm(openai(), { streamUsage: false });
    const stream = await client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    for await (const chunk of stream) void chunk;
    expect(fake.requests[0]!.body["stream_options"]).toBeUndefined();
    expect(only().attributes[ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]).toBeUndefined();
  });

  it("records the SDK's own helpers: chat.completions.stream() and a tee'd stream", async () => {
    const client = hexrLlm(openai());
    const runner = client.chat.completions.stream({ model: "gpt-4o", messages: [{ role: "user", content: "helper" }] });
    const final = await runner.finalChatCompletion();
    expect(final.choices[0]!.message.content).toBe(REPLY);
    expect(only().attributes[ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]).toBe(4);

    const stream = await client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "tee" }],
      stream: true,
    });
    const [a, b] = stream.tee();
    for await (const c of a) void c;
    for await (const c of b) void c;
    expect(llmSpans()).toHaveLength(2);
  });

  it("records the Responses API, plain and streamed", async () => {
    const client = hexrLlm(openai());
    const res = await client.responses.create({ model: "gpt-4o", input: "what is hexr", instructions: "be brief" });
    expect(res.output_text).toBe(REPLY);
    const stream = await client.responses.create({ model: "gpt-4o", input: "stream the answer", stream: true });
    let text = "";
    for await (const e of stream) if (e.type === "response.output_text.delta") text += e.delta;
    expect(text).toBe(REPLY);
    const [plain, streamed] = llmSpans();
    expect(plain!.attributes).toMatchObject({
      [ATTR.GEN_AI_RESPONSE_ID]: "resp_fake1",
      [ATTR.GEN_AI_USAGE_INPUT_TOKENS]: 5,
      [ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]: 4,
    });
    expect(streamed!.attributes).toMatchObject({
      [ATTR.LLM_STREAMING]: true,
      [ATTR.GEN_AI_USAGE_INPUT_TOKENS]: 3,
      [ATTR.GEN_AI_RESPONSE_FINISH_REASONS]: ["completed"],
    });
    expect(streamed!.attributes[ATTR.LLM_TIME_TO_FIRST_TOKEN_MS]).toBeGreaterThan(0);
  });

  it("records errors with their type and passes the SDK's own error class through", async () => {
    const client = hexrLlm(openai());
    fake.failNext(429);
    const err = await client.chat.completions
      .create({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const span = only();
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes[ATTR.ERROR_TYPE]).toBe("RateLimitError");
  });

  it("records a stream the server cuts off as failed, and the caller still gets the error", async () => {
    const client = hexrLlm(openai());
    fake.breakNextStream();
    const stream = await client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    const read = (async () => {
      for await (const c of stream) void c;
    })();
    await expect(read).rejects.toThrow();
    expect(only().status.code).toBe(SpanStatusCode.ERROR);
  });

  it("ends the span when the caller stops reading early", async () => {
    const client = hexrLlm(openai());
    const stream = await client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    for await (const c of stream) {
      void c;
      break;
    }
    expect(only().status.code).toBe(SpanStatusCode.OK);
  });
});

describe("hexrLlm with the Anthropic SDK", () => {
  it("records messages, counting cached prompt tokens as input", async () => {
    const client = hexrLlm(anthropic());
    const msg = await client.messages.create({
      model: "claude-haiku-4-5-20251001",
      max_tokens: 100,
      system: "be kind",
      messages: [{ role: "user", content: "hello there crew" }],
    });
    expect(msg.content).toEqual([{ type: "text", text: REPLY }]);
    const span = only();
    // 5 prompt words + 7 cache-read tokens
    expect(span.attributes).toMatchObject({
      [ATTR.GEN_AI_PROVIDER]: "anthropic",
      [ATTR.GEN_AI_REQUEST_MODEL]: "claude-haiku-4-5-20251001",
      [ATTR.GEN_AI_REQUEST_MAX_TOKENS]: 100,
      [ATTR.GEN_AI_USAGE_INPUT_TOKENS]: 12,
      [ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]: 4,
      [ATTR.GEN_AI_RESPONSE_FINISH_REASONS]: ["end_turn"],
    });
    expect(span.attributes[ATTR.LLM_COST_USD]).toBeCloseTo(cost("claude-haiku-4-5", 12, 4), 12);
  });

  it("records streams made with stream: true and with the messages.stream() helper", async () => {
    const client = hexrLlm(anthropic());
    const stream = await client.messages.create({
      model: "claude-haiku-4-5",
      max_tokens: 10,
      messages: [{ role: "user", content: "go" }],
      stream: true,
    });
    let text = "";
    for await (const e of stream) if (e.type === "content_block_delta" && e.delta.type === "text_delta") text += e.delta.text;
    expect(text).toBe(REPLY);
    const final = await client.messages
      .stream({ model: "claude-haiku-4-5", max_tokens: 10, messages: [{ role: "user", content: "again" }] })
      .finalMessage();
    expect(final.usage.output_tokens).toBe(4);
    const spans = llmSpans();
    expect(spans).toHaveLength(2);
    for (const s of spans) {
      expect(s.attributes).toMatchObject({
        [ATTR.LLM_STREAMING]: true,
        [ATTR.GEN_AI_USAGE_INPUT_TOKENS]: 8,
        [ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]: 4,
      });
      expect(s.attributes[ATTR.LLM_TIME_TO_FIRST_TOKEN_MS]).toBeGreaterThan(0);
    }
  });

  it("records an API error and a cut stream", async () => {
    const client = hexrLlm(anthropic());
    fake.failNext(400, "invalid_request_error");
    await expect(client.messages.create({ model: "claude-haiku-4-5", max_tokens: 1, messages: [] })).rejects.toBeInstanceOf(
      Anthropic.BadRequestError,
    );
    fake.breakNextStream();
    const stream = await client.messages.create({
      model: "claude-haiku-4-5",
      max_tokens: 1,
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    await expect(
      (async () => {
        for await (const e of stream) void e;
      })(),
    ).rejects.toThrow();
    expect(llmSpans().map((s) => s.status.code)).toEqual([SpanStatusCode.ERROR, SpanStatusCode.ERROR]);
  });
});

describe("hexrLlm with the Vercel AI SDK", () => {
  const provider = () => createOpenAI({ apiKey: "sk-test-not-a-real-key-000000", baseURL: `${fake.url}/v1` });

  it("records generateText through a wrapped model", async () => {
    const model = hexrLlm(provider().chat("gpt-4o"));
    const { text, usage } = await generateText({ model, prompt: "summarise the trace", maxRetries: 0 });
    expect(text).toBe(REPLY);
    expect(usage.outputTokens).toBe(4);
    expect(only().attributes).toMatchObject({
      [ATTR.GEN_AI_PROVIDER]: "openai",
      [ATTR.GEN_AI_REQUEST_MODEL]: "gpt-4o",
      [ATTR.GEN_AI_RESPONSE_MODEL]: "gpt-4o-2024-08-06",
      [ATTR.GEN_AI_USAGE_INPUT_TOKENS]: 3,
      [ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]: 4,
      [ATTR.LLM_STREAMING]: false,
    });
  });

  it("records streamText, with time to first token", async () => {
    const model = hexrLlm(provider().chat("gpt-4o-mini"));
    const result = streamText({ model, prompt: "stream a summary", maxRetries: 0 });
    let text = "";
    for await (const delta of result.textStream) text += delta;
    expect(text).toBe(REPLY);
    const span = only();
    expect(span.attributes).toMatchObject({ [ATTR.LLM_STREAMING]: true, [ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]: 4 });
    expect(span.attributes[ATTR.LLM_TIME_TO_FIRST_TOKEN_MS]).toBeGreaterThan(0);
    expect(span.attributes[ATTR.LLM_COST_USD]).toBeCloseTo(cost("gpt-4o-mini", 3, 4), 12);
  });

  it("records the Responses-API model too (openai('gpt-4o'))", async () => {
    const { text } = await generateText({ model: hexrLlm(provider()("gpt-4o")), prompt: "hi", maxRetries: 0 });
    expect(text).toBe(REPLY);
    expect(only().attributes[ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]).toBe(4);
  });
});

describe("hexrLlm options and guarantees", () => {
  it("records prompts and completions only when content capture is on, without credentials", async () => {
    const client = hexrLlm(openai(), { captureContent: true });
    await client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "my key is sk-proj-abcdefghijklmnopqrstuvwxyz" }],
    });
    const span = only();
    expect(span.attributes[ATTR.GEN_AI_INPUT_MESSAGES]).toContain("my key is [REDACTED]");
    expect(span.attributes[ATTR.GEN_AI_OUTPUT_MESSAGES]).toContain(REPLY);
  });

  it("follows HEXR_TELEMETRY_CAPTURE_CONTENT when no option is given", async () => {
    await t.shutdown();
    t = setupMemoryTelemetry({ env: { HEXR_TELEMETRY_CAPTURE_CONTENT: "true" } });
    const client = hexrLlm(openai());
    await client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "visible prompt" }] });
    expect(only().attributes[ATTR.GEN_AI_INPUT_MESSAGES]).toContain("visible prompt");
  });

  it("uses per-client and process-wide prices, and leaves cost out for unknown models", async () => {
    await hexrLlm(openai(), { prices: { "house-model": { input: 1, output: 2 } } }).chat.completions.create({
      model: "house-model",
      messages: [{ role: "user", content: "a b" }],
    });
    await hexrLlm(openai()).chat.completions.create({ model: "mystery-model", messages: [{ role: "user", content: "a b" }] });
    setLlmPrices({ "mystery-model": { input: 10, output: 10 } });
    await hexrLlm(openai()).chat.completions.create({ model: "mystery-model", messages: [{ role: "user", content: "a b" }] });
    const [own, unknown, global] = llmSpans();
    expect(own!.attributes[ATTR.LLM_COST_USD]).toBeCloseTo((2 * 1 + 4 * 2) / 1e6, 12);
    expect(unknown!.attributes[ATTR.LLM_COST_USD]).toBeUndefined();
    expect(global!.attributes[ATTR.LLM_COST_USD]).toBeCloseTo((2 * 10 + 4 * 10) / 1e6, 12);
    expect(() => setLlmPrices({ bad: { input: -1, output: 1 } })).toThrow(expect.objectContaining({ code: "llm.invalid_price" }));
    expect(priceOf("gpt-4o-mini-2024-07-18")).toEqual(DEFAULT_PRICES["gpt-4o-mini"]);
    expect(priceOf("openai/gpt-4.1")).toEqual(DEFAULT_PRICES["gpt-4.1"]);
    expect(priceOf("gpt-4omni")).toBeUndefined();
  });

  it("is idempotent, refuses what it does not know, and feeds the LLM metrics", async () => {
    const client = hexrLlm(hexrLlm(openai()));
    await client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "a b c" }] });
    expect(llmSpans()).toHaveLength(1);
    expect(() => hexrLlm({ notAClient: true })).toThrow(expect.objectContaining({ code: "llm.unsupported_client" }));
    await t.forceFlush();
    const points = t.metricExporter
      .getMetrics()
      .flatMap((rm) =>
        rm.scopeMetrics.flatMap((s) =>
          s.metrics.filter((m) => m.descriptor.name === METRIC.LLM_TOKENS).flatMap((m) => m.dataPoints),
        ),
      );
    expect(points.map((p) => [p.attributes["type"], p.value]).sort()).toEqual([
      ["input", 3],
      ["output", 4],
    ]);
  });

  it("keeps working with telemetry disabled", async () => {
    await t.shutdown();
    const client = hexrLlm(openai());
    const res = await client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] });
    expect(res.choices[0]!.message.content).toBe(REPLY);
  });
});
