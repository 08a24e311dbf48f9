import { HexrError, type ExecResult, type SandboxLanguage } from "@hexr/core";
import {
  backendsFrom,
  createLogger,
  microvmImageDir,
  localPackageChecks,
  packageFetcherFrom,
  resolveConfig,
  setupMicrovm,
  type BackendCheck,
  type BackendHealth,
} from "@hexr/platform";
import type { Command } from "commander";
import { readFileSync } from "node:fs";
import { ApiClient, resolveTarget } from "../client.js";
import { printJson } from "../output.js";

const LANGUAGES: SandboxLanguage[] = ["python", "shell", "javascript"];

function usage(message: string): HexrError {
  return new HexrError("cli.usage", message, { kind: "invalid_argument" });
}

function collect(value: string, prev: string[] = []): string[] {
  return [...prev, value];
}

/** `K=V` pairs into an object; the value may contain '='. */
export function parseEnvPairs(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf("=");
    if (eq <= 0) throw usage(`--env takes NAME=VALUE (got '${p}')`);
    env[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return env;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

interface ExecOpts {
  language: string;
  timeout?: string;
  env?: string[];
  package?: string[];
  tenant?: string;
  file?: string;
  json?: boolean;
  dataDir?: string;
}

export function registerSandbox(program: Command): void {
  const sb = program
    .command("sandbox")
    .description("run code in a fresh isolated sandbox; check what isolates it on this machine");

  sb.command("exec [code]")
    .description("run code in the platform's sandbox ('-' reads the code from stdin); exits with the code's exit status")
    .option("-l, --language <language>", `${LANGUAGES.join(" | ")}`, "python")
    .option("-t, --timeout <seconds>", "kill the execution after this many seconds (exit 124); default 30")
    .option("-e, --env <NAME=VALUE>", "environment variable inside the sandbox (repeatable)", collect)
    .option("-p, --package <spec>", "package to install into this execution (repeatable)", collect)
    .option("-f, --file <path>", "read the code from a file")
    .option("--tenant <name>", "execute on behalf of this tenant")
    .option("--data-dir <dir>", "data dir of the local platform")
    .option("--json", "print the whole result as JSON (exit status 0 when the execution ran)")
    .action(async (codeArg: string | undefined, o: ExecOpts) => {
      if (!LANGUAGES.includes(o.language as SandboxLanguage))
        throw usage(`--language must be one of ${LANGUAGES.join(", ")} (got '${o.language}')`);
      let timeout: number | undefined;
      if (o.timeout !== undefined) {
        timeout = Number(o.timeout);
        if (!Number.isFinite(timeout) || timeout <= 0)
          throw usage(`--timeout must be a positive number of seconds (got '${o.timeout}')`);
      }
      if (codeArg !== undefined && o.file) throw usage("give the code as an argument or with --file, not both");
      const code = o.file ? readFileSync(o.file, "utf8") : codeArg === "-" ? await readStdin() : codeArg;
      if (code === undefined || code === "")
        throw usage("no code given: hexr sandbox exec \"print('hi')\" (or '-' to read stdin)");
      const body = {
        code,
        language: o.language,
        ...(timeout !== undefined ? { timeout } : {}),
        ...(o.env?.length ? { envVars: parseEnvPairs(o.env) } : {}),
        ...(o.package?.length ? { packages: o.package } : {}),
      };
      const path = o.tenant ? `/api/v1/tenants/${encodeURIComponent(o.tenant)}/sandbox/execute` : "/api/v1/sandbox/execute";
      const r = await new ApiClient(resolveTarget(o.dataDir)).request<ExecResult>("POST", path, body);
      if (o.json) {
        printJson(r);
        return;
      }
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      process.exitCode = r.exitCode;
    });

  sb.command("doctor")
    .description("probe each sandbox backend on this machine (real sandboxed runs) and say what works and what to install")
    .option("--config <file>", "config file (default ./hexr.config.{json,yaml} when present)")
    .option("--data-dir <dir>", "data dir (where the microVM image lives by default)")
    .option("--json", "machine-readable output")
    .action(async (o: { config?: string; dataDir?: string; json?: boolean }) => {
      const { config } = resolveConfig({ ...(o.config ? { configFile: o.config } : {}), flags: { dataDir: o.dataDir } });
      const log = createLogger({ level: "silent", format: "json" });
      const healths: BackendHealth[] = [];
      for (const b of backendsFrom(config.sandbox, log, config.dataDir)) {
        try {
          healths.push(await b.start());
        } finally {
          await b.stop();
        }
      }
      // Package sources: indexes reachable from here and a cache the fetch user can use; local
      // directories the sandbox user can read (and the microvm's resolver tools).
      const fetcher = packageFetcherFrom(config.sandbox, config.dataDir, log);
      const packages: BackendCheck[] = [...(fetcher ? await fetcher.check() : []), ...(await localPackageChecks(config.sandbox))];
      const usable = healths.filter((h) => h.available);
      const chosen =
        config.sandbox.backend === "auto"
          ? usable[0]?.backend
          : usable.find((h) => h.backend === config.sandbox.backend)?.backend;
      if (o.json) {
        printJson({ backend: chosen ?? null, configured: config.sandbox.backend, backends: healths, packages });
      } else {
        const printChecks = (checks: BackendCheck[]) => {
          for (const c of checks) {
            const mark = c.ok ? "ok  " : c.severity === "warning" ? "warn" : "FAIL";
            process.stdout.write(`  [${mark}] ${c.name}: ${c.detail}\n`);
          }
        };
        for (const h of healths) {
          process.stdout.write(`${h.backend}: ${h.available ? "OK" : "NOT AVAILABLE"} - ${h.summary}\n`);
          printChecks(h.checks);
        }
        if (packages.length) {
          process.stdout.write(
            `packages: ${packages.every((c) => c.ok) ? "OK" : "PROBLEMS"} - where executions' packages come from\n`,
          );
          printChecks(packages);
        }
        process.stdout.write(
          chosen ? `executions run on: ${chosen}\n` : "executions cannot run: no sandbox backend works here\n",
        );
      }
      if (!chosen) {
        throw new HexrError(
          "sandbox.unavailable",
          `no usable sandbox backend (${config.sandbox.backend}): ${healths.map((h) => `${h.backend}: ${h.summary}`).join("; ")}`,
          { kind: "unavailable" },
        );
      }
    });

  sb.command("setup")
    .description(
      "build the microVM image from Debian packages (kernel, busybox, python) and snapshot a pre-booted VM; probes KVM, else TCG",
    )
    .option("--config <file>", "config file (default ./hexr.config.{json,yaml} when present)")
    .option(
      "--data-dir <dir>",
      "data dir (the image goes to <data dir>/sandbox/microvm unless sandbox.microvm.imageDir says otherwise)",
    )
    .option("--image-dir <dir>", "where to build the image")
    .option("--accel <accel>", "auto (probe KVM with a real boot, else TCG) | kvm | tcg")
    .option("--force", "download and rebuild everything")
    .option("--json", "print the image's metadata as JSON (progress goes to stderr)")
    .action(
      async (o: { config?: string; dataDir?: string; imageDir?: string; accel?: string; force?: boolean; json?: boolean }) => {
        if (o.accel && !["auto", "kvm", "tcg"].includes(o.accel))
          throw usage(`--accel must be auto, kvm or tcg (got '${o.accel}')`);
        const { config } = resolveConfig({ ...(o.config ? { configFile: o.config } : {}), flags: { dataDir: o.dataDir } });
        const imageDir = o.imageDir ?? microvmImageDir(config.sandbox, config.dataDir);
        const t0 = Date.now();
        const meta = await setupMicrovm({
          imageDir,
          qemuPath: config.sandbox.microvm.qemuPath,
          accel: (o.accel ?? config.sandbox.microvm.accel) as "auto" | "kvm" | "tcg",
          memoryMb: config.sandbox.microvm.memoryMb,
          force: !!o.force,
          progress: (step, detail) =>
            process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${step}${detail ? `: ${detail}` : ""}\n`),
        });
        if (o.json) printJson({ imageDir, ...meta });
        else
          process.stdout.write(
            `microVM image ready in ${imageDir} (${meta.accel.toUpperCase()}, ${meta.memoryMb} MiB, booted in ${meta.bootMs} ms)\n`,
          );
      },
    );
}
