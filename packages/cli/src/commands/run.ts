import { agentSpiffeId, AgentName, HexrError, RoleName, TenantName } from "@hexr/core";
import { contextDirPath, PLATFORM_FILE, processSelectors, type PlatformInfo } from "@hexr/platform";
import type { Command } from "commander";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { join } from "node:path";
import { bootId, processStartTime, removeContextMarker, writeContextMarker } from "hexr";
import { ApiClient, resolveTarget } from "../client.js";
import { parseDuration } from "./identity.js";
import { isAgentFile } from "../run/agent-file.js";

export interface ProcessIdentityOptions {
  api: ApiClient;
  info: PlatformInfo;
  pid: number;
  tenant: string;
  agent: string;
  role: string;
  x509SvidTtlSeconds?: number;
}

export interface ProcessIdentity {
  spiffeId: string;
  entryId: string;
  /** Deletes the entry and the marker; safe to call twice. */
  release(): Promise<void>;
}

/**
 * The local Auto-Registrar for one process: a registration entry pinned to this very process (pid +
 * start time + boot, from the kernel, plus the marker's tenant/agent/role) and the context marker for
 * its pid. No other process can match the entry, even one that copies the marker.
 */
export async function attachProcessIdentity(o: ProcessIdentityOptions): Promise<ProcessIdentity> {
  const spiffeId = agentSpiffeId(o.info.trustDomain, o.tenant, o.agent, o.role).toString();
  const contextDir = contextDirPath(o.info.dataDir);
  const startTime = processStartTime(o.pid);
  const uid = process.getuid?.() ?? 0;
  const selectors = [
    { type: "unix", value: `uid:${uid}` },
    ...processSelectors(o.pid, startTime, bootId()),
    { type: "hexr", value: `tenant:${o.tenant}` },
    { type: "hexr", value: `agent:${o.agent}` },
    { type: "hexr", value: `role:${o.role}` },
  ];
  writeContextMarker({ dir: contextDir, agentName: o.agent, tenant: o.tenant, role: o.role, pid: o.pid });
  let entryId: string;
  try {
    const entry = await o.api.request<{ id: string }>("POST", "/api/v1/identity/entries", {
      spiffeId,
      selectors,
      createdBy: "hexr-run",
      ...(o.x509SvidTtlSeconds ? { x509SvidTtlSeconds: o.x509SvidTtlSeconds } : {}),
    });
    entryId = entry.id;
  } catch (err) {
    removeContextMarker(contextDir, o.pid);
    throw err;
  }
  let released = false;
  return {
    spiffeId,
    entryId,
    async release() {
      if (released) return;
      released = true;
      removeContextMarker(contextDir, o.pid);
      await o.api.request("DELETE", `/api/v1/identity/entries/${entryId}`).catch(() => undefined);
    },
  };
}

/** Reads platform.json of the local platform: `hexr run` needs its socket, so a remote URL will not do. */
export function localPlatform(dataDirOpt: string | undefined): { api: ApiClient; info: PlatformInfo } {
  // A nested `hexr run` inherits HEXR_PLATFORM_URL; the local data dir is what counts here.
  const target = resolveTarget(dataDirOpt, { ...process.env, HEXR_PLATFORM_URL: "" });
  const infoPath = join(target.dataDir, PLATFORM_FILE);
  const info = JSON.parse(readFileSync(infoPath, "utf8")) as PlatformInfo;
  if (!info.workloadSocket || !existsSync(info.workloadSocket)) {
    throw new HexrError(
      "cli.no_workload_api",
      `the platform at ${info.url} serves no Workload API socket (restart it with this version of 'hexr up')`,
      {
        kind: "unavailable",
      },
    );
  }
  return { api: new ApiClient(target), info };
}

function name(schema: typeof TenantName, value: string, flag: string): string {
  if (!schema.safeParse(value).success) {
    throw new HexrError("cli.usage", `${flag} '${value}' must be a DNS label: 1-63 lowercase letters, digits or '-'`, {
      kind: "invalid_argument",
    });
  }
  return value;
}

// The child waits on fd 3 until its identity is registered, then execs the command: same pid, same
// start time, so the entry written for it is valid from the command's first instruction.
const GATE = 'IFS= read -r _ <&3 || exit 125; exec 3<&-; exec "$@"';

const FORWARDED: NodeJS.Signals[] = ["SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGQUIT"];

interface RunOptions {
  name?: string;
  tenant?: string;
  role?: string;
  dataDir?: string;
  json?: boolean;
  x509Ttl?: string;
}

export function registerRun(program: Command): void {
  program
    .command("run")
    .description("run a command under a SPIFFE identity: registers it, writes its context marker, sets SPIFFE_ENDPOINT_SOCKET")
    .option("--name <agent>", "agent name (a DNS label); required to run a command")
    .option("--tenant <tenant>", "tenant (a DNS label); for agent files default HEXR_TENANT or 'default'")
    .option("--role <role>", "process role (an agent file: run only this role)")
    .option("--x509-ttl <duration>", "X.509-SVID lifetime, e.g. 1h (default: the platform's)")
    .option("--data-dir <dir>", "data dir of the local platform")
    .option("--json", "print the identity as JSON on stderr before starting (stdout stays the command's)")
    .argument("<command...>", "an agent file (agent.ts), or a command and its arguments after --")
    .addHelpText(
      "after",
      "\nExamples:\n  hexr run examples/research-analyst/agent.ts --tenant acme-corp\n  hexr run --name researcher --tenant acme-corp -- node agent.js\n",
    )
    .action(async (command: string[], o: RunOptions) => {
      if (!o.name && command.length === 1 && isAgentFile(command[0])) {
        const { runAgentFile } = await import("../run/agent-run.js");
        await runAgentFile(command[0]!, {
          ...(o.tenant ? { tenant: o.tenant } : {}),
          ...(o.role ? { role: o.role } : {}),
          ...(o.dataDir ? { dataDir: o.dataDir } : {}),
          ...(o.json ? { json: true } : {}),
        });
        return;
      }
      if (!o.name || !o.tenant) {
        throw new HexrError(
          "cli.usage",
          "give an agent file (hexr run agent.ts) or --name and --tenant with a command after --",
          { kind: "invalid_argument" },
        );
      }
      const tenant = name(TenantName, o.tenant, "--tenant");
      const agent = name(AgentName, o.name, "--name");
      const role = name(RoleName, o.role ?? "main", "--role");
      const x509SvidTtlSeconds = o.x509Ttl ? parseDuration(o.x509Ttl, "--x509-ttl") : undefined;
      const { api, info } = localPlatform(o.dataDir);

      const child: ChildProcess = spawn("/bin/sh", ["-c", GATE, "hexr-run", ...command], {
        stdio: ["inherit", "inherit", "inherit", "pipe"],
        env: {
          ...process.env,
          SPIFFE_ENDPOINT_SOCKET: `unix://${info.workloadSocket}`,
          HEXR_TENANT: tenant,
          HEXR_AGENT_NAME: agent,
          HEXR_ROLE: role,
          HEXR_PLATFORM_URL: info.url,
        },
      });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once("exit", (code, signal) => resolve({ code, signal })),
      );
      const spawnError = new Promise<never>((_, reject) =>
        child.once("error", (err) =>
          reject(new HexrError("cli.spawn_failed", `cannot start /bin/sh: ${err.message}`, { kind: "internal" })),
        ),
      );
      const gate = child.stdio[3] as NodeJS.WritableStream & { destroy(): void };

      let identity: ProcessIdentity;
      try {
        if (!child.pid) await Promise.race([spawnError, exited]);
        identity = await attachProcessIdentity({
          api,
          info,
          pid: child.pid!,
          tenant,
          agent,
          role,
          ...(x509SvidTtlSeconds ? { x509SvidTtlSeconds } : {}),
        });
      } catch (err) {
        // The gate never opens: the command does not run without its identity.
        gate.destroy();
        child.kill("SIGKILL");
        await exited;
        throw err;
      }

      // Interactive Ctrl-C / Ctrl-\ reach the child from the terminal already; forward everything else.
      const interactive = process.stdin.isTTY === true;
      const forward = (sig: NodeJS.Signals) => {
        if (interactive && (sig === "SIGINT" || sig === "SIGQUIT")) return;
        child.kill(sig);
      };
      for (const sig of FORWARDED) process.on(sig, forward);

      if (o.json)
        process.stderr.write(JSON.stringify({ spiffeId: identity.spiffeId, pid: child.pid, entryId: identity.entryId }) + "\n");
      else if (process.stderr.isTTY) process.stderr.write(`hexr: running as ${identity.spiffeId} (pid ${child.pid})\n`);
      gate.end("go\n");

      const { code, signal } = await exited;
      for (const sig of FORWARDED) process.off(sig, forward);
      await identity.release();
      process.exitCode = signal ? 128 + (osConstants.signals[signal] ?? 0) : (code ?? 1);
    });
}
