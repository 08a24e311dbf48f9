import type { Command } from "commander";
import { WorkloadApiClient } from "hexr";
import { printJson } from "../output.js";
import { identityCommand } from "./identity.js";

function inHuman(ms: number): string {
  if (ms <= 0) return "expired";
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

/** `hexr identity whoami`: asks the Workload API who this process is. */
export function registerWhoami(program: Command): void {
  identityCommand(program)
    .command("whoami")
    .description("print this process's SPIFFE ID and SVID expiry, from the Workload API (run it under 'hexr run')")
    .option("--socket <address>", "Workload API address (default: SPIFFE_ENDPOINT_SOCKET), e.g. unix:///path/workload.sock")
    .option("--json", "machine-readable output")
    .action(async (o: { socket?: string; json?: boolean }) => {
      const client = new WorkloadApiClient(o.socket ? { address: o.socket } : {});
      try {
        const ctx = await client.fetchX509Context();
        const svids = ctx.svids.map((s) => ({
          spiffeId: s.spiffeId,
          expiresAt: new Date(s.expiresAt).toISOString(),
          ...(s.hint ? { hint: s.hint } : {}),
        }));
        const me = svids[0]!;
        if (o.json) {
          printJson({ spiffeId: me.spiffeId, expiresAt: me.expiresAt, trustDomain: new URL(me.spiffeId).host, svids });
        } else {
          process.stdout.write(`${me.spiffeId}\n`);
          process.stdout.write(`  X.509-SVID expires ${me.expiresAt} (in ${inHuman(ctx.svids[0]!.expiresAt - Date.now())})\n`);
          for (const other of svids.slice(1)) process.stdout.write(`  also ${other.spiffeId} (expires ${other.expiresAt})\n`);
        }
      } finally {
        client.close();
      }
    });
}
