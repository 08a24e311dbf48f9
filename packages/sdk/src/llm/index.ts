import { HexrError } from "@hexr/core";
import { instrumentAiSdkModel, isAiSdkModel } from "./ai-sdk.js";
import type { HexrLlmOptions } from "./call.js";
import { instrumentAnthropic, instrumentOpenAI, isAnthropicClient, isOpenAIClient } from "./providers.js";

export type { HexrLlmOptions } from "./call.js";
export { DEFAULT_PRICES, setLlmPrices, llmPrices, priceOf, costOf, type ModelPrice, type PriceTable } from "./prices.js";

const INSTRUMENTED = Symbol.for("hexr.llm.instrumented");

/**
 * Records every call of an LLM client as a `hexr.llm.chat` span (OpenTelemetry GenAI attributes,
 * tokens, cost, latency, time to first token for streams) and in the LLM metrics. Accepts an
 * OpenAI client (`chat.completions`, `responses`), an Anthropic client (`messages`, `beta.messages`)
 * or a Vercel AI SDK model (`openai("gpt-4o")`), instruments it in place and returns it: same
 * object, same type, same behaviour, including the SDKs' own stream and parse helpers.
 *
 * ```ts
 * const openai = hexrLlm(new OpenAI());
 * const { text } = await generateText({ model: hexrLlm(anthropic("claude-sonnet-4-5")), prompt });
 * ```
 */
export function hexrLlm<T extends object>(client: T, opts: HexrLlmOptions = {}): T {
  const c = client as unknown as Record<PropertyKey, unknown>;
  if (c[INSTRUMENTED]) return client;
  if (isAiSdkModel(c)) instrumentAiSdkModel(c as Record<string, unknown>, opts);
  else if (isOpenAIClient(c)) instrumentOpenAI(c as Record<string, unknown>, opts);
  else if (isAnthropicClient(c)) instrumentAnthropic(c as Record<string, unknown>, opts);
  else {
    throw new HexrError(
      "llm.unsupported_client",
      "hexrLlm accepts an OpenAI client, an Anthropic client or a Vercel AI SDK language model (e.g. openai('gpt-4o'))",
      { kind: "invalid_argument" },
    );
  }
  Object.defineProperty(c, INSTRUMENTED, { value: true, enumerable: false });
  return client;
}
