import { HexrError } from "./errors.js";

/** A parsed, validated SPIFFE ID (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md). */
export interface SpiffeId {
  readonly trustDomain: string;
  /** Path including its leading slash, or "" for the trust domain's own ID. */
  readonly path: string;
  /** Path segments, without empty ones. */
  readonly segments: readonly string[];
  toString(): string;
}

const MAX_ID_BYTES = 2048;
const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]+$/;
const PATH_SEGMENT_CHAR = /^[a-zA-Z0-9._-]+$/;
const SCHEME = "spiffe://";

function invalid(message: string, input: string): HexrError {
  return new HexrError("spiffe.invalid_id", `invalid SPIFFE ID ${JSON.stringify(truncate(input))}: ${message}`, {
    kind: "invalid_argument",
  });
}

function truncate(s: string): string {
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/** Validates a trust domain name as the SPIFFE ID grammar does; throws `spiffe.invalid_trust_domain`. */
export function validateTrustDomain(td: string): string {
  if (td.length === 0) throw new HexrError("spiffe.invalid_trust_domain", "trust domain is empty", { kind: "invalid_argument" });
  if (td.length > 255 || !TRUST_DOMAIN_CHAR.test(td)) {
    throw new HexrError(
      "spiffe.invalid_trust_domain",
      `invalid trust domain ${JSON.stringify(truncate(td))}: only lowercase letters, digits, '.', '-' and '_' are allowed`,
      { kind: "invalid_argument" },
    );
  }
  return td;
}

/** Strict parser: the scheme must be lowercase `spiffe`, no port/userinfo/query/fragment, no empty, `.` or `..` segments. */
export function parseSpiffeId(input: string): SpiffeId {
  if (typeof input !== "string") throw invalid("not a string", String(input));
  if (Buffer.byteLength(input, "utf8") > MAX_ID_BYTES) throw invalid(`longer than ${MAX_ID_BYTES} bytes`, input);
  if (!input.startsWith(SCHEME)) throw invalid("scheme must be 'spiffe://'", input);
  const rest = input.slice(SCHEME.length);
  const slash = rest.indexOf("/");
  const td = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? "" : rest.slice(slash);
  if (td.length === 0) throw invalid("trust domain is missing", input);
  if (!TRUST_DOMAIN_CHAR.test(td)) {
    if (td.includes(":")) throw invalid("a port is not allowed", input);
    if (td.includes("@")) throw invalid("user info is not allowed", input);
    throw invalid("trust domain may contain only lowercase letters, digits, '.', '-' and '_'", input);
  }
  const segments: string[] = [];
  if (path.length > 0) {
    if (path === "/") throw invalid("a trailing '/' is not allowed", input);
    const parts = path.slice(1).split("/");
    for (const part of parts) {
      if (part.length === 0) throw invalid(path.endsWith("/") ? "a trailing '/' is not allowed" : "empty path segment", input);
      if (part === "." || part === "..") throw invalid("'.' and '..' path segments are not allowed", input);
      if (!PATH_SEGMENT_CHAR.test(part)) {
        if (part.includes("?") || part.includes("#")) throw invalid("query and fragment are not allowed", input);
        throw invalid("path segments may contain only letters, digits, '.', '-' and '_'", input);
      }
      segments.push(part);
    }
  }
  return makeId(td, path, segments);
}

function makeId(trustDomain: string, path: string, segments: string[]): SpiffeId {
  const str = `${SCHEME}${trustDomain}${path}`;
  return Object.freeze({ trustDomain, path, segments: Object.freeze(segments), toString: () => str });
}

export function isSpiffeId(input: string): boolean {
  try {
    parseSpiffeId(input);
    return true;
  } catch {
    return false;
  }
}

/** Builds an ID from a trust domain and segments, validating each. */
export function spiffeIdFromSegments(trustDomain: string, ...segments: string[]): SpiffeId {
  for (const seg of segments) {
    if (!PATH_SEGMENT_CHAR.test(seg) || seg === "." || seg === "..") {
      throw new HexrError("spiffe.invalid_id", `invalid SPIFFE ID path segment ${JSON.stringify(truncate(seg))}`, {
        kind: "invalid_argument",
      });
    }
  }
  return parseSpiffeId(`${SCHEME}${trustDomain}${segments.length ? "/" + segments.join("/") : ""}`);
}

/** What a Hexr SPIFFE ID says about the workload. */
export type HexrWorkload =
  | { kind: "agent"; trustDomain: string; tenant: string; agent: string; role: string }
  | { kind: "system"; trustDomain: string; service: string }
  | { kind: "other"; trustDomain: string };

/** `spiffe://<td>/agent/<tenant>/<agent>/<role>` */
export function agentSpiffeId(trustDomain: string, tenant: string, agent: string, role = "main"): SpiffeId {
  return spiffeIdFromSegments(trustDomain, "agent", tenant, agent, role);
}

/** `spiffe://<td>/system/<service>` */
export function systemSpiffeId(trustDomain: string, service: string): SpiffeId {
  return spiffeIdFromSegments(trustDomain, "system", service);
}

export function describeWorkload(id: SpiffeId | string): HexrWorkload {
  const parsed = typeof id === "string" ? parseSpiffeId(id) : id;
  const s = parsed.segments;
  if (s[0] === "agent" && s.length === 4) {
    return { kind: "agent", trustDomain: parsed.trustDomain, tenant: s[1]!, agent: s[2]!, role: s[3]! };
  }
  if (s[0] === "system" && s.length === 2) return { kind: "system", trustDomain: parsed.trustDomain, service: s[1]! };
  return { kind: "other", trustDomain: parsed.trustDomain };
}
