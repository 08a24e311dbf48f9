import { existsSync } from "node:fs";

const AGENT_FILE = /\.(ts|tsx|mts|cts|js|mjs|cjs)$/;

/** `hexr run agent.ts` (agent mode) rather than `hexr run --name N -- command`. Kept apart so the CLI loads the agent runtime (and TypeScript) only when it runs one. */
export function isAgentFile(arg: string | undefined): boolean {
  return !!arg && AGENT_FILE.test(arg) && existsSync(arg);
}
