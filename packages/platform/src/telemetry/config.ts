import { z } from "zod";

/** `telemetry.*` in the platform config. */
export const TelemetryConfig = z.strictObject({
  /** An external OTLP/HTTP endpoint (Jaeger, an OpenTelemetry Collector) that receives a copy of every accepted span and metric. */
  forwardUrl: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional(),
  /** Headers sent to forwardUrl (e.g. an API key of the collector); never logged. */
  forwardHeaders: z.record(z.string().regex(/^[A-Za-z0-9-]+$/, "must be an HTTP header name"), z.string()).default({}),
  /** How long a forward may take before it is dropped. */
  forwardTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  retention: z
    .strictObject({
      /** The store keeps at most this many spans; the oldest go first. */
      maxSpans: z.number().int().min(1).max(1_000_000_000).default(200_000),
      /** Spans older than this (by receipt) are deleted. */
      maxAgeSeconds: z
        .number()
        .int()
        .min(1)
        .max(366 * 86_400)
        .default(7 * 86_400),
      /** How often retention runs (also after every 1000 stored spans). */
      intervalSeconds: z.number().int().min(1).max(86_400).default(60),
    })
    .prefault({}),
  /** Largest OTLP request body, compressed or not. */
  maxRequestBytes: z
    .number()
    .int()
    .min(64 * 1024)
    .max(256 * 1024 * 1024)
    .default(16 * 1024 * 1024),
  /** Who may scrape /metrics: `admin` (an admin API key as bearer token) or `public`. */
  metricsAuth: z.enum(["admin", "public"]).default("admin"),
  /** Record a server span for platform requests that carry a W3C traceparent. */
  traceRequests: z.boolean().default(true),
});
export type TelemetryConfig = z.infer<typeof TelemetryConfig>;
