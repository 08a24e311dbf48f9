import type { Command } from "commander";
import { ApiClient, resolveTarget } from "../client.js";
import { printJson, printTable } from "../output.js";

interface AgentRole {
  role: string;
  spiffeId: string;
  endpoint: string | null;
  pid: number | null;
  status: string;
  restarts: number;
  lastHeartbeat: string | null;
}
interface Agent {
  name: string;
  tenant: string;
  status: string;
  framework: string;
  entryRole: string;
  roles: AgentRole[];
}

export function registerAgents(program: Command): void {
  program
    .command("agents [name]")
    .description("list the registered agents with their roles, SPIFFE IDs, endpoints and status (or show one)")
    .option("--tenant <tenant>", "only this tenant")
    .option("--data-dir <dir>", "data dir of the local platform")
    .option("--json", "machine-readable output")
    .action(async (name: string | undefined, o: { tenant?: string; dataDir?: string; json?: boolean }) => {
      const api = new ApiClient(resolveTarget(o.dataDir));
      const q = o.tenant ? `?tenant=${encodeURIComponent(o.tenant)}` : "";
      const agents = name
        ? [await api.request<Agent>("GET", `/api/v1/agents/${encodeURIComponent(name)}${q}`)]
        : (await api.request<{ items: Agent[] }>("GET", `/api/v1/agents${q}`)).items;
      if (o.json) return printJson(name ? agents[0] : agents);
      const rows = agents.flatMap((a) =>
        a.roles.map((r) => ({
          agent: a.name,
          tenant: a.tenant,
          role: r.role + (r.role === a.entryRole && a.roles.length > 1 ? "*" : ""),
          status: r.status,
          spiffeId: r.spiffeId,
          endpoint: r.endpoint,
          restarts: r.restarts,
        })),
      );
      printTable(rows, ["agent", "tenant", "role", "status", "spiffeId", "endpoint", "restarts"]);
    });
}
