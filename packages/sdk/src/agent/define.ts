import { AgentName, HexrError, RoleName } from "@hexr/core";

export type Framework = "ai-sdk" | "openai" | "anthropic" | "langchain" | "mastra" | "custom";

export interface AgentSkill {
  id: string;
  name: string;
  description?: string;
  tags?: string[];
  examples?: string[];
}

/** What the agent says about itself. Keep `name` and role names literal: `hexr build` reads them from the source. */
export interface AgentMeta {
  name: string;
  description?: string;
  version?: string;
  skills?: AgentSkill[];
  /** For multi-role agents: the role that receives messages addressed to the agent. */
  entryRole?: string;
  /** Overrides the framework detected from the agent's imports. */
  framework?: Framework;
}

export interface AgentContext {
  /** This process's SPIFFE ID, from its X.509-SVID. */
  readonly spiffeId: string;
  /** The caller's SPIFFE ID as verified by the mesh proxy; undefined for a local call. */
  readonly caller: string | undefined;
  readonly tenant: string;
  readonly agent: string;
  readonly role: string;
  /** Aborted when the caller goes away or cancels the task. */
  readonly signal: AbortSignal;
  readonly taskId: string | undefined;
  readonly contextId: string | undefined;
  /** Calls another agent (`agent` or `agent/role`, same tenant) over the mTLS mesh and returns its output. */
  call<T = unknown>(target: string, input: unknown, opts?: { signal?: AbortSignal }): Promise<T>;
}

/** A handler returns its output, or yields updates from an async generator (the last value is the output). */
export type AgentHandler<I = unknown, O = unknown> = (input: I, ctx: AgentContext) => Promise<O> | O | AsyncIterable<O>;

const AGENT_BRAND = Symbol.for("hexr.agent.definition");

export interface AgentDefinition {
  readonly [AGENT_BRAND]: true;
  readonly meta: Required<Pick<AgentMeta, "name" | "entryRole">> & AgentMeta;
  readonly roles: Readonly<Record<string, AgentHandler>>;
}

function invalid(message: string): HexrError {
  return new HexrError("agent.invalid_definition", message, { kind: "invalid_argument" });
}

/**
 * Declares an agent. One handler = one role (`main`); a record of handlers = one process per role,
 * each with its own SPIFFE ID (`spiffe://<td>/agent/<tenant>/<name>/<role>`).
 *
 * ```ts
 * export default hexrAgent({ name: "research-analyst" }, async (input, ctx) => ...);
 * export default hexrAgent({ name: "content-crew", entryRole: "researcher" }, { researcher, writer });
 * ```
 */
export function hexrAgent<I = unknown, O = unknown>(meta: AgentMeta, handler: AgentHandler<I, O>): AgentDefinition;
export function hexrAgent(meta: AgentMeta, handlers: Record<string, AgentHandler<never, unknown>>): AgentDefinition;
export function hexrAgent(
  meta: AgentMeta,
  handler: AgentHandler<never, unknown> | Record<string, AgentHandler<never, unknown>>,
): AgentDefinition {
  const nameOk = AgentName.safeParse(meta.name);
  if (!nameOk.success)
    throw invalid(`agent name ${JSON.stringify(meta.name)} must be a DNS label (lowercase letters, digits, '-')`);
  const roles: Record<string, AgentHandler> =
    typeof handler === "function" ? { main: handler as AgentHandler } : { ...(handler as Record<string, AgentHandler>) };
  const names = Object.keys(roles);
  if (names.length === 0) throw invalid(`agent ${meta.name} declares no roles`);
  for (const r of names) {
    if (!RoleName.safeParse(r).success) throw invalid(`role name ${JSON.stringify(r)} of agent ${meta.name} must be a DNS label`);
    if (typeof roles[r] !== "function") throw invalid(`role ${r} of agent ${meta.name} must be a function`);
  }
  const entryRole = meta.entryRole ?? (names.length === 1 ? names[0]! : undefined);
  if (!entryRole)
    throw invalid(
      `agent ${meta.name} has several roles (${names.join(", ")}): name the one that receives messages with entryRole`,
    );
  if (!roles[entryRole])
    throw invalid(`entryRole ${entryRole} of agent ${meta.name} is not one of its roles (${names.join(", ")})`);
  return Object.freeze({
    [AGENT_BRAND]: true as const,
    meta: Object.freeze({ ...meta, entryRole }),
    roles: Object.freeze(roles),
  });
}

export function isAgentDefinition(value: unknown): value is AgentDefinition {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[AGENT_BRAND] === true;
}

const ROLE_MARK = Symbol.for("hexr.agent.role");
const CLASS_DEFS = Symbol.for("hexr.agent.class-definition");

type AnyClass = new () => object;

/**
 * Standard (TC39) decorators for class-based agents:
 *
 * ```ts
 * @agent({ name: "content-crew", entryRole: "researcher" })
 * export default class ContentCrew {
 *   @role("researcher") async research(input: string, ctx: AgentContext) { ... }
 *   @role("writer") async write(input: string, ctx: AgentContext) { ... }
 * }
 * ```
 */
export function agent(meta: AgentMeta) {
  return function <C extends AnyClass>(value: C, context: ClassDecoratorContext<C>): C {
    if (context.kind !== "class") throw invalid("@agent decorates a class");
    const roleMethods: Record<string, string> = {};
    for (const key of Object.getOwnPropertyNames(value.prototype)) {
      const fn = (value.prototype as Record<string, unknown>)[key];
      const roleName = typeof fn === "function" ? (fn as unknown as Record<symbol, string | undefined>)[ROLE_MARK] : undefined;
      if (roleName) roleMethods[roleName] = key;
    }
    if (Object.keys(roleMethods).length === 0) throw invalid(`@agent class ${String(context.name)} has no @role methods`);
    let instance: Record<string, (i: unknown, c: AgentContext) => unknown> | undefined;
    const handlers: Record<string, AgentHandler> = {};
    for (const [r, key] of Object.entries(roleMethods)) {
      handlers[r] = (input, ctx) => {
        instance ??= new value() as unknown as typeof instance;
        return instance![key]!(input, ctx) as ReturnType<AgentHandler>;
      };
    }
    Object.defineProperty(value, CLASS_DEFS, { value: hexrAgent(meta, handlers) });
    return value;
  };
}

/** Marks a method of an `@agent` class as the handler of a role. */
export function role(name: string) {
  return function <T extends (...args: never[]) => unknown>(method: T, context: ClassMethodDecoratorContext): T {
    if (context.kind !== "method") throw invalid("@role decorates a method");
    Object.defineProperty(method, ROLE_MARK, { value: name });
    return method;
  };
}

/** Accepts what an agent module exports: a `hexrAgent(...)` value or an `@agent` class. */
export function toAgentDefinition(exported: unknown): AgentDefinition | undefined {
  if (isAgentDefinition(exported)) return exported;
  if (typeof exported === "function") {
    const def = (exported as unknown as Record<symbol, unknown>)[CLASS_DEFS];
    if (isAgentDefinition(def)) return def;
  }
  return undefined;
}
