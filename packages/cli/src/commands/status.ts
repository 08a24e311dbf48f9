import type { Command } from "commander";
import { ApiClient, resolveTarget } from "../client.js";
import { printJson } from "../output.js";

export function registerStatus(program: Command): void {
  program
    .command("status")
    .description("show whether the platform is up and ready")
    .option("--data-dir <dir>", "data dir of the local platform")
    .option("--json", "machine-readable output")
    .action(async (o: { dataDir?: string; json?: boolean }) => {
      const target = resolveTarget(o.dataDir);
      const api = new ApiClient({ ...target, apiKey: undefined });
      let ready: { status: string; checks: Record<string, string> };
      try {
        ready = await api.request("GET", "/readyz");
      } catch (err) {
        if ((err as { code?: string }).code === "cli.platform_unreachable") throw err;
        ready = { status: "not ready", checks: {} };
      }
      if (o.json) printJson({ url: target.url, ...ready });
      else {
        process.stdout.write(`${target.url}: ${ready.status}\n`);
        for (const [k, v] of Object.entries(ready.checks)) process.stdout.write(`  ${k.padEnd(12)} ${v}\n`);
      }
      if (ready.status !== "ready") process.exitCode = 69;
    });
}
