import type { ApiKey, CreatedApiKey, Tenant } from "@hexr/platform";
import type { Command } from "commander";
import { ApiClient, resolveTarget } from "../client.js";
import { printJson, printTable } from "../output.js";

interface Common {
  dataDir?: string;
  json?: boolean;
}

const client = (o: Common) => new ApiClient(resolveTarget(o.dataDir));
const common = (c: Command) =>
  c.option("--data-dir <dir>", "data dir of the local platform").option("--json", "machine-readable output");

export function registerTenants(program: Command): void {
  const t = program.command("tenants").description("manage tenants");
  common(t.command("create <name>").description("create a tenant (name: a DNS label such as acme-corp)"))
    .option("--display-name <text>", "human-friendly name")
    .action(async (name: string, o: Common & { displayName?: string }) => {
      const tenant = await client(o).request<Tenant>("POST", "/api/v1/tenants", {
        name,
        ...(o.displayName ? { displayName: o.displayName } : {}),
      });
      if (o.json) printJson(tenant);
      else process.stdout.write(`created tenant ${tenant.name} (${tenant.id})\n`);
    });
  common(t.command("list").description("list tenants")).action(async (o: Common) => {
    const all: Tenant[] = [];
    let after: string | null = null;
    do {
      const page: { items: Tenant[]; nextAfter: string | null } = await client(o).request(
        "GET",
        `/api/v1/tenants?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ""}`,
      );
      all.push(...page.items);
      after = page.nextAfter;
    } while (after);
    if (o.json) printJson(all);
    else printTable(all as unknown as Record<string, unknown>[], ["name", "displayName", "id", "createdAt"]);
  });
  common(t.command("get <name>").description("show one tenant")).action(async (name: string, o: Common) => {
    const tenant = await client(o).request<Tenant>("GET", `/api/v1/tenants/${encodeURIComponent(name)}`);
    if (o.json) printJson(tenant);
    else printTable([tenant as unknown as Record<string, unknown>], ["name", "displayName", "id", "createdAt"]);
  });
  common(t.command("delete <name>").description("delete a tenant and revoke its API keys")).action(
    async (name: string, o: Common) => {
      await client(o).request("DELETE", `/api/v1/tenants/${encodeURIComponent(name)}`);
      if (o.json) printJson({ deleted: name });
      else process.stdout.write(`deleted tenant ${name}\n`);
    },
  );
}

export function registerKeys(program: Command): void {
  const k = program.command("keys").description("manage API keys");
  common(k.command("create").description("create an API key; the key is printed once"))
    .option("--tenant <name>", "scope the key to one tenant")
    .option("--admin", "an admin key (all tenants)")
    .option("--name <name>", "a label for the key", "cli")
    .option("--expires-in <seconds>", "expire after this many seconds", (v) => Number(v))
    .action(async (o: Common & { tenant?: string; admin?: boolean; name: string; expiresIn?: number }) => {
      if (!!o.admin === !!o.tenant) {
        const { HexrError } = await import("@hexr/core");
        throw new HexrError("cli.usage", "give exactly one of --admin or --tenant <name>", { kind: "invalid_argument" });
      }
      const created = await client(o).request<CreatedApiKey>("POST", "/api/v1/keys", {
        name: o.name,
        scope: o.admin ? "admin" : "tenant",
        ...(o.tenant ? { tenant: o.tenant } : {}),
        ...(o.expiresIn ? { expiresInSeconds: o.expiresIn } : {}),
      });
      if (o.json) printJson(created);
      else {
        process.stdout.write(`created ${created.scope} key ${created.id}${created.tenant ? ` for ${created.tenant}` : ""}\n`);
        process.stdout.write(`${created.key}\n`);
        process.stderr.write("store it now: it is not shown again\n");
      }
    });
  common(k.command("list").description("list API keys (never their secrets)"))
    .option("--all", "include revoked keys")
    .action(async (o: Common & { all?: boolean }) => {
      const { items } = await client(o).request<{ items: ApiKey[] }>(
        "GET",
        `/api/v1/keys?includeRevoked=${o.all ? "true" : "false"}`,
      );
      if (o.json) printJson(items);
      else
        printTable(items as unknown as Record<string, unknown>[], [
          "id",
          "name",
          "scope",
          "tenant",
          "createdAt",
          "lastUsedAt",
          "revokedAt",
        ]);
    });
  common(k.command("revoke <id>").description("revoke an API key")).action(async (id: string, o: Common) => {
    await client(o).request("DELETE", `/api/v1/keys/${encodeURIComponent(id)}`);
    if (o.json) printJson({ revoked: id });
    else process.stdout.write(`revoked key ${id}\n`);
  });
}
