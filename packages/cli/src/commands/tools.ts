import { HexrError } from "@hexr/core";
import type { Tool } from "@hexr/platform";
import type { Command } from "commander";
import { ApiClient, resolveTarget } from "../client.js";
import { printJson, printTable } from "../output.js";

interface Common {
  dataDir?: string;
  json?: boolean;
}

/** Every provider flag of `hexr tools add`, as commander names them. */
export interface ToolFlags {
  provider?: string;
  roleArn?: string;
  region?: string;
  sessionDuration?: string;
  stsEndpoint?: string;
  audience?: string;
  serviceAccount?: string;
  tokenUrl?: string;
  iamCredentialsUrl?: string;
  lifetime?: string;
  tenantId?: string;
  clientId?: string;
  authorityHost?: string;
  scope?: string;
  tokenAudience?: string;
}

/** Which flags each provider takes (camelCase flag → config field), and which it requires. */
const PROVIDERS: Record<
  string,
  { fields: Partial<Record<keyof ToolFlags, string>>; required: Array<keyof ToolFlags>; numbers?: Array<keyof ToolFlags> }
> = {
  aws: {
    fields: {
      roleArn: "roleArn",
      region: "region",
      sessionDuration: "sessionDurationSeconds",
      stsEndpoint: "stsEndpoint",
      tokenAudience: "tokenAudience",
    },
    required: ["roleArn", "region"],
    numbers: ["sessionDuration"],
  },
  gcp: {
    fields: {
      audience: "audience",
      serviceAccount: "serviceAccount",
      tokenUrl: "tokenUrl",
      iamCredentialsUrl: "iamCredentialsUrl",
      scope: "scope",
      lifetime: "lifetimeSeconds",
      tokenAudience: "tokenAudience",
    },
    required: ["audience"],
    numbers: ["lifetime"],
  },
  azure: {
    fields: {
      tenantId: "tenantId",
      clientId: "clientId",
      scope: "scope",
      authorityHost: "authorityHost",
      tokenAudience: "tokenAudience",
    },
    required: ["tenantId", "clientId"],
  },
};

const flagName = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

function usage(message: string): HexrError {
  return new HexrError("cli.usage", message, { kind: "invalid_argument" });
}

/** Turns `hexr tools add` flags into the API's `{ provider, config }`; names the flag that is wrong or missing. */
export function toolSpecFromFlags(flags: ToolFlags): { provider: string; config: Record<string, unknown> } {
  const provider = flags.provider;
  const def = provider ? PROVIDERS[provider] : undefined;
  if (!provider || !def)
    throw usage(`--provider must be one of ${Object.keys(PROVIDERS).join(", ")}${provider ? ` (got '${provider}')` : ""}`);
  const config: Record<string, unknown> = {};
  for (const [flag, value] of Object.entries(flags) as Array<[keyof ToolFlags, string | undefined]>) {
    if (flag === "provider" || value === undefined) continue;
    const field = def.fields[flag];
    if (!field) throw usage(`${flagName(flag)} does not apply to provider ${provider}`);
    if (def.numbers?.includes(flag)) {
      const n = Number(value);
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(n))
        throw usage(`${flagName(flag)} must be a whole number of seconds (got '${value}')`);
      config[field] = n;
    } else config[field] = value;
  }
  const missing = def.required.filter((f) => flags[f] === undefined);
  if (missing.length) throw usage(`provider ${provider} needs ${missing.map(flagName).join(" and ")}`);
  return { provider, config };
}

const client = (o: Common) => new ApiClient(resolveTarget(o.dataDir));
const common = (c: Command) =>
  c
    .requiredOption("--tenant <name>", "the tenant the tool belongs to")
    .option("--data-dir <dir>", "data dir of the local platform")
    .option("--json", "machine-readable output");
const toolsPath = (tenant: string, name?: string) =>
  `/api/v1/tenants/${encodeURIComponent(tenant)}/tools${name === undefined ? "" : `/${encodeURIComponent(name)}`}`;

/** One line of the provider's main parameters, for the table. */
function target(t: Tool): string {
  switch (t.provider) {
    case "aws":
      return `${t.config.roleArn} (${t.config.region})`;
    case "gcp":
      return t.config.serviceAccount ? `${t.config.serviceAccount} via ${t.config.audience}` : t.config.audience;
    case "azure":
      return `app ${t.config.clientId} in ${t.config.tenantId}`;
  }
}

export function registerTools(program: Command): void {
  const tools = program
    .command("tools")
    .description(
      "configure the cloud credentials agents get from hexrTool(name): a tool name maps to a provider and its parameters",
    );

  common(tools.command("add <name>").description("add a tool (or replace it with --replace)"))
    .requiredOption("--provider <provider>", "aws, gcp or azure")
    .option("--role-arn <arn>", "aws: the IAM role to assume")
    .option("--region <region>", "aws: the region of the role's STS endpoint and clients")
    .option("--session-duration <seconds>", "aws: credential lifetime, 900-43200 (default 900)")
    .option("--sts-endpoint <url>", "aws: a non-default STS endpoint (hosts other than AWS's own need an admin key)")
    .option("--audience <provider>", "gcp: the workload identity pool provider (//iam.googleapis.com/projects/...)")
    .option("--service-account <email>", "gcp: service account to impersonate")
    .option("--token-url <url>", "gcp: the STS token endpoint (hosts other than Google's own need an admin key)")
    .option(
      "--iam-credentials-url <url>",
      "gcp: the IAM Credentials API base URL (hosts other than Google's own need an admin key)",
    )
    .option("--lifetime <seconds>", "gcp: impersonated token lifetime (default 3600)")
    .option("--tenant-id <id>", "azure: the Entra directory (tenant) id")
    .option("--client-id <guid>", "azure: the application (client) id")
    .option(
      "--authority-host <url>",
      "azure: the Entra authority (default https://login.microsoftonline.com; other hosts need an admin key)",
    )
    .option("--scope <scope>", "gcp/azure: the OAuth scope requested")
    .option("--token-audience <aud>", "the aud of the token sent to the cloud (default per provider; never a SPIFFE ID)")
    .option("--replace", "replace the tool if it exists")
    .action(async (name: string, o: Common & ToolFlags & { tenant: string; replace?: boolean }) => {
      const { tenant, replace, dataDir: _d, json: _j, ...flags } = o;
      const spec = toolSpecFromFlags(flags);
      const api = client(o);
      let tool: Tool;
      let verb = "added";
      try {
        tool = await api.request<Tool>("POST", toolsPath(tenant), { name, ...spec });
      } catch (err) {
        if (!(replace && err instanceof HexrError && err.code === "credentials.tool_exists")) throw err;
        tool = await api.request<Tool>("PUT", toolsPath(tenant, name), spec);
        verb = "replaced";
      }
      if (o.json) printJson(tool);
      else process.stdout.write(`${verb} tool ${tool.name} in ${tool.tenant}: ${tool.provider} ${target(tool)}\n`);
    });

  common(tools.command("list").description("list a tenant's tools")).action(async (o: Common & { tenant: string }) => {
    const { items } = await client(o).request<{ items: Tool[] }>("GET", toolsPath(o.tenant));
    if (o.json) printJson(items);
    else
      printTable(
        items.map((t) => ({ name: t.name, provider: t.provider, target: target(t), updatedAt: t.updatedAt })),
        ["name", "provider", "target", "updatedAt"],
      );
  });

  common(tools.command("get <name>").description("show one tool's configuration")).action(
    async (name: string, o: Common & { tenant: string }) => {
      const tool = await client(o).request<Tool>("GET", toolsPath(o.tenant, name));
      if (o.json) printJson(tool);
      else {
        process.stdout.write(`${tool.name} (${tool.provider}) in ${tool.tenant}\n`);
        for (const [k, v] of Object.entries(tool.config)) process.stdout.write(`  ${k}: ${String(v)}\n`);
      }
    },
  );

  common(tools.command("rm <name>").alias("remove").description("remove a tool")).action(
    async (name: string, o: Common & { tenant: string }) => {
      await client(o).request("DELETE", toolsPath(o.tenant, name));
      if (o.json) printJson({ removed: name, tenant: o.tenant });
      else process.stdout.write(`removed tool ${name} from ${o.tenant}\n`);
    },
  );
}
