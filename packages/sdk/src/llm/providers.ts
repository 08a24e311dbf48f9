import { LlmCall, observeIterator, serverOf, type HexrLlmOptions, type LlmRequestInfo, type LlmResponseInfo } from "./call.js";

type AnyFn = (...args: unknown[]) => unknown;
type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null;
const str = (v: unknown) => (typeof v === "string" && v ? v : undefined);
const numOf = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

interface Handlers {
  request(body: Obj): { info: Omit<LlmRequestInfo, "serverAddress" | "serverPort">; body: Obj };
  result(call: LlmCall, result: Obj): void;
  chunk(call: LlmCall, chunk: Obj): void;
}

/**
 * Replaces `target[method]` (an SDK resource method returning an APIPromise) on that instance by
 * one that records a span around it. The original promise is returned untouched, so
 * `.withResponse()`, `.asResponse()` and the SDKs' own helpers (`stream()`, `parse()`), which call
 * the same method, keep working and are recorded too.
 */
function patch(target: unknown, method: string, baseURL: unknown, h: Handlers, opts: HexrLlmOptions): void {
  if (!isObj(target) || typeof target[method] !== "function") return;
  const original = target[method] as AnyFn;
  const server = serverOf(baseURL);
  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
    let call: LlmCall | undefined;
    let callArgs = args;
    try {
      const body = isObj(args[0]) ? args[0] : {};
      const r = h.request(body);
      if (r.body !== body) callArgs = [r.body, ...args.slice(1)];
      call = new LlmCall({ ...r.info, ...server }, opts);
    } catch {
      call = undefined;
    }
    let p: unknown;
    try {
      p = original.apply(this, callArgs);
    } catch (err) {
      call?.end(err);
      throw err;
    }
    if (call) observe(p, call, h);
    return p;
  };
  Object.defineProperty(target, method, { value: wrapped, writable: true, configurable: true, enumerable: false });
}

function observe(p: unknown, call: LlmCall, h: Handlers): void {
  try {
    if (!isObj(p) || typeof (p as unknown as PromiseLike<unknown>).then !== "function") {
      call.end();
      return;
    }
    (p as unknown as PromiseLike<unknown>).then(
      (result) => {
        try {
          if (isObj(result) && typeof result["iterator"] === "function") {
            // A stream: observe it as the caller reads it; the span ends with the stream.
            result["iterator"] = observeIterator(
              result["iterator"] as () => AsyncIterator<Obj>,
              call,
              (chunk) => isObj(chunk) && h.chunk(call, chunk),
            );
            return;
          }
          if (isObj(result)) h.result(call, result);
        } catch {
          // unreadable result: still end the span
        }
        call.end();
      },
      (err: unknown) => call.end(err),
    );
  } catch {
    call.end();
  }
}

// ---- OpenAI: chat.completions and responses ----

function openaiUsage(u: unknown): Pick<LlmResponseInfo, "inputTokens" | "outputTokens"> {
  if (!isObj(u)) return {};
  return {
    inputTokens: numOf(u["prompt_tokens"] ?? u["input_tokens"]),
    outputTokens: numOf(u["completion_tokens"] ?? u["output_tokens"]),
  };
}

function openaiChat(opts: HexrLlmOptions): Handlers {
  return {
    request(body) {
      const streaming = body["stream"] === true;
      const addUsage = streaming && opts.streamUsage !== false && body["stream_options"] === undefined;
      return {
        body: addUsage ? { ...body, stream_options: { include_usage: true } } : body,
        info: {
          provider: "openai",
          operation: "chat",
          model: str(body["model"]),
          streaming,
          maxTokens: body["max_completion_tokens"] ?? body["max_tokens"],
          temperature: body["temperature"],
          topP: body["top_p"],
          input: body["messages"],
        },
      };
    },
    result(call, r) {
      const choices = Array.isArray(r["choices"]) ? (r["choices"] as Obj[]) : [];
      call.update({
        id: str(r["id"]),
        model: str(r["model"]),
        finishReasons: choices.map((c) => str(c["finish_reason"])).filter((x): x is string => !!x),
        ...openaiUsage(r["usage"]),
      });
      call.setOutput(choices.map((c) => c["message"]));
    },
    chunk(call, c) {
      const choices = Array.isArray(c["choices"]) ? (c["choices"] as Obj[]) : [];
      for (const choice of choices) {
        const delta = isObj(choice["delta"]) ? choice["delta"] : {};
        const text = str(delta["content"]);
        if (text || delta["tool_calls"]) call.token(text);
        const finish = str(choice["finish_reason"]);
        if (finish) call.update({ finishReasons: [finish] });
      }
      call.update({ id: str(c["id"]), model: str(c["model"]), ...openaiUsage(c["usage"]) });
    },
  };
}

function openaiResponses(opts: HexrLlmOptions): Handlers {
  void opts;
  const fromResponse = (call: LlmCall, r: Obj) =>
    call.update({
      id: str(r["id"]),
      model: str(r["model"]),
      finishReasons: str(r["status"]) ? [str(r["status"])!] : undefined,
      ...openaiUsage(r["usage"]),
    });
  return {
    request(body) {
      return {
        body,
        info: {
          provider: "openai",
          operation: "chat",
          model: str(body["model"]),
          streaming: body["stream"] === true,
          maxTokens: body["max_output_tokens"],
          temperature: body["temperature"],
          topP: body["top_p"],
          input:
            body["instructions"] !== undefined ? { instructions: body["instructions"], input: body["input"] } : body["input"],
        },
      };
    },
    result(call, r) {
      fromResponse(call, r);
      call.setOutput(r["output"]);
    },
    chunk(call, e) {
      const type = str(e["type"]) ?? "";
      if (type === "response.output_text.delta") call.token(str(e["delta"]));
      else if (isObj(e["response"])) fromResponse(call, e["response"]);
    },
  };
}

// ---- Anthropic: messages ----

function anthropicUsage(u: unknown): Pick<LlmResponseInfo, "inputTokens" | "outputTokens"> {
  if (!isObj(u)) return {};
  const base = numOf(u["input_tokens"]);
  // Anthropic counts cached prompt tokens apart; gen_ai.usage.input_tokens includes them.
  const cached = (numOf(u["cache_creation_input_tokens"]) ?? 0) + (numOf(u["cache_read_input_tokens"]) ?? 0);
  return { inputTokens: base === undefined ? undefined : base + cached, outputTokens: numOf(u["output_tokens"]) };
}

function anthropicMessages(): Handlers {
  return {
    request(body) {
      return {
        body,
        info: {
          provider: "anthropic",
          operation: "chat",
          model: str(body["model"]),
          streaming: body["stream"] === true,
          maxTokens: body["max_tokens"],
          temperature: body["temperature"],
          topP: body["top_p"],
          input: body["system"] !== undefined ? { system: body["system"], messages: body["messages"] } : body["messages"],
        },
      };
    },
    result(call, r) {
      call.update({
        id: str(r["id"]),
        model: str(r["model"]),
        finishReasons: str(r["stop_reason"]) ? [str(r["stop_reason"])!] : undefined,
        ...anthropicUsage(r["usage"]),
      });
      call.setOutput(r["content"]);
    },
    chunk(call, e) {
      switch (e["type"]) {
        case "message_start": {
          const m = isObj(e["message"]) ? e["message"] : {};
          call.update({ id: str(m["id"]), model: str(m["model"]), ...anthropicUsage(m["usage"]) });
          break;
        }
        case "content_block_delta": {
          const d = isObj(e["delta"]) ? e["delta"] : {};
          call.token(str(d["text"]) ?? str(d["partial_json"]) ?? str(d["thinking"]));
          break;
        }
        case "message_delta": {
          const d = isObj(e["delta"]) ? e["delta"] : {};
          const u = isObj(e["usage"]) ? e["usage"] : {};
          // message_delta carries the final (cumulative) output count; input counts only when present
          call.update({
            finishReasons: str(d["stop_reason"]) ? [str(d["stop_reason"])!] : undefined,
            outputTokens: numOf(u["output_tokens"]),
            ...(numOf(u["input_tokens"]) !== undefined ? { inputTokens: anthropicUsage(u).inputTokens } : {}),
          });
          break;
        }
      }
    },
  };
}

export function isOpenAIClient(c: unknown): boolean {
  return (
    isObj(c) &&
    isObj(c["chat"]) &&
    isObj((c["chat"] as Obj)["completions"]) &&
    typeof ((c["chat"] as Obj)["completions"] as Obj)["create"] === "function"
  );
}

export function isAnthropicClient(c: unknown): boolean {
  return isObj(c) && !isObj(c["chat"]) && isObj(c["messages"]) && typeof (c["messages"] as Obj)["create"] === "function";
}

export function instrumentOpenAI(client: Obj, opts: HexrLlmOptions): void {
  const chat = client["chat"] as Obj;
  patch(chat["completions"], "create", client["baseURL"], openaiChat(opts), opts);
  patch(client["responses"], "create", client["baseURL"], openaiResponses(opts), opts);
}

export function instrumentAnthropic(client: Obj, opts: HexrLlmOptions): void {
  patch(client["messages"], "create", client["baseURL"], anthropicMessages(), opts);
  if (isObj(client["beta"])) patch((client["beta"] as Obj)["messages"], "create", client["baseURL"], anthropicMessages(), opts);
}
