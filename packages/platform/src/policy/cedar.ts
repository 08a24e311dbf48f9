import type * as CedarWasm from "@cedar-policy/cedar-wasm/nodejs";
import { HexrError } from "@hexr/core";
import { createRequire } from "node:module";
import { CEDAR_SCHEMA } from "./schema.js";

export type { CedarWasm };

let wasm: typeof CedarWasm | undefined;

/** The Cedar wasm module, loaded on first use (4 MB of wasm: commands that never decide should not pay for it). */
export function cedar(): typeof CedarWasm {
  wasm ??= createRequire(import.meta.url)("@cedar-policy/cedar-wasm/nodejs") as typeof CedarWasm;
  return wasm;
}

export interface PolicyProblem {
  /** `line:column` in the submitted text, or the Cedar policy id. */
  path: string;
  message: string;
}

/** A tenant's policy document split into Cedar policies, each with its platform-wide id `<name>#<n or @id>`. */
export interface CompiledDocument {
  name: string;
  policies: Record<string, string>;
}

const MAX_POLICY_TEXT = 64 * 1024;
const ANNOTATION_ID = /^[A-Za-z0-9._-]{1,64}$/;

function lineCol(text: string, offset: number): string {
  let line = 1;
  let col = 1;
  for (let i = 0; i < Math.min(offset, text.length); i++) {
    if (text[i] === "\n") {
      line++;
      col = 1;
    } else col++;
  }
  return `${line}:${col}`;
}

function describe(e: CedarWasm.DetailedError): string {
  return e.help ? `${e.message} (${e.help})` : e.message;
}

function problems(text: string, errors: CedarWasm.DetailedError[], offsetBase = 0): PolicyProblem[] {
  return errors.map((e) => ({
    path: e.sourceLocations?.[0] ? lineCol(text, offsetBase + e.sourceLocations[0].start) : "",
    message: describe(e),
  }));
}

function invalid(
  code: string,
  summary: string,
  list: PolicyProblem[],
  kind: "invalid_argument" | "failed_precondition",
): HexrError {
  const detail = list.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join("; ");
  return new HexrError(code, `${summary}: ${detail}`, { kind, details: { errors: list } });
}

let schemaReady = false;
function ensureSchema(): void {
  if (schemaReady) return;
  const r = cedar().checkParseSchema(CEDAR_SCHEMA);
  if (r.type !== "success")
    throw new Error(`the built-in Cedar schema does not parse: ${r.errors.map((e) => e.message).join("; ")}`);
  schemaReady = true;
}

/**
 * Parses and validates a policy document against the schema (strict mode). Syntax errors throw
 * `policy.invalid_syntax` (400) and schema violations `policy.schema_violation` (422), both with the
 * engine's own messages and `line:column` positions.
 */
export function compileDocument(name: string, text: string): CompiledDocument {
  ensureSchema();
  if (text.length > MAX_POLICY_TEXT) {
    throw new HexrError("policy.too_large", `a policy document is at most ${MAX_POLICY_TEXT} characters`, {
      kind: "payload_too_large",
    });
  }
  const parts = cedar().policySetTextToParts(text);
  if (parts.type !== "success")
    throw invalid("policy.invalid_syntax", "the policy does not parse", problems(text, parts.errors), "invalid_argument");
  if (parts.policy_templates.length > 0) {
    throw invalid(
      "policy.invalid_syntax",
      "the policy does not parse",
      [{ path: "", message: "templates (policies with ?principal or ?resource slots) are not supported" }],
      "invalid_argument",
    );
  }
  if (parts.policies.length === 0) {
    throw invalid(
      "policy.invalid_syntax",
      "the policy does not parse",
      [{ path: "", message: "the document holds no policy" }],
      "invalid_argument",
    );
  }
  const policies: Record<string, string> = {};
  parts.policies.forEach((p, i) => {
    const json = cedar().policyToJson(p);
    const annotated = json.type === "success" ? json.json.annotations?.["id"] : undefined;
    if (annotated !== undefined && !ANNOTATION_ID.test(annotated)) {
      throw invalid(
        "policy.invalid_syntax",
        "the policy does not parse",
        [{ path: `policy ${i}`, message: `@id("${annotated}") must be 1-64 letters, digits, '.', '_' or '-'` }],
        "invalid_argument",
      );
    }
    const id = `${name}#${annotated ?? i}`;
    if (policies[id] !== undefined) {
      throw invalid(
        "policy.invalid_syntax",
        "the policy does not parse",
        [{ path: `policy ${i}`, message: `duplicate policy id ${id}` }],
        "invalid_argument",
      );
    }
    policies[id] = p;
  });
  const v = cedar().validate({
    schema: CEDAR_SCHEMA,
    policies: { staticPolicies: policies },
    validationSettings: { mode: "strict" },
  });
  if (v.type !== "success")
    throw invalid("policy.invalid_syntax", "the policy does not parse", problems(text, v.errors), "invalid_argument");
  if (v.validationErrors.length > 0) {
    // Positions of validation errors are relative to each policy's own text.
    const list = v.validationErrors.map((e) => {
      const src = policies[e.policyId] ?? "";
      const at = e.error.sourceLocations?.[0];
      const base = Math.max(0, text.indexOf(src));
      return { path: at ? `${lineCol(text, base + at.start)} (${e.policyId})` : e.policyId, message: describe(e.error) };
    });
    throw invalid("policy.schema_violation", "the policy does not match the Hexr schema", list, "failed_precondition");
  }
  return { name, policies };
}
