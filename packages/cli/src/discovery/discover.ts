import { HexrError } from "@hexr/core";
import { readFileSync } from "node:fs";
import ts from "typescript";

export type Framework = "ai-sdk" | "openai" | "anthropic" | "langchain" | "mastra" | "custom";

/** What static analysis finds in an agent's source, before any of its code runs. */
export interface DiscoveredAgent {
  name: string;
  description: string | undefined;
  roles: string[];
  entryRole: string;
  framework: Framework;
  /** `hexrAgent` call or `@agent` class. */
  form: "function" | "class";
  /** 1-based line of the definition. */
  line: number;
}

/** Framework from the module's imports; the first match in this order wins. */
const FRAMEWORK_IMPORTS: Array<[Framework, (spec: string) => boolean]> = [
  ["mastra", (s) => s.startsWith("@mastra/")],
  ["langchain", (s) => s === "langchain" || s.startsWith("langchain/") || s.startsWith("@langchain/")],
  ["ai-sdk", (s) => s === "ai" || s.startsWith("@ai-sdk/")],
  ["anthropic", (s) => s === "@anthropic-ai/sdk" || s.startsWith("@anthropic-ai/sdk/")],
  ["openai", (s) => s === "openai" || s.startsWith("openai/")],
];

function fail(file: string, sf: ts.SourceFile, node: ts.Node, message: string): never {
  const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
  throw new HexrError("discovery.invalid_agent", `${file}:${line + 1}: ${message}`, { kind: "invalid_argument" });
}

function literalString(e: ts.Expression | undefined): string | undefined {
  if (!e) return undefined;
  if (ts.isStringLiteral(e) || ts.isNoSubstitutionTemplateLiteral(e)) return e.text;
  return undefined;
}

function prop(obj: ts.ObjectLiteralExpression, name: string): ts.Expression | undefined {
  for (const p of obj.properties) {
    if (ts.isPropertyAssignment(p) && propName(p.name) === name) return p.initializer;
  }
  return undefined;
}

function propName(n: ts.PropertyName): string | undefined {
  if (ts.isIdentifier(n) || ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) return n.text;
  return undefined;
}

/** Reads `{ name: "...", description, entryRole }`; the name must be a literal so builds can find it. */
function readMeta(file: string, sf: ts.SourceFile, arg: ts.Expression | undefined) {
  if (!arg || !ts.isObjectLiteralExpression(arg)) fail(file, sf, arg ?? sf, "the agent's metadata must be an object literal");
  const nameExpr = prop(arg, "name");
  const name = literalString(nameExpr);
  if (!name)
    fail(
      file,
      sf,
      nameExpr ?? arg,
      "the agent's name must be a string literal, so 'hexr build' can read it before any code runs",
    );
  const entryExpr = prop(arg, "entryRole");
  const entryRole = literalString(entryExpr);
  if (entryExpr && !entryRole) fail(file, sf, entryExpr, "entryRole must be a string literal");
  return { name, description: literalString(prop(arg, "description")), entryRole };
}

/** Finds every agent a TypeScript/JavaScript source defines, and the framework it uses. */
export function discoverAgentsInSource(source: string, file = "agent.ts"): DiscoveredAgent[] {
  const sf = ts.createSourceFile(
    file,
    source,
    ts.ScriptTarget.Latest,
    true,
    file.endsWith(".tsx") ? ts.ScriptKind.TSX : ts.ScriptKind.TS,
  );
  const imports: string[] = [];
  const agents: DiscoveredAgent[] = [];
  const lineOf = (n: ts.Node) => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;

  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) imports.push(node.moduleSpecifier.text);
    if (ts.isCallExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === "require") {
      const spec = literalString(node.arguments[0]);
      if (spec) imports.push(spec);
    }
    if (ts.isCallExpression(node) && calleeName(node.expression) === "hexrAgent") {
      const meta = readMeta(file, sf, node.arguments[0]);
      const handlers = node.arguments[1];
      let roles: string[];
      if (!handlers) fail(file, sf, node, "hexrAgent needs a handler (a function, or an object of role → function)");
      if (ts.isObjectLiteralExpression(handlers)) {
        roles = handlers.properties.map((p) => {
          const n = p.name && ts.isPropertyName(p.name) ? propName(p.name) : undefined;
          if (!n || ts.isSpreadAssignment(p)) fail(file, sf, p, "role names must be literal property names");
          return n;
        });
      } else roles = ["main"];
      agents.push(finish(file, sf, node, meta, roles, "function", lineOf(node)));
    }
    if (ts.isClassDeclaration(node) || ts.isClassExpression(node)) {
      const deco = ts
        .getDecorators(node)
        ?.find((d) => ts.isCallExpression(d.expression) && calleeName(d.expression.expression) === "agent");
      if (deco) {
        const call = deco.expression as ts.CallExpression;
        const meta = readMeta(file, sf, call.arguments[0]);
        const roles: string[] = [];
        for (const m of node.members) {
          const rd = ts.canHaveDecorators(m)
            ? ts
                .getDecorators(m)
                ?.find((d) => ts.isCallExpression(d.expression) && calleeName(d.expression.expression) === "role")
            : undefined;
          if (!rd) continue;
          const r = literalString((rd.expression as ts.CallExpression).arguments[0]);
          if (!r) fail(file, sf, rd, "@role needs a string literal role name");
          roles.push(r);
        }
        agents.push(finish(file, sf, node, meta, roles, "class", lineOf(node)));
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  const framework = FRAMEWORK_IMPORTS.find(([, match]) => imports.some(match))?.[0] ?? "custom";
  return agents.map((a) => ({ ...a, framework }));
}

function calleeName(e: ts.Expression): string | undefined {
  if (ts.isIdentifier(e)) return e.text;
  if (ts.isPropertyAccessExpression(e)) return e.name.text;
  return undefined;
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function finish(
  file: string,
  sf: ts.SourceFile,
  node: ts.Node,
  meta: { name: string; description: string | undefined; entryRole: string | undefined },
  roles: string[],
  form: "function" | "class",
  line: number,
): DiscoveredAgent {
  if (!DNS_LABEL.test(meta.name))
    fail(file, sf, node, `agent name "${meta.name}" must be a DNS label (lowercase letters, digits, '-')`);
  if (roles.length === 0) fail(file, sf, node, `agent ${meta.name} has no roles`);
  for (const r of roles) if (!DNS_LABEL.test(r)) fail(file, sf, node, `role name "${r}" must be a DNS label`);
  if (new Set(roles).size !== roles.length) fail(file, sf, node, `agent ${meta.name} declares a role twice`);
  const entryRole = meta.entryRole ?? (roles.length === 1 ? roles[0]! : undefined);
  if (!entryRole) fail(file, sf, node, `agent ${meta.name} has several roles (${roles.join(", ")}): set entryRole`);
  if (!roles.includes(entryRole)) fail(file, sf, node, `entryRole "${entryRole}" is not one of ${roles.join(", ")}`);
  return { name: meta.name, description: meta.description, roles, entryRole, framework: "custom", form, line };
}

export function discoverAgents(file: string): DiscoveredAgent[] {
  let source: string;
  try {
    source = readFileSync(file, "utf8");
  } catch (err) {
    throw new HexrError(
      "discovery.unreadable",
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { kind: "not_found" },
    );
  }
  return discoverAgentsInSource(source, file);
}

/** Exactly one agent per file, as the runtime expects. */
export function discoverAgent(file: string): DiscoveredAgent {
  const found = discoverAgents(file);
  if (found.length === 0) {
    throw new HexrError("discovery.no_agent", `${file} defines no agent: export default hexrAgent({ name: "..." }, handler)`, {
      kind: "invalid_argument",
    });
  }
  if (found.length > 1)
    throw new HexrError("discovery.many_agents", `${file} defines ${found.length} agents; put each in its own file`, {
      kind: "invalid_argument",
    });
  return found[0]!;
}
