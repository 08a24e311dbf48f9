import { HexrError } from "@hexr/core";
import { pathToFileURL } from "node:url";
import { startBridge } from "./bridge.js";
import { meshInvoke } from "./call.js";
import { toAgentDefinition, type AgentDefinition } from "./define.js";

/** Environment `hexr run` gives each role process. */
export interface AgentProcessEnv {
  module: string;
  role: string;
  tenant: string;
  agentName: string;
  meshToken: string;
  outboundUrl: string | undefined;
  bridgePort: number;
  framework: string;
  platformUrl: string | undefined;
}

export function readAgentEnv(env: NodeJS.ProcessEnv = process.env): AgentProcessEnv {
  const need = (k: string) => {
    const v = env[k];
    if (!v)
      throw new HexrError("agent.missing_env", `${k} is not set: start agents with 'hexr run <agent.ts>'`, {
        kind: "invalid_argument",
      });
    return v;
  };
  return {
    module: need("HEXR_AGENT_MODULE"),
    role: need("HEXR_ROLE"),
    tenant: need("HEXR_TENANT"),
    agentName: need("HEXR_AGENT_NAME"),
    meshToken: need("HEXR_MESH_TOKEN"),
    outboundUrl: env["HEXR_MESH_OUTBOUND"],
    bridgePort: Number(env["HEXR_BRIDGE_PORT"] ?? 0),
    framework: env["HEXR_FRAMEWORK"] ?? "custom",
    platformUrl: env["HEXR_PLATFORM_URL"],
  };
}

/** Imports an agent module and finds its definition (default export, or the only agent among named exports). */
export async function loadAgentModule(path: string): Promise<AgentDefinition> {
  const mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  const fromDefault = toAgentDefinition(mod["default"]);
  if (fromDefault) return fromDefault;
  const found = Object.values(mod)
    .map(toAgentDefinition)
    .filter((d): d is AgentDefinition => d !== undefined);
  if (found.length === 1) return found[0]!;
  throw new HexrError(
    "agent.not_found_in_module",
    found.length === 0
      ? `${path} exports no agent: export default hexrAgent({...}, handler)`
      : `${path} exports ${found.length} agents: export one per file`,
    { kind: "invalid_argument" },
  );
}

export interface HostedAgent {
  bridgePort: number;
  close(): Promise<void>;
}

/**
 * Runs one role of an agent in this process: serves its handler on the loopback bridge, and gives
 * it a context with its SPIFFE ID and a way to call other agents through the mesh.
 */
export async function hostAgentRole(def: AgentDefinition, env: AgentProcessEnv, spiffeId: string): Promise<HostedAgent> {
  if (def.meta.name !== env.agentName) {
    throw new HexrError("agent.name_mismatch", `module defines agent ${def.meta.name}, but it was started as ${env.agentName}`, {
      kind: "invalid_argument",
    });
  }
  const handler = def.roles[env.role];
  if (!handler) {
    throw new HexrError(
      "agent.unknown_role",
      `agent ${def.meta.name} has no role ${env.role} (roles: ${Object.keys(def.roles).join(", ")})`,
      {
        kind: "invalid_argument",
      },
    );
  }
  const bridge = await startBridge({
    handler,
    meshToken: env.meshToken,
    framework: def.meta.framework ?? env.framework,
    port: env.bridgePort,
    onError: (err) => console.error(`handler error: ${(err as Error)?.stack ?? String(err)}`),
    context: ({ caller, signal, taskId, contextId }) => ({
      spiffeId,
      caller,
      tenant: env.tenant,
      agent: env.agentName,
      role: env.role,
      signal,
      taskId,
      contextId,
      call: <T>(target: string, input: unknown, opts: { signal?: AbortSignal } = {}) => {
        if (!env.outboundUrl)
          throw new HexrError("agent.no_mesh", "this process has no outbound mesh proxy (HEXR_MESH_OUTBOUND)", {
            kind: "unavailable",
          });
        return meshInvoke<T>(target, input, {
          outboundUrl: env.outboundUrl,
          meshToken: env.meshToken,
          signal: opts.signal ?? signal,
        });
      },
    }),
  });
  return { bridgePort: bridge.port, close: bridge.close };
}
