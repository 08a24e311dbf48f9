import { HexrError } from "@hexr/core";
import type { Command } from "commander";
import { readFileSync } from "node:fs";
import { basename, extname } from "node:path";
import { ApiClient, resolveTarget } from "../client.js";
import { printJson, printTable } from "../output.js";

interface Common {
  dataDir?: string;
  json?: boolean;
  tenant?: string;
}

interface Decision {
  allowed: boolean;
  effect: "allow" | "deny";
  mode: string;
  flagged: boolean;
  policyIds: string[];
  reasons: string[];
  evaluationMicros: number;
}

interface PolicyVersion {
  name: string;
  version: number;
  mode: string;
  policy: string;
  description: string | null;
  deleted: boolean;
  policyIds: string[];
  createdAt: string;
  createdBy: string;
}

interface ReplayReport {
  since: string;
  evaluated: number;
  changed: number;
  errors: number;
  truncated: boolean;
  byPrincipal: Array<{
    principal: string;
    allowedToDenied: number;
    deniedToAllowed: number;
    changes: Array<{ action: string; resource: { type: string; id: string }; before: boolean; after: boolean; count: number }>;
  }>;
}

const MODES = ["audit", "warn", "enforce"];
const client = (o: Common) => new ApiClient(resolveTarget(o.dataDir));
const usage = (message: string) => new HexrError("cli.usage", message, { kind: "invalid_argument" });

function tenantOf(o: Common, env: NodeJS.ProcessEnv = process.env): string {
  const t = o.tenant ?? env["HEXR_TENANT"];
  if (!t) throw usage("give the tenant with --tenant <name> (or set HEXR_TENANT)");
  return t;
}

const base = (tenant: string) => `/api/v1/tenants/${encodeURIComponent(tenant)}/policies`;

function common(c: Command): Command {
  return c
    .option("--tenant <name>", "the tenant (default: $HEXR_TENANT)")
    .option("--data-dir <dir>", "data dir of the local platform")
    .option("--json", "machine-readable output");
}

function checkMode(mode: string | undefined): void {
  if (mode !== undefined && !MODES.includes(mode)) throw usage(`--mode must be one of ${MODES.join(", ")}`);
}

function readPolicyFile(path: string): string {
  try {
    return readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (err) {
    throw new HexrError(
      "cli.file_unreadable",
      `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      {
        kind: "invalid_argument",
      },
    );
  }
}

/** `prod-guard.cedar` → `prod-guard`. */
export function policyNameFromFile(path: string): string {
  return basename(path, extname(path));
}

/** `Secret:db/password` → `{ type: "Secret", id: "db/password" }`. */
export function parseResource(spec: string): { type: string; id: string } {
  const i = spec.indexOf(":");
  if (i <= 0 || i === spec.length - 1) throw usage(`--resource must be <Type>:<id>, e.g. Secret:db/password (got '${spec}')`);
  return { type: spec.slice(0, i), id: spec.slice(i + 1) };
}

function describeDecision(d: Decision): string {
  const verdict = d.allowed ? (d.flagged ? `ALLOW (flagged, ${d.mode} mode)` : "ALLOW") : "DENY";
  return [verdict, ...d.reasons.map((r) => `  ${r}`)].join("\n") + "\n";
}

export function registerPolicy(program: Command): void {
  const p = program.command("policy").description("manage a tenant's policies (Cedar), test requests, replay the decision log");

  common(p.command("list").description("list the tenant's active policies")).action(async (o: Common) => {
    const { items } = await client(o).request<{ items: PolicyVersion[] }>("GET", base(tenantOf(o)));
    if (o.json) printJson(items);
    else
      printTable(
        items.map((i) => ({ ...i, policies: i.policyIds.length })),
        ["name", "version", "mode", "policies", "createdAt", "createdBy", "description"],
      );
  });

  common(p.command("get <name>").description("print a policy's Cedar text"))
    .option("--ver <n>", "an older version number", (v) => Number(v))
    .action(async (name: string, o: Common & { ver?: number }) => {
      if (o.ver !== undefined && !(Number.isInteger(o.ver) && o.ver >= 1)) throw usage("--ver must be a whole number >= 1");
      const v = await client(o).request<PolicyVersion>(
        "GET",
        `${base(tenantOf(o))}/${encodeURIComponent(name)}${o.ver ? `?version=${o.ver}` : ""}`,
      );
      if (o.json) printJson(v);
      else {
        process.stdout.write(
          `// ${v.name} version ${v.version}, mode ${v.mode}${v.deleted ? ", deleted" : ""}, by ${v.createdBy} at ${v.createdAt}\n`,
        );
        process.stdout.write(v.policy.endsWith("\n") || v.policy === "" ? v.policy : v.policy + "\n");
      }
    });

  common(p.command("apply <file>").description("validate and store a policy document as a new version ('-' reads stdin)"))
    .option("--name <name>", "policy name (default: the file name without extension)")
    .option("--mode <mode>", "audit | warn | enforce", "enforce")
    .option("--description <text>", "what the policy is for")
    .action(async (file: string, o: Common & { name?: string; mode: string; description?: string }) => {
      checkMode(o.mode);
      const name = o.name ?? (file === "-" ? undefined : policyNameFromFile(file));
      if (!name) throw usage("give --name when reading the policy from stdin");
      const policy = readPolicyFile(file);
      const applied = await client(o).request<PolicyVersion & { unchanged: boolean }>(
        "PUT",
        `${base(tenantOf(o))}/${encodeURIComponent(name)}`,
        {
          policy,
          mode: o.mode,
          ...(o.description ? { description: o.description } : {}),
        },
      );
      if (o.json) printJson(applied);
      else if (applied.unchanged)
        process.stdout.write(`${applied.name} unchanged (version ${applied.version}, ${applied.mode})\n`);
      else
        process.stdout.write(
          `applied ${applied.name} version ${applied.version} in ${applied.mode} mode (${applied.policyIds.join(", ")})\n`,
        );
    });

  common(p.command("delete <name>").description("delete a policy (its history is kept)")).action(
    async (name: string, o: Common) => {
      await client(o).request("DELETE", `${base(tenantOf(o))}/${encodeURIComponent(name)}`);
      if (o.json) printJson({ deleted: name });
      else process.stdout.write(`deleted policy ${name}\n`);
    },
  );

  common(p.command("test").description("evaluate one request against the policies, without side effects"))
    .requiredOption("--principal <who>", "a SPIFFE ID, 'tenant-key' or 'admin'")
    .requiredOption("--action <action>", "e.g. vault:read")
    .requiredOption("--resource <Type:id>", "e.g. Secret:db/password")
    .option("--context <json>", "context attributes as a JSON object")
    .option("--candidate <file>", "evaluate as if this policy document were applied")
    .option("--name <name>", "the candidate's policy name (default: its file name)")
    .option("--mode <mode>", "the candidate's mode", "enforce")
    .option("--expect <allow|deny>", "exit with code 1 when the decision differs (for CI)")
    .action(
      async (
        o: Common & {
          principal: string;
          action: string;
          resource: string;
          context?: string;
          candidate?: string;
          name?: string;
          mode: string;
          expect?: string;
        },
      ) => {
        checkMode(o.mode);
        if (o.expect !== undefined && o.expect !== "allow" && o.expect !== "deny") throw usage("--expect must be allow or deny");
        let context: unknown;
        if (o.context !== undefined) {
          try {
            context = JSON.parse(o.context);
          } catch {
            throw usage("--context must be a JSON object");
          }
          if (typeof context !== "object" || context === null || Array.isArray(context))
            throw usage("--context must be a JSON object");
        }
        const d = await client(o).request<Decision>("POST", `${base(tenantOf(o))}/test`, {
          principal: o.principal,
          action: o.action,
          resource: parseResource(o.resource),
          ...(context ? { context } : {}),
          ...(o.candidate
            ? {
                candidate: { name: o.name ?? policyNameFromFile(o.candidate), policy: readPolicyFile(o.candidate), mode: o.mode },
              }
            : {}),
        });
        if (o.json) printJson(d);
        else process.stdout.write(describeDecision(d));
        if (o.expect !== undefined && (o.expect === "allow") !== d.allowed) process.exitCode = 1;
      },
    );

  common(
    p
      .command("replay <file>")
      .description("re-evaluate the recorded decision log with a candidate policy; prints what would change per agent"),
  )
    .option("--since <when>", "how far back: 30m, 24h, 7d or an RFC 3339 time", "24h")
    .option("--name <name>", "the policy the candidate replaces (default: the file name)")
    .option("--mode <mode>", "the candidate's mode", "enforce")
    .action(async (file: string, o: Common & { since: string; name?: string; mode: string }) => {
      checkMode(o.mode);
      const name = o.name ?? (file === "-" ? undefined : policyNameFromFile(file));
      if (!name) throw usage("give --name when reading the policy from stdin");
      const r = await client(o).request<ReplayReport>("POST", `${base(tenantOf(o))}/replay`, {
        name,
        policy: readPolicyFile(file),
        mode: o.mode,
        since: o.since,
      });
      if (o.json) {
        printJson(r);
        return;
      }
      process.stdout.write(
        `replayed ${r.evaluated} decisions since ${r.since}${r.truncated ? " (truncated)" : ""}: ${r.changed} would change${r.errors ? `, ${r.errors} could not be evaluated` : ""}\n`,
      );
      for (const b of r.byPrincipal) {
        process.stdout.write(`\n${b.principal}: ${b.allowedToDenied} allowed → denied, ${b.deniedToAllowed} denied → allowed\n`);
        for (const c of b.changes) {
          process.stdout.write(
            `  ${c.before ? "allowed → denied" : "denied → allowed"}  ${c.action} ${c.resource.type}:${c.resource.id}  ×${c.count}\n`,
          );
        }
      }
    });

  common(p.command("log").description("show the decision log, newest first"))
    .option("--since <when>", "how far back: 30m, 24h, 7d or an RFC 3339 time")
    .option("--principal <id>", "only this principal (SPIFFE ID or apikey:<id>)")
    .option("--action <action>", "only this action")
    .option("--denied", "only requests that were refused")
    .option("--flagged", "only requests let through by audit/warn mode")
    .option("--limit <n>", "at most n entries (1-1000)", (v) => Number(v), 50)
    .action(
      async (
        o: Common & { since?: string; principal?: string; action?: string; denied?: boolean; flagged?: boolean; limit: number },
      ) => {
        if (!(Number.isInteger(o.limit) && o.limit >= 1 && o.limit <= 1000))
          throw usage("--limit must be a whole number from 1 to 1000");
        const q = new URLSearchParams({ limit: String(o.limit) });
        if (o.since) q.set("since", o.since);
        if (o.principal) q.set("principal", o.principal);
        if (o.action) q.set("action", o.action);
        if (o.denied) q.set("allowed", "false");
        if (o.flagged) q.set("flagged", "true");
        const { items } = await client(o).request<{ items: Array<Record<string, unknown>> }>(
          "GET",
          `${base(tenantOf(o))}/decisions?${q}`,
        );
        if (o.json) printJson(items);
        else
          printTable(
            items.map((i) => {
              const r = i["resource"] as { type: string; id: string };
              return {
                ...i,
                resource: `${r.type}:${r.id}`,
                result: i["allowed"] ? (i["flagged"] ? `allow (${String(i["mode"])})` : "allow") : "deny",
                policies: (i["policyIds"] as string[]).join(","),
                micros: i["evaluationMicros"],
              };
            }),
            ["at", "principal", "action", "resource", "result", "policies", "micros"],
          );
      },
    );
}
