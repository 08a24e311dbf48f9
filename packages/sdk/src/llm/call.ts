import { context, SpanKind, SpanStatusCode, type Attributes, type Span } from "@opentelemetry/api";
import { captureContentEnabled } from "../telemetry/env.js";
import { scrubText } from "../telemetry/processors.js";
import { getTelemetry } from "../telemetry/setup.js";
import { ATTR, SPAN } from "../telemetry/semconv.js";
import { hexrTracer, recordError } from "../telemetry/span.js";
import { costOf, llmPrices, type PriceTable } from "./prices.js";

export interface HexrLlmOptions {
  /** Prices (USD per 1M tokens) for this client, on top of the process-wide table. */
  prices?: PriceTable;
  /** Record prompts and completions on spans. Default: HEXR_TELEMETRY_CAPTURE_CONTENT=true. */
  captureContent?: boolean;
  /**
   * OpenAI chat streams report token usage only when asked (`stream_options.include_usage`); Hexr
   * asks unless the request says otherwise, which adds one last chunk with no choices. Default true.
   */
  streamUsage?: boolean;
}

/** Longest prompt/completion kept on a span when content capture is on. */
const MAX_CONTENT = 16 * 1024;

export function safeJson(v: unknown): string | undefined {
  try {
    const s = JSON.stringify(v);
    // even with capture on, credentials pasted into a prompt stay out of the trace
    return s === undefined ? undefined : scrubText(s.length > MAX_CONTENT ? s.slice(0, MAX_CONTENT) + "…" : s);
  } catch {
    return undefined;
  }
}

export interface LlmRequestInfo {
  provider: string;
  operation: "chat" | "text_completion" | "generate_content";
  model: string | undefined;
  streaming: boolean;
  serverAddress?: string | undefined;
  serverPort?: number | undefined;
  maxTokens?: unknown;
  temperature?: unknown;
  topP?: unknown;
  /** The prompt, recorded only with content capture on. */
  input?: unknown;
}

export interface LlmResponseInfo {
  id?: string | undefined;
  model?: string | undefined;
  finishReasons?: string[] | undefined;
  inputTokens?: number | undefined;
  outputTokens?: number | undefined;
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
const count = (v: unknown) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.round(v) : undefined);

/**
 * One LLM call as a `hexr.llm.chat` span: request attributes at start, response and usage as
 * they become known (streams report them at the end), cost from the price table, time to first
 * token for streams. Every method swallows its own failures: telemetry never breaks the call.
 */
export class LlmCall {
  private span: Span | undefined;
  private readonly started = performance.now();
  private firstTokenAt: number | undefined;
  private readonly response: LlmResponseInfo = {};
  private output = "";
  private ended = false;
  readonly captureContent: boolean;

  constructor(
    private readonly req: LlmRequestInfo,
    private readonly opts: HexrLlmOptions,
  ) {
    this.captureContent = opts.captureContent ?? getTelemetry()?.captureContent ?? captureContentEnabled();
    try {
      const attributes: Attributes = {
        [ATTR.GEN_AI_OPERATION]: req.operation,
        [ATTR.GEN_AI_PROVIDER]: req.provider,
        [ATTR.GEN_AI_SYSTEM]: req.provider,
        [ATTR.LLM_STREAMING]: req.streaming,
      };
      if (req.model) attributes[ATTR.GEN_AI_REQUEST_MODEL] = req.model;
      if (num(req.maxTokens) !== undefined) attributes[ATTR.GEN_AI_REQUEST_MAX_TOKENS] = num(req.maxTokens);
      if (num(req.temperature) !== undefined) attributes[ATTR.GEN_AI_REQUEST_TEMPERATURE] = num(req.temperature);
      if (num(req.topP) !== undefined) attributes[ATTR.GEN_AI_REQUEST_TOP_P] = num(req.topP);
      if (req.serverAddress) attributes[ATTR.SERVER_ADDRESS] = req.serverAddress;
      if (req.serverPort) attributes[ATTR.SERVER_PORT] = req.serverPort;
      if (this.captureContent && req.input !== undefined) {
        const input = safeJson(req.input);
        if (input) attributes[ATTR.GEN_AI_INPUT_MESSAGES] = input;
      }
      this.span = hexrTracer().startSpan(SPAN.LLM_CHAT, { kind: SpanKind.CLIENT, attributes }, context.active());
    } catch {
      this.span = undefined;
    }
  }

  /** A streamed token (or any content) arrived; the first one sets the time to first token. */
  token(text?: string): void {
    if (this.firstTokenAt === undefined) this.firstTokenAt = performance.now();
    if (text && this.captureContent && this.output.length < MAX_CONTENT) this.output += text;
  }

  /** Merges what is known about the response so far (later values win, as streams refine them). */
  update(info: LlmResponseInfo): void {
    for (const [k, v] of Object.entries(info))
      if (v !== undefined && v !== null) (this.response as Record<string, unknown>)[k] = v;
  }

  /** Sets the completion text to record when content capture is on (non-streaming responses). */
  setOutput(output: unknown): void {
    if (!this.captureContent) return;
    this.output = typeof output === "string" ? output : (safeJson(output) ?? "");
  }

  end(err?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    const span = this.span;
    if (!span) return;
    try {
      const r = this.response;
      const inTok = count(r.inputTokens);
      const outTok = count(r.outputTokens);
      const attrs: Attributes = {};
      if (r.id) attrs[ATTR.GEN_AI_RESPONSE_ID] = r.id;
      if (r.model) attrs[ATTR.GEN_AI_RESPONSE_MODEL] = r.model;
      if (r.finishReasons?.length) attrs[ATTR.GEN_AI_RESPONSE_FINISH_REASONS] = r.finishReasons;
      if (inTok !== undefined) attrs[ATTR.GEN_AI_USAGE_INPUT_TOKENS] = inTok;
      if (outTok !== undefined) attrs[ATTR.GEN_AI_USAGE_OUTPUT_TOKENS] = outTok;
      const table = this.opts.prices ? { ...llmPrices(), ...this.opts.prices } : llmPrices();
      const cost = costOf(r.model, inTok, outTok, table) ?? costOf(this.req.model, inTok, outTok, table);
      if (cost !== undefined) attrs[ATTR.LLM_COST_USD] = Math.round(cost * 1e10) / 1e10;
      if (this.req.streaming && this.firstTokenAt !== undefined) {
        attrs[ATTR.LLM_TIME_TO_FIRST_TOKEN_MS] = Math.round((this.firstTokenAt - this.started) * 1000) / 1000;
      }
      if (this.captureContent && this.output) attrs[ATTR.GEN_AI_OUTPUT_MESSAGES] = scrubText(this.output.slice(0, MAX_CONTENT));
      span.setAttributes(attrs);
      if (err !== undefined) recordError(span, err);
      else span.setStatus({ code: SpanStatusCode.OK });
      span.end();
    } catch {
      // ignore
    }
  }
}

/** Host and port of a base URL, for server.address / server.port. */
export function serverOf(baseURL: unknown): { serverAddress?: string; serverPort?: number } {
  if (typeof baseURL !== "string") return {};
  try {
    const u = new URL(baseURL);
    const port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
    return { serverAddress: u.hostname, serverPort: port };
  } catch {
    return {};
  }
}

/**
 * Wraps a `() => AsyncIterator` factory (the shape of the OpenAI and Anthropic SDK streams) so that
 * each item is observed and the call ends when the stream does: exhausted, failed, or abandoned.
 */
export function observeIterator<T>(
  make: () => AsyncIterator<T>,
  call: LlmCall,
  onItem: (item: T) => void,
): () => AsyncIterator<T> {
  return function observed(this: unknown) {
    const inner = make.call(this);
    return {
      async next(...args: [] | [unknown]) {
        try {
          const r = await inner.next(...args);
          if (r.done) call.end();
          else {
            try {
              onItem(r.value);
            } catch {
              // a chunk we could not read is still the caller's chunk
            }
          }
          return r;
        } catch (err) {
          call.end(err);
          throw err;
        }
      },
      async return(value?: unknown) {
        call.end();
        return inner.return ? inner.return(value as T) : { done: true as const, value: value as T };
      },
      async throw(err?: unknown) {
        call.end(err);
        if (inner.throw) return inner.throw(err);
        throw err;
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    } as AsyncIterator<T> & AsyncIterable<T>;
  };
}
