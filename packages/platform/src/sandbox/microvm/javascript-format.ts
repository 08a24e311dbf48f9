/**
 * Whether a javascript job is an ES module. The namespace backend runs the host's node with
 * `--experimental-detect-module`; the guest's node (Debian's 18) has no such flag, so the host makes
 * the same decision the flag makes and the agent scopes main.js as a module (a package.json with
 * `"type": "module"` beside it). The code is only compiled here, never run.
 */

import { Script } from "node:vm";

/** Syntax errors that mean "this is ES module syntax" (node's own list for the detection). */
const ESM_ONLY = [
  "Cannot use import statement outside a module",
  "Unexpected token 'export'",
  "Cannot use 'import.meta' outside a module",
];

/** Errors CommonJS raises for code that is valid as a module: then it is a module if it compiles as one (top-level await). */
const CJS_ONLY = [
  "Identifier 'module' has already been declared",
  "Identifier 'exports' has already been declared",
  "Identifier 'require' has already been declared",
  "Identifier '__filename' has already been declared",
  "Identifier '__dirname' has already been declared",
  "await is only valid in async functions and the top level bodies of modules",
];

function compileError(source: string): string | undefined {
  try {
    new Script(source, { filename: "main.js" });
    return undefined;
  } catch (err) {
    return err instanceof SyntaxError ? err.message : String(err);
  }
}

export function isEsModule(code: string): boolean {
  const cjs = compileError(`(function (exports, require, module, __filename, __dirname) { ${code}\n})`);
  if (cjs === undefined) return false;
  if (ESM_ONLY.includes(cjs)) return true;
  // A module body behaves like an async function body for these: compiled as one, it must succeed.
  return CJS_ONLY.includes(cjs) && compileError(`(async function () { ${code}\n})`) === undefined;
}
