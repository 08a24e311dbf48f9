import { SpanStatusCode, type Attributes, type Counter, type Histogram, type Meter } from "@opentelemetry/api";
import { hrTimeToMilliseconds } from "@opentelemetry/core";
import type { ReadableSpan, SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR, DURATION_BUCKETS_SECONDS, METRIC, METRIC_ATTR as L, SPAN } from "./semconv.js";

interface Instruments {
  agentInvocations: Counter;
  agentDuration: Histogram;
  toolInvocations: Counter;
  toolDuration: Histogram;
  llmRequests: Counter;
  llmDuration: Histogram;
  llmTtft: Histogram;
  llmTokens: Counter;
  llmCost: Counter;
  cacheLookups: Counter;
  cacheDuration: Histogram;
  a2aSends: Counter;
  a2aDuration: Histogram;
}

function createInstruments(meter: Meter): Instruments {
  const seconds = (name: string, description: string) =>
    meter.createHistogram(name, {
      description,
      unit: "s",
      advice: { explicitBucketBoundaries: [...DURATION_BUCKETS_SECONDS] },
    });
  return {
    agentInvocations: meter.createCounter(METRIC.AGENT_INVOCATIONS, { description: "Agent invocations", unit: "{invocation}" }),
    agentDuration: seconds(METRIC.AGENT_DURATION, "Agent invocation duration"),
    toolInvocations: meter.createCounter(METRIC.TOOL_INVOCATIONS, { description: "Tool (cloud service) calls", unit: "{call}" }),
    toolDuration: seconds(METRIC.TOOL_DURATION, "Tool call duration"),
    llmRequests: meter.createCounter(METRIC.LLM_REQUESTS, { description: "LLM requests", unit: "{request}" }),
    llmDuration: seconds(METRIC.LLM_DURATION, "LLM request duration, until the last token for streams"),
    llmTtft: seconds(METRIC.LLM_TIME_TO_FIRST_TOKEN, "Time to the first streamed token"),
    llmTokens: meter.createCounter(METRIC.LLM_TOKENS, { description: "LLM tokens by type (input/output)", unit: "{token}" }),
    llmCost: meter.createCounter(METRIC.LLM_COST, { description: "LLM cost from the price table", unit: "USD" }),
    cacheLookups: meter.createCounter(METRIC.CACHE_LOOKUPS, { description: "Credential cache lookups", unit: "{lookup}" }),
    cacheDuration: seconds(METRIC.CACHE_DURATION, "Credential cache lookup duration"),
    a2aSends: meter.createCounter(METRIC.A2A_SENDS, {
      description: "A2A messages sent, by resulting task state",
      unit: "{message}",
    }),
    a2aDuration: seconds(METRIC.A2A_DURATION, "A2A send duration"),
  };
}

const str = (attrs: Attributes, key: string, fallback = "unknown"): string => {
  const v = attrs[key];
  return typeof v === "string" && v ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : fallback;
};
const num = (attrs: Attributes, key: string): number | undefined => {
  const v = attrs[key];
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
};

/**
 * Derives the agent metrics from the spans of the contract (see semconv.ts): whoever emits a
 * `hexr.cache.lookup` span gets cache metrics without touching a meter. Runs on span end, in
 * process, so metrics stay exact even when traces are sampled or the exporter is down.
 */
export class SpanMetricsProcessor implements SpanProcessor {
  private readonly m: Instruments;

  constructor(meter: Meter) {
    this.m = createInstruments(meter);
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    const a = span.attributes;
    const seconds = hrTimeToMilliseconds(span.duration) / 1000;
    const status = span.status.code === SpanStatusCode.ERROR ? "error" : "ok";
    switch (span.name) {
      case SPAN.AGENT_INVOKE: {
        const labels = {
          [L.STATUS]: status,
          [L.FRAMEWORK]: str(a, ATTR.FRAMEWORK, str(span.resource.attributes, ATTR.FRAMEWORK)),
        };
        this.m.agentInvocations.add(1, labels);
        this.m.agentDuration.record(seconds, labels);
        break;
      }
      case SPAN.TOOL_INVOKE: {
        const service = str(a, ATTR.TOOL_SERVICE);
        this.m.toolInvocations.add(1, {
          [L.SERVICE]: service,
          [L.REGION]: str(a, ATTR.CLOUD_REGION, "none"),
          [L.TIER]: str(a, ATTR.CACHE_TIER, "none"),
          [L.STATUS]: status,
        });
        this.m.toolDuration.record(seconds, { [L.SERVICE]: service, [L.STATUS]: status });
        break;
      }
      case SPAN.LLM_CHAT: {
        const provider = str(a, ATTR.GEN_AI_PROVIDER, str(a, ATTR.GEN_AI_SYSTEM));
        const model = str(a, ATTR.GEN_AI_REQUEST_MODEL, str(a, ATTR.GEN_AI_RESPONSE_MODEL));
        const base = { [L.PROVIDER]: provider, [L.MODEL]: model };
        this.m.llmRequests.add(1, {
          ...base,
          [L.STATUS]: status,
          [L.STREAMING]: a[ATTR.LLM_STREAMING] === true ? "true" : "false",
        });
        this.m.llmDuration.record(seconds, base);
        const ttft = num(a, ATTR.LLM_TIME_TO_FIRST_TOKEN_MS);
        if (ttft !== undefined) this.m.llmTtft.record(ttft / 1000, base);
        const input = num(a, ATTR.GEN_AI_USAGE_INPUT_TOKENS);
        const output = num(a, ATTR.GEN_AI_USAGE_OUTPUT_TOKENS);
        if (input) this.m.llmTokens.add(input, { ...base, [L.TOKEN_TYPE]: "input" });
        if (output) this.m.llmTokens.add(output, { ...base, [L.TOKEN_TYPE]: "output" });
        const cost = num(a, ATTR.LLM_COST_USD);
        if (cost) this.m.llmCost.add(cost, base);
        break;
      }
      case SPAN.CACHE_LOOKUP: {
        const tier = str(a, ATTR.CACHE_TIER);
        this.m.cacheLookups.add(1, { [L.TIER]: tier, [L.RESULT]: a[ATTR.CACHE_HIT] === true ? "hit" : "miss" });
        this.m.cacheDuration.record(seconds, { [L.TIER]: tier });
        break;
      }
      case SPAN.A2A_SEND: {
        const target = str(a, ATTR.A2A_TARGET);
        const state = str(a, ATTR.A2A_TASK_STATE, status === "error" ? "failed" : "unknown");
        this.m.a2aSends.add(1, { [L.TARGET]: target, [L.STATE]: state });
        this.m.a2aDuration.record(seconds, { [L.TARGET]: target });
        break;
      }
    }
  }

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
