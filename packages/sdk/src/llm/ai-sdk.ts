import { LlmCall, type HexrLlmOptions, type LlmResponseInfo } from "./call.js";

type Obj = Record<string, unknown>;
type AnyFn = (...args: unknown[]) => unknown;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null;
const str = (v: unknown) => (typeof v === "string" && v ? v : undefined);
const numOf = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

/** A Vercel AI SDK language model (LanguageModelV2/V3): what `openai("gpt-4o")` returns. */
export function isAiSdkModel(m: unknown): boolean {
  return (
    isObj(m) &&
    typeof m["specificationVersion"] === "string" &&
    typeof m["doGenerate"] === "function" &&
    typeof m["doStream"] === "function"
  );
}

/** V2 usage has numbers; V3 has `{ total, ... }` objects. */
function usage(u: unknown): Pick<LlmResponseInfo, "inputTokens" | "outputTokens"> {
  if (!isObj(u)) return {};
  const pick = (v: unknown) => (isObj(v) ? numOf(v["total"]) : numOf(v));
  return { inputTokens: pick(u["inputTokens"]), outputTokens: pick(u["outputTokens"]) };
}

/** V2: a string; V3: `{ unified, raw }`. */
function finish(f: unknown): string[] | undefined {
  const v = isObj(f) ? (str(f["raw"]) ?? str(f["unified"])) : str(f);
  return v ? [v] : undefined;
}

function metadata(r: unknown): Pick<LlmResponseInfo, "id" | "model"> {
  return isObj(r) ? { id: str(r["id"]), model: str(r["modelId"]) } : {};
}

/** Instruments `doGenerate` and `doStream` on the model instance. */
export function instrumentAiSdkModel(model: Obj, opts: HexrLlmOptions): void {
  const provider = (str(model["provider"]) ?? "unknown").split(".")[0]!;
  const modelId = str(model["modelId"]);
  const start = (options: unknown, streaming: boolean): LlmCall | undefined => {
    try {
      const o = isObj(options) ? options : {};
      return new LlmCall(
        {
          provider,
          operation: "chat",
          model: modelId,
          streaming,
          maxTokens: o["maxOutputTokens"] ?? o["maxTokens"],
          temperature: o["temperature"],
          topP: o["topP"],
          input: o["prompt"],
        },
        opts,
      );
    } catch {
      return undefined;
    }
  };

  const doGenerate = model["doGenerate"] as AnyFn;
  const doStream = model["doStream"] as AnyFn;

  Object.defineProperty(model, "doGenerate", {
    configurable: true,
    writable: true,
    value: async function (this: unknown, options: unknown) {
      const call = start(options, false);
      let result: unknown;
      try {
        result = await doGenerate.call(this, options);
      } catch (err) {
        call?.end(err);
        throw err;
      }
      if (call) {
        try {
          const r = isObj(result) ? result : {};
          call.update({ ...metadata(r["response"]), finishReasons: finish(r["finishReason"]), ...usage(r["usage"]) });
          call.setOutput(r["content"] ?? r["text"]);
        } catch {
          // ignore
        }
        call.end();
      }
      return result;
    },
  });

  Object.defineProperty(model, "doStream", {
    configurable: true,
    writable: true,
    value: async function (this: unknown, options: unknown) {
      const call = start(options, true);
      let result: unknown;
      try {
        result = await doStream.call(this, options);
      } catch (err) {
        call?.end(err);
        throw err;
      }
      if (!call || !isObj(result) || !(result["stream"] instanceof ReadableStream)) {
        call?.end();
        return result;
      }
      return { ...result, stream: observeStream(result["stream"] as ReadableStream<unknown>, call) };
    },
  });
}

function onPart(call: LlmCall, part: unknown): void {
  if (!isObj(part)) return;
  switch (part["type"]) {
    case "text-delta":
      call.token(str(part["delta"]) ?? str(part["textDelta"]));
      break;
    case "reasoning-delta":
    case "tool-input-delta":
    case "tool-call":
      call.token();
      break;
    case "response-metadata":
      call.update(metadata(part));
      break;
    case "finish":
      call.update({ finishReasons: finish(part["finishReason"]), ...usage(part["usage"]) });
      break;
  }
}

/** Passes the stream through unchanged, observing each part; ends the span when it closes, fails or is cancelled. */
function observeStream(source: ReadableStream<unknown>, call: LlmCall): ReadableStream<unknown> {
  const reader = source.getReader();
  let streamError: unknown;
  return new ReadableStream<unknown>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          call.end(streamError);
          controller.close();
          return;
        }
        try {
          onPart(call, value);
          if (isObj(value) && value["type"] === "error") streamError = value["error"] ?? new Error("stream error");
        } catch {
          // ignore
        }
        controller.enqueue(value);
      } catch (err) {
        call.end(err);
        controller.error(err);
      }
    },
    async cancel(reason) {
      call.end();
      await reader.cancel(reason);
    },
  });
}
