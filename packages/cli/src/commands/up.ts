import { resolveConfig, startPlatform, createLogger, type Platform } from "@hexr/platform";
import type { Command } from "commander";
import { join } from "node:path";

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
    .action(async (opts: Record<string, string | number | undefined>) => {
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
      if (process.stdout.isTTY) {
        process.stdout.write(
          [
            "",
            `  Hexr is up at ${platform.url}`,
            `  data dir   ${config.dataDir} (${platform.info.storage})`,
            `  admin key  ${join(config.dataDir, "admin.key")} (local hexr commands use it)`,
            "",
            "  next:  hexr tenants create acme-corp    hexr status    Ctrl-C to stop",
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
          platform.close().then(resolve, (err: unknown) => {
            log.error({ err }, "shutdown failed");
            process.exit(1);
          });
        };
        process.on("SIGINT", onSignal);
        process.on("SIGTERM", onSignal);
      });
    });
}

export function parseIntArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`expected an integer, got '${v}'`);
  return n;
}
