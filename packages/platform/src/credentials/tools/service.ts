import { HexrError } from "@hexr/core";
import type { Principal, TenantScope } from "../../auth/principal.js";
import { checkToolEndpoints } from "./endpoints.js";
import { CreateToolRequest, ToolSpec, type Tool } from "./schema.js";
import type { ToolRow, ToolStore } from "./store.js";

export interface ToolServiceOptions {
  store: ToolStore;
  clock?: () => number;
}

export function toolNotFound(tenant: string, name: string): HexrError {
  return new HexrError(
    "credentials.tool_not_found",
    `tenant '${tenant}' has no tool '${name}'; 'hexr tools list --tenant ${tenant}' shows its tools`,
    { kind: "not_found", details: { tool: name } },
  );
}

/** Only people (API keys) configure tools: a workload must not repoint its own credentials. */
function requireOperator(by: Principal): void {
  if (by.kind !== "admin" && by.kind !== "tenant-key") {
    throw new HexrError("credentials.forbidden", "tool configuration needs an admin or tenant API key", {
      kind: "permission_denied",
    });
  }
}

function toTool(row: ToolRow): Tool {
  // A stored config that today's rules refuse (written before a rule was tightened) is never used.
  const parsed = ToolSpec.safeParse({ provider: row.provider, config: JSON.parse(row.config) as unknown });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new HexrError(
      "credentials.tool_invalid",
      `tool '${row.name}' of tenant '${row.tenant}' has a stored configuration that is no longer accepted (config.${issue.path.slice(1).join(".")}: ${issue.message}); replace it with 'hexr tools add ${row.name} --tenant ${row.tenant} ... --replace'`,
      { kind: "failed_precondition", details: { tool: row.name } },
    );
  }
  const spec = parsed.data;
  return {
    name: row.name,
    tenant: row.tenant,
    ...spec,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
  };
}

/** Per-tenant tool configuration: a tool name maps to a cloud provider and its parameters. */
export class ToolService {
  private readonly store: ToolStore;
  private readonly clock: () => number;

  constructor({ store, clock = Date.now }: ToolServiceOptions) {
    this.store = store;
    this.clock = clock;
  }

  async create(scope: TenantScope, input: CreateToolRequest, by: Principal): Promise<Tool> {
    requireOperator(by);
    const req = CreateToolRequest.parse(input);
    checkToolEndpoints(req, by);
    const now = this.clock();
    const inserted = await this.store.insert(scope, {
      name: req.name,
      provider: req.provider,
      config: JSON.stringify(req.config),
      created_at: now,
      updated_at: now,
    });
    if (!inserted) {
      throw new HexrError("credentials.tool_exists", `tenant '${scope.tenant}' already has a tool '${req.name}'`, {
        kind: "conflict",
        details: { tool: req.name },
      });
    }
    return this.get(scope, req.name, by);
  }

  /** Replaces the provider and config of an existing tool. */
  async replace(scope: TenantScope, name: string, input: ToolSpec, by: Principal): Promise<Tool> {
    requireOperator(by);
    const spec = ToolSpec.parse(input);
    checkToolEndpoints(spec, by);
    if (!(await this.store.update(scope, name, spec.provider, JSON.stringify(spec.config), this.clock()))) {
      throw toolNotFound(scope.tenant, name);
    }
    return this.get(scope, name, by);
  }

  async get(scope: TenantScope, name: string, by: Principal): Promise<Tool> {
    requireOperator(by);
    return this.resolve(scope, name);
  }

  async list(scope: TenantScope, by: Principal): Promise<Tool[]> {
    requireOperator(by);
    return (await this.store.list(scope)).map(toTool);
  }

  async delete(scope: TenantScope, name: string, by: Principal): Promise<void> {
    requireOperator(by);
    if (!(await this.store.delete(scope, name))) throw toolNotFound(scope.tenant, name);
  }

  /** For the exchange: the tool as configured in the caller's own tenant. */
  async resolve(scope: TenantScope, name: string): Promise<Tool> {
    const row = await this.store.get(scope, name);
    if (!row) throw toolNotFound(scope.tenant, name);
    return toTool(row);
  }

  async deleteTenant(tenant: string): Promise<void> {
    await this.store.deleteTenant(tenant);
  }
}
