import { resolveConfig, startPlatform, createLogger, type Platform } from "@hexr/platform";
import type { Command } from "commander";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { HexrError } from "@hexr/core";

/** Starts `hexr run <file>` for each agent file beside the platform; their lines are prefixed with the agent's folder. */
function startAgents(files: string[], tenant: string, dataDir: string): ChildProcess[] {
  const bin = fileURLToPath(new URL("../bin.js", import.meta.url));
  return files.map((file) => {
    const label = basename(dirname(resolve(file)));
    const child = spawn(process.execPath, [bin, "run", resolve(file), "--tenant", tenant, "--data-dir", dataDir], {
      stdio: ["ignore", "pipe", "pipe"],
      // Own process group: a terminal Ctrl-C reaches only `hexr up`, which stops agents before the platform.
      detached: true,
      env: { ...process.env, HEXR_PLATFORM_URL: "", HEXR_API_KEY: "" },
    });
    for (const [stream, out] of [
      [child.stdout!, process.stdout],
      [child.stderr!, process.stderr],
    ] as const) {
      createInterface({ input: stream }).on("line", (l) => out.write(`${label} ${l}\n`));
    }
    child.once("exit", (code, signal) => {
      if (code !== 0 && signal === null) process.stderr.write(`${label}: hexr run exited with code ${code}\n`);
    });
    return child;
  });
}

async function stopAgents(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((r) => {
          if (c.exitCode !== null || c.signalCode !== null) return r();
          const t = setTimeout(() => c.kill("SIGKILL"), 10_000);
          c.once("exit", () => {
            clearTimeout(t);
            r();
          });
          c.kill("SIGINT");
        }),
    ),
  );
}

export function registerUp(program: Command): void {
  program
    .command("up")
    .description("start the embedded platform in the foreground (Ctrl-C stops it)")
    .option("--data-dir <dir>", "state directory (env HEXR_HOME, default ~/.hexr)")
    .option("--port <port>", "HTTP port (env HEXR_PORT, default 7420)", parseIntArg)
    .option("--host <host>", "listen address (env HEXR_HOST, default 127.0.0.1)")
    .option("--database-url <url>", "postgres://... to use PostgreSQL instead of SQLite (env HEXR_DATABASE_URL)")
    .option("--trust-domain <name>", "SPIFFE trust domain (env HEXR_TRUST_DOMAIN, default hexr.local)")
    .option("--config <file>", "config file (default ./hexr.config.{json,yaml} when present)")
    .option("--log-level <level>", "trace|debug|info|warn|error (env HEXR_LOG_LEVEL)")
    .option("--log-format <format>", "auto|pretty|json (env HEXR_LOG_FORMAT)")
    .option("--agent <file>", "also run this agent file (repeatable), as 'hexr run' would", (v: string, prev: string[] = []) => [
      ...prev,
      v,
    ])
    .option("--tenant <tenant>", "tenant of the --agent agents (created when missing)", "default")
    .action(async (opts: Record<string, string | number | undefined> & { agent?: string[]; tenant: string }) => {
      for (const f of opts.agent ?? []) {
        if (!existsSync(f)) throw new HexrError("cli.usage", `--agent ${f}: no such file`, { kind: "invalid_argument" });
      }
      const { config } = resolveConfig({
        configFile: opts["config"] as string | undefined,
        flags: {
          dataDir: opts["dataDir"],
          port: opts["port"],
          host: opts["host"],
          databaseUrl: opts["databaseUrl"],
          trustDomain: opts["trustDomain"],
          "log.level": opts["logLevel"],
          "log.format": opts["logFormat"],
        },
      });
      const log = createLogger({ level: config.log.level, format: config.log.format });
      const platform: Platform = await startPlatform(config, { log });
      const agents = startAgents(opts.agent ?? [], opts.tenant, config.dataDir);
      if (process.stdout.isTTY) {
        process.stdout.write(
          [
            "",
            `  Hexr is up at ${platform.url}`,
            `  data dir   ${config.dataDir} (${platform.info.storage})`,
            `  admin key  ${join(config.dataDir, "admin.key")} (local hexr commands use it)`,
            "",
            agents.length
              ? `  agents     starting ${(opts.agent ?? []).map((f) => basename(dirname(resolve(f)))).join(", ")} in tenant ${opts.tenant}`
              : "  agents     none (add --agent <file>, or run 'hexr run agent.ts')",
            "",
            "  next:  hexr agents    hexr tenants list    hexr status    Ctrl-C to stop",
            "",
          ].join("\n") + "\n",
        );
      }
      await new Promise<void>((resolve) => {
        let signals = 0;
        const onSignal = (sig: NodeJS.Signals) => {
          signals++;
          if (signals > 1) {
            log.warn({ signal: sig }, "second signal: exiting now");
            process.exit(130);
          }
          stopAgents(agents)
            .then(() => platform.close())
            .then(resolve, (err: unknown) => {
              log.error({ err }, "shutdown failed");
              process.exit(1);
            });
        };
        process.on("SIGINT", onSignal);
        process.on("SIGTERM", onSignal);
      });
      // Stopped: leave even if some library still holds a handle open.
      process.exit(0);
    });
}

export function parseIntArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`expected an integer, got '${v}'`);
  return n;
}
