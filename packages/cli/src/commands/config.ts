import { HexrError } from "@hexr/core";
import { resolveConfig, redactUrl } from "@hexr/platform";
import type { Command } from "commander";
import { printJson } from "../output.js";

export function registerConfig(program: Command): void {
  const config = program.command("config").description("inspect and validate configuration");
  config
    .command("validate")
    .description("resolve flags > HEXR_* env > hexr.config.{json,yaml} > defaults and report problems")
    .option("--config <file>", "config file to validate")
    .option("--json", "machine-readable output")
    .action((opts: { config?: string; json?: boolean }) => {
      const { config: resolved, sources, file } = resolveConfig({ configFile: opts.config });
      const shown = { ...resolved, ...(resolved.databaseUrl ? { databaseUrl: redactUrl(resolved.databaseUrl) } : {}) };
      if (opts.json) {
        printJson({ valid: true, file: file ?? null, config: shown, sources });
        return;
      }
      process.stdout.write(`configuration is valid${file ? ` (${file})` : " (no config file; env and defaults)"}\n`);
      for (const [k, v] of Object.entries(flatten(shown))) {
        process.stdout.write(`  ${k} = ${JSON.stringify(v)}${sources[k] ? `  [${sources[k]}]` : ""}\n`);
      }
    });
  config
    .command("show")
    .description("alias of 'config validate'")
    .option("--config <file>")
    .option("--json")
    .action(() => {
      throw new HexrError("cli.usage", "use 'hexr config validate' (it prints the resolved configuration)", {
        kind: "invalid_argument",
      });
    });
}

function flatten(obj: Record<string, unknown>, prefix = "", out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v as Record<string, unknown>, key, out);
    else out[key] = v;
  }
  return out;
}
