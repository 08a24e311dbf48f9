import { HexrError } from "@hexr/core";
import type { Command } from "commander";
import { readFileSync } from "node:fs";
import { TextDecoder } from "node:util";
import { ApiClient, resolveTarget } from "../client.js";
import { printJson, printTable } from "../output.js";

interface Common {
  dataDir?: string;
  json?: boolean;
  tenant?: string;
}

interface SecretValue {
  name: string;
  version: number;
  value: string;
  encoding: "utf8" | "base64";
  createdAt: string;
}

const client = (o: Common) => new ApiClient(resolveTarget(o.dataDir));
const usage = (message: string) => new HexrError("cli.usage", message, { kind: "invalid_argument" });

function tenantOf(o: Common, env: NodeJS.ProcessEnv = process.env): string {
  const t = o.tenant ?? env["HEXR_TENANT"];
  if (!t) throw usage("give the tenant with --tenant <name> (or set HEXR_TENANT)");
  return t;
}

const secretPath = (tenant: string, name: string) =>
  `/api/v1/tenants/${encodeURIComponent(tenant)}/secrets/${encodeURIComponent(name)}`;

function common(c: Command): Command {
  return c
    .option("--tenant <name>", "the tenant (default: $HEXR_TENANT)")
    .option("--data-dir <dir>", "data dir of the local platform")
    .option("--json", "machine-readable output");
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The value of `put`: from stdin (`-`) or a file, never from the command line (shell history, ps). */
export async function readSecretInput(
  source: string | undefined,
  o: { fromFile?: string; keepNewline?: boolean; binary?: boolean },
  stdin: () => Promise<Buffer> = readStdin,
): Promise<{ value: string; encoding: "utf8" | "base64" }> {
  if (source !== undefined && source !== "-") {
    throw usage(
      "secret values are not taken from the command line (they would land in shell history): use '-' to read stdin, or --from-file <path>",
    );
  }
  if ((source === "-") === (o.fromFile !== undefined)) throw usage("give exactly one of '-' (read stdin) or --from-file <path>");
  let bytes: Buffer;
  if (o.fromFile !== undefined) {
    try {
      bytes = readFileSync(o.fromFile);
    } catch (err) {
      throw new HexrError(
        "cli.file_unreadable",
        `cannot read ${o.fromFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        {
          kind: "invalid_argument",
        },
      );
    }
  } else bytes = await stdin();
  if (o.binary) return { value: bytes.toString("base64"), encoding: "base64" };
  // `echo secret | hexr secrets put x -` adds a newline nobody meant to store.
  if (!o.keepNewline && bytes.length > 0 && bytes[bytes.length - 1] === 0x0a) {
    bytes = bytes.subarray(0, bytes[bytes.length - 2] === 0x0d ? bytes.length - 2 : bytes.length - 1);
  }
  if (bytes.length === 0) throw usage("the secret value is empty");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw usage("the value is not UTF-8 text; add --binary to store it as bytes");
  }
  return { value: text, encoding: "utf8" };
}

export function registerSecrets(program: Command): void {
  const s = program
    .command("secrets")
    .description("manage the tenant's secrets in the vault (values are read from stdin or a file, never from arguments)");

  common(
    s
      .command("put <name> [source]")
      .description("write a new version of a secret; source '-' reads the value from stdin")
      .addHelpText(
        "after",
        '\nExamples:\n  printf %s "$PASS" | hexr secrets put db/password - --tenant acme\n  hexr secrets put tls/key --from-file key.pem --tenant acme',
      ),
  )
    .option("--from-file <path>", "read the value from a file")
    .option("--binary", "store the bytes as they are (base64 on the wire)")
    .option("--keep-newline", "keep a trailing newline of the input")
    .option("--expected-version <n>", "only write if the current version is n (0: must not exist)", (v) => Number(v))
    .action(
      async (
        name: string,
        source: string | undefined,
        o: Common & { fromFile?: string; binary?: boolean; keepNewline?: boolean; expectedVersion?: number },
      ) => {
        const tenant = tenantOf(o);
        if (o.expectedVersion !== undefined && !(Number.isInteger(o.expectedVersion) && o.expectedVersion >= 0)) {
          throw usage("--expected-version must be a whole number >= 0");
        }
        const input = await readSecretInput(source, o);
        const meta = await client(o).request<{ name: string; version: number }>("PUT", secretPath(tenant, name), {
          ...input,
          ...(o.expectedVersion !== undefined ? { expectedVersion: o.expectedVersion } : {}),
        });
        if (o.json) printJson(meta);
        else process.stdout.write(`wrote ${meta.name} version ${meta.version}\n`);
      },
    );

  common(s.command("get <name>").description("print a secret's value (current version, or --version)"))
    .option("--ver <n>", "a specific version number (--version is taken by the program)", (v) => Number(v))
    .action(async (name: string, o: Common & { ver?: number }) => {
      const tenant = tenantOf(o);
      if (o.ver !== undefined && !(Number.isInteger(o.ver) && o.ver >= 1)) throw usage("--ver must be a whole number >= 1");
      const secret = await client(o).request<SecretValue>(
        "GET",
        `${secretPath(tenant, name)}${o.ver ? `?version=${o.ver}` : ""}`,
      );
      if (o.json) printJson(secret);
      else if (secret.encoding === "base64") process.stdout.write(Buffer.from(secret.value, "base64"));
      else process.stdout.write(secret.value + (process.stdout.isTTY ? "\n" : ""));
    });

  common(s.command("list [prefix]").description("list secrets (names and versions, never values)"))
    .option("--all", "include deleted secrets")
    .action(async (prefix: string | undefined, o: Common & { all?: boolean }) => {
      const tenant = tenantOf(o);
      const items: Array<Record<string, unknown>> = [];
      let after: string | null = null;
      do {
        const q = new URLSearchParams({ prefix: prefix ?? "", limit: "1000", includeDeleted: o.all ? "true" : "false" });
        if (after) q.set("after", after);
        const page: { items: Array<Record<string, unknown>>; nextAfter: string | null } = await client(o).request(
          "GET",
          `/api/v1/tenants/${encodeURIComponent(tenant)}/secrets?${q}`,
        );
        items.push(...page.items);
        after = page.nextAfter;
      } while (after);
      if (o.json) printJson(items);
      else
        printTable(items, o.all ? ["name", "currentVersion", "updatedAt", "deleted"] : ["name", "currentVersion", "updatedAt"]);
    });

  common(s.command("versions <name>").description("list a secret's versions (metadata only)")).action(
    async (name: string, o: Common) => {
      const tenant = tenantOf(o);
      const { items } = await client(o).request<{ items: Array<Record<string, unknown>> }>(
        "GET",
        `${secretPath(tenant, name)}/versions`,
      );
      if (o.json) printJson(items);
      else printTable(items, ["version", "sizeBytes", "encoding", "createdAt", "createdBy", "destroyed"]);
    },
  );

  common(s.command("rm <name>").description("delete a secret (a tombstone), or with --version destroy one version for good"))
    .option("--ver <n>", "destroy this version number: its ciphertext is erased and cannot come back", (v) => Number(v))
    .action(async (name: string, o: Common & { ver?: number }) => {
      const tenant = tenantOf(o);
      if (o.ver !== undefined) {
        if (!(Number.isInteger(o.ver) && o.ver >= 1)) throw usage("--ver must be a whole number >= 1");
        await client(o).request("DELETE", `${secretPath(tenant, name)}/versions/${o.ver}`);
        if (o.json) printJson({ destroyed: name, version: o.ver });
        else process.stdout.write(`destroyed ${name} version ${o.ver}\n`);
        return;
      }
      await client(o).request("DELETE", secretPath(tenant, name));
      if (o.json) printJson({ deleted: name });
      else process.stdout.write(`deleted ${name}\n`);
    });
}
