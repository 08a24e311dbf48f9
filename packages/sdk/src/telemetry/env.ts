import { diag } from "@opentelemetry/api";
import { ENV } from "./semconv.js";

/** Reads a boolean variable; an unrecognised value warns and falls back instead of throwing (telemetry never fails a start). */
export function envFlag(name: string, env: NodeJS.ProcessEnv = process.env, fallback = false): boolean {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const v = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off"].includes(v)) return false;
  diag.warn(`${name}=${JSON.stringify(raw)} is not a boolean (true/false); using ${fallback}`);
  return fallback;
}

/** Whether prompt and completion content may be recorded on spans. */
export function captureContentEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return envFlag(ENV.CAPTURE_CONTENT, env);
}

/** The OTLP base URL from the environment, or undefined; a malformed URL warns and is ignored. */
export function endpointFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const name of [ENV.ENDPOINT, ENV.OTEL_ENDPOINT, ENV.PLATFORM_URL]) {
    const raw = env[name];
    if (!raw) continue;
    const url = normalizeEndpoint(raw);
    if (url) return url;
    diag.warn(`${name} is not an http(s) URL; ignoring it`);
  }
  return undefined;
}

/** `http://host:port/` → `http://host:port`; undefined when not an http(s) URL. */
export function normalizeEndpoint(raw: string): string | undefined {
  try {
    const u = new URL(raw);
    if (u.protocol !== "http:" && u.protocol !== "https:") return undefined;
    return u.toString().replace(/\/+$/, "");
  } catch {
    return undefined;
  }
}
