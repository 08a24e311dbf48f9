import { HexrError } from "@hexr/core";
import type { AuthorityStatus } from "@hexr/platform";
import type { Command } from "commander";
import { ApiClient, resolveTarget } from "../client.js";
import { printJson, printTable } from "../output.js";

interface Common {
  dataDir?: string;
  json?: boolean;
}

/** The wire shape of a registration entry (platform `identity/entries/service.ts`). */
interface EntryView {
  id: string;
  spiffeId: string;
  selectors: Array<{ type: string; value: string }>;
  tenant: string | null;
  x509SvidTtlSeconds: number;
  jwtSvidTtlSeconds: number;
  createdBy: string;
  createdAt: string;
  expiresAt: string | null;
}

const client = (o: Common) => new ApiClient(resolveTarget(o.dataDir));
const common = (c: Command) =>
  c.option("--data-dir <dir>", "data dir of the local platform").option("--json", "machine-readable output");

function usage(message: string): HexrError {
  return new HexrError("cli.usage", message, { kind: "invalid_argument" });
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `90`, `90s`, `15m`, `1h`, `2d` → seconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  const seconds = m ? Number(m[1]) * UNITS[m[2] || "s"]! : NaN;
  if (!Number.isSafeInteger(seconds) || seconds < 1) {
    throw usage(`${flag} must be a positive duration such as 300, 90s, 15m, 1h or 2d (got '${text}')`);
  }
  return seconds;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function rows(entries: EntryView[]): Array<Record<string, unknown>> {
  return entries.map((e) => ({
    id: e.id,
    spiffeId: e.spiffeId,
    selectors: e.selectors.map((s) => `${s.type}:${s.value}`).join(","),
    tenant: e.tenant,
    x509Ttl: `${e.x509SvidTtlSeconds}s`,
    jwtTtl: `${e.jwtSvidTtlSeconds}s`,
    expiresAt: e.expiresAt,
  }));
}

const ENTRY_COLUMNS = ["id", "spiffeId", "selectors", "tenant", "x509Ttl", "jwtTtl", "expiresAt"];

/** The `hexr identity` command, created once; other identity commands (e.g. `whoami`) attach to it. */
export function identityCommand(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === "identity") ??
    program.command("identity").description("SPIFFE identities: registration entries, trust bundle, CA")
  );
}

export function registerIdentity(program: Command): void {
  const identity = identityCommand(program);
  const entries = identity.command("entries").description("registration entries: which selectors get which SPIFFE ID");

  common(entries.command("list").description("list registration entries (all, or one tenant's)"))
    .option("--tenant <name>", "only this tenant's entries (works with a tenant API key)")
    .option("--spiffe-id <id>", "only entries for this SPIFFE ID")
    .action(async (o: Common & { tenant?: string; spiffeId?: string }) => {
      const api = client(o);
      const all: EntryView[] = [];
      let after: string | null = null;
      do {
        const base = o.tenant ? `/api/v1/tenants/${encodeURIComponent(o.tenant)}/identity/entries` : "/api/v1/identity/entries";
        const q = new URLSearchParams({ limit: "1000" });
        if (after) q.set("after", after);
        const page: { items: EntryView[]; nextAfter: string | null } = await api.request("GET", `${base}?${q.toString()}`);
        all.push(...page.items);
        after = page.nextAfter;
      } while (after);
      const shown = o.spiffeId ? all.filter((e) => e.spiffeId === o.spiffeId) : all;
      if (o.json) printJson(shown);
      else printTable(rows(shown), ENTRY_COLUMNS);
    });

  common(entries.command("create").description("create a registration entry"))
    .requiredOption("--spiffe-id <id>", "e.g. spiffe://hexr.local/agent/acme-corp/researcher/main")
    .option("--selector <type:value>", "a selector the workload must have, e.g. unix:uid:1000 (repeat for several)", collect)
    .option("--tenant <name>", "owning tenant (inferred from agent IDs)")
    .option("--ttl <duration>", "X.509-SVID lifetime, e.g. 1h (default: platform setting)")
    .option("--jwt-ttl <duration>", "JWT-SVID lifetime, e.g. 5m (default: platform setting)")
    .option("--expires-in <duration>", "delete-after time for the entry itself, e.g. 7d")
    .action(
      async (
        o: Common & { spiffeId: string; selector?: string[]; tenant?: string; ttl?: string; jwtTtl?: string; expiresIn?: string },
      ) => {
        if (!o.selector || o.selector.length === 0)
          throw usage("give at least one --selector type:value (e.g. --selector unix:uid:1000)");
        const body: Record<string, unknown> = { spiffeId: o.spiffeId, selectors: o.selector };
        if (o.tenant) body["tenant"] = o.tenant;
        if (o.ttl) body["x509SvidTtlSeconds"] = parseDuration(o.ttl, "--ttl");
        if (o.jwtTtl) body["jwtSvidTtlSeconds"] = parseDuration(o.jwtTtl, "--jwt-ttl");
        if (o.expiresIn)
          body["expiresAt"] = new Date(Date.now() + parseDuration(o.expiresIn, "--expires-in") * 1000).toISOString();
        const entry = await client(o).request<EntryView>("POST", "/api/v1/identity/entries", body);
        if (o.json) printJson(entry);
        else
          process.stdout.write(`created entry ${entry.id}: ${entry.spiffeId} for ${rows([entry])[0]!["selectors"] as string}\n`);
      },
    );

  common(entries.command("get <id>").description("show one registration entry")).action(async (id: string, o: Common) => {
    const entry = await client(o).request<EntryView>("GET", `/api/v1/identity/entries/${encodeURIComponent(id)}`);
    if (o.json) printJson(entry);
    else printTable(rows([entry]), ENTRY_COLUMNS);
  });

  common(entries.command("delete <id>").description("delete a registration entry")).action(async (id: string, o: Common) => {
    await client(o).request("DELETE", `/api/v1/identity/entries/${encodeURIComponent(id)}`);
    if (o.json) printJson({ deleted: id });
    else process.stdout.write(`deleted entry ${id}\n`);
  });

  common(identity.command("bundle").description("print the trust domain's SPIFFE bundle (JWKS)")).action(async (o: Common) => {
    // The bundle is JSON by nature: both modes print it.
    printJson(await client(o).request("GET", "/api/v1/identity/bundle"));
  });

  const authority = identity.command("authority").description("the CA: its slots and rotation");
  common(authority.command("status").description("show CA slots (prepared/active/old) and roots")).action(async (o: Common) => {
    const s = await client(o).request<AuthorityStatus>("GET", "/api/v1/identity/authority");
    if (o.json) printJson(s);
    else {
      process.stdout.write(`trust domain ${s.trustDomain}, bundle sequence ${s.sequence}\n`);
      printTable(s.slots as unknown as Array<Record<string, unknown>>, [
        "id",
        "state",
        "jwtKeyId",
        "notAfter",
        "activatedAt",
        "retirableAt",
      ]);
    }
  });
  common(authority.command("rotate <step>").description("run one rotation step now: prepare | activate | retire"))
    .option("--new-root", "with prepare: also start a new root CA")
    .option("--force", "with retire: remove old keys now even if their SVIDs have not expired (compromise)")
    .action(async (step: string, o: Common & { newRoot?: boolean; force?: boolean }) => {
      if (!["prepare", "activate", "retire"].includes(step))
        throw usage(`step must be prepare, activate or retire (got '${step}')`);
      const s = await client(o).request<AuthorityStatus>("POST", "/api/v1/identity/authority/rotate", {
        step,
        ...(o.newRoot ? { newRoot: true } : {}),
        ...(o.force ? { force: true } : {}),
      });
      if (o.json) printJson(s);
      else
        process.stdout.write(
          `${step}: done; bundle sequence ${s.sequence}, slots ${s.slots.map((x) => `${x.id.slice(0, 8)}=${x.state}`).join(" ")}\n`,
        );
    });
}
