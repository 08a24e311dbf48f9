/**
 * The telemetry contract of Hexr: span names, attribute keys and metric names that the SDK, the
 * sidecars and the platform agree on. Other modules import these constants instead of spelling
 * strings, so a rename is one edit. Where an OpenTelemetry semantic convention exists (`gen_ai.*`,
 * `service.name`, `error.type`, `server.address`) it is used as is.
 */

/** Span names. */
export const SPAN = {
  AGENT_INVOKE: "hexr.agent.invoke",
  TOOL_INVOKE: "hexr.tool.invoke",
  LLM_CHAT: "hexr.llm.chat",
  CACHE_LOOKUP: "hexr.cache.lookup",
  A2A_SEND: "hexr.a2a.send",
} as const;
export type HexrSpanName = (typeof SPAN)[keyof typeof SPAN];

/** Resource attributes every process of an agent carries. */
export const RESOURCE = {
  SERVICE_NAME: "service.name",
  SERVICE_VERSION: "service.version",
  SPIFFE_ID: "hexr.spiffe_id",
  TENANT: "hexr.tenant",
  AGENT: "hexr.agent",
  ROLE: "hexr.role",
  FRAMEWORK: "hexr.framework",
  /** Set on the platform's own spans: `spiffe://<td>/system/<service>` is in SPIFFE_ID. */
  SYSTEM_SERVICE: "hexr.system.service",
} as const;

/** Span attributes. */
export const ATTR = {
  // hexr.agent.invoke
  FRAMEWORK: "hexr.framework",
  STATUS: "hexr.status",
  CALLER: "hexr.caller",
  TASK_ID: "hexr.task_id",
  // hexr.tool.invoke
  TOOL_SERVICE: "hexr.tool.service",
  CLOUD_REGION: "cloud.region",
  // hexr.cache.lookup (and hexr.tool.invoke: the tier that answered)
  CACHE_TIER: "hexr.cache.tier",
  CACHE_HIT: "hexr.cache.hit",
  // hexr.a2a.send
  A2A_TARGET: "hexr.a2a.target",
  A2A_TASK_STATE: "hexr.a2a.task_state",
  // hexr.llm.chat: OpenTelemetry GenAI conventions plus Hexr's cost
  GEN_AI_OPERATION: "gen_ai.operation.name",
  GEN_AI_PROVIDER: "gen_ai.provider.name",
  /** The older name of gen_ai.provider.name; still read by many backends. */
  GEN_AI_SYSTEM: "gen_ai.system",
  GEN_AI_REQUEST_MODEL: "gen_ai.request.model",
  GEN_AI_REQUEST_MAX_TOKENS: "gen_ai.request.max_tokens",
  GEN_AI_REQUEST_TEMPERATURE: "gen_ai.request.temperature",
  GEN_AI_REQUEST_TOP_P: "gen_ai.request.top_p",
  GEN_AI_RESPONSE_MODEL: "gen_ai.response.model",
  GEN_AI_RESPONSE_ID: "gen_ai.response.id",
  GEN_AI_RESPONSE_FINISH_REASONS: "gen_ai.response.finish_reasons",
  GEN_AI_USAGE_INPUT_TOKENS: "gen_ai.usage.input_tokens",
  GEN_AI_USAGE_OUTPUT_TOKENS: "gen_ai.usage.output_tokens",
  /** Recorded only when HEXR_TELEMETRY_CAPTURE_CONTENT=true. */
  GEN_AI_INPUT_MESSAGES: "gen_ai.input.messages",
  GEN_AI_OUTPUT_MESSAGES: "gen_ai.output.messages",
  LLM_COST_USD: "hexr.llm.cost_usd",
  LLM_STREAMING: "hexr.llm.streaming",
  LLM_TIME_TO_FIRST_TOKEN_MS: "hexr.llm.time_to_first_token_ms",
  SERVER_ADDRESS: "server.address",
  SERVER_PORT: "server.port",
  ERROR_TYPE: "error.type",
  // platform HTTP spans
  HTTP_METHOD: "http.request.method",
  HTTP_ROUTE: "http.route",
  HTTP_STATUS: "http.response.status_code",
} as const;

export type CacheTier = "L1" | "L2" | "L3";

/** Terminal and intermediate A2A task states (A2A protocol `TaskState`). */
export const A2A_TASK_STATES = [
  "submitted",
  "working",
  "input-required",
  "auth-required",
  "completed",
  "canceled",
  "failed",
  "rejected",
  "unknown",
] as const;
export type A2aTaskState = (typeof A2A_TASK_STATES)[number];

/**
 * Metric instruments the SDK records (derived from spans, see `SpanMetricsProcessor`) and exports
 * over OTLP. The platform maps each to a Prometheus family (`hexr.agent.invocations` →
 * `hexr_agent_invocations_total`, durations in seconds → `..._seconds`).
 */
export const METRIC = {
  AGENT_INVOCATIONS: "hexr.agent.invocations",
  AGENT_DURATION: "hexr.agent.invocation.duration",
  TOOL_INVOCATIONS: "hexr.tool.invocations",
  TOOL_DURATION: "hexr.tool.invocation.duration",
  LLM_REQUESTS: "hexr.llm.requests",
  LLM_DURATION: "hexr.llm.request.duration",
  LLM_TIME_TO_FIRST_TOKEN: "hexr.llm.time_to_first_token",
  LLM_TOKENS: "hexr.llm.tokens",
  LLM_COST: "hexr.llm.cost",
  CACHE_LOOKUPS: "hexr.cache.lookups",
  CACHE_DURATION: "hexr.cache.lookup.duration",
  A2A_SENDS: "hexr.a2a.sends",
  A2A_DURATION: "hexr.a2a.send.duration",
} as const;

/** Metric data point attributes (Prometheus labels after the platform's mapping). */
export const METRIC_ATTR = {
  STATUS: "status",
  FRAMEWORK: "framework",
  SERVICE: "service",
  REGION: "region",
  PROVIDER: "provider",
  MODEL: "model",
  TOKEN_TYPE: "type",
  STREAMING: "streaming",
  TIER: "tier",
  RESULT: "result",
  TARGET: "target",
  STATE: "state",
} as const;

/** Histogram bucket bounds in seconds; the platform uses the same bounds for its Prometheus histograms. */
export const DURATION_BUCKETS_SECONDS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
] as const;

/** Environment variables the telemetry layer reads. */
export const ENV = {
  /** `true` records prompts and completions on LLM spans; off by default (they may hold secrets or personal data). */
  CAPTURE_CONTENT: "HEXR_TELEMETRY_CAPTURE_CONTENT",
  /** `true` turns telemetry off entirely (no provider is registered, helpers become no-ops). */
  DISABLED: "HEXR_TELEMETRY_DISABLED",
  /** Base URL of the OTLP/HTTP receiver (`/v1/traces` and `/v1/metrics` are appended). */
  ENDPOINT: "HEXR_OTLP_ENDPOINT",
  /** The standard OpenTelemetry variable, used when HEXR_OTLP_ENDPOINT is not set. */
  OTEL_ENDPOINT: "OTEL_EXPORTER_OTLP_ENDPOINT",
  /** The platform URL; its receiver is the default endpoint. */
  PLATFORM_URL: "HEXR_PLATFORM_URL",
} as const;
