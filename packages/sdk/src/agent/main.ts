/**
 * The entry point `hexr run` starts for each role process (through tsx, so agents are TypeScript):
 * load the agent module, prove who we are through the Workload API, serve the handler on the
 * loopback bridge, and tell the supervisor over IPC.
 */
import { parseSpiffeId } from "@hexr/core";
import { createIdentity } from "../identity/identity.js";
import { WorkloadApiClient } from "../identity/workload-client.js";
import { setupTelemetry } from "../telemetry/setup.js";
import { hostAgentRole, loadAgentModule, readAgentEnv } from "./host.js";

/** The supervisor registers this process right after spawning it; until then the Workload API says PERMISSION_DENIED. */
async function waitForIdentity(client: WorkloadApiClient, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const ctx = await client.fetchX509Context();
      const svid = ctx.svids[0];
      if (svid) return svid.spiffeId;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no SVID from the Workload API after ${timeoutMs} ms: ${(last as Error)?.message ?? "no answer"}`);
}

async function main(): Promise<void> {
  const env = readAgentEnv();
  const def = await loadAgentModule(env.module);
  const client = new WorkloadApiClient();
  const spiffeId = await waitForIdentity(client, 20_000);
  client.close();
  // Zero-config telemetry: spans and metrics go to the platform, authenticated by a JWT-SVID.
  const identity = createIdentity();
  const platformAudience = `spiffe://${parseSpiffeId(spiffeId).trustDomain}/system/platform`;
  const telemetry = setupTelemetry({
    spiffeId,
    tenant: env.tenant,
    agent: env.agentName,
    role: env.role,
    framework: def.meta.framework ?? env.framework,
    ...(def.meta.version ? { version: def.meta.version } : {}),
    ...(env.platformUrl ? { endpoint: env.platformUrl } : {}),
    headers: async () => ({ authorization: `Bearer ${(await identity.jwtSvid(platformAudience)).token}` }),
  });
  const hosted = await hostAgentRole(def, env, spiffeId);
  const { description, version, skills } = def.meta;
  process.send?.({ type: "ready", bridgePort: hosted.bridgePort, spiffeId, meta: { description, version, skills } });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void hosted
      .close()
      .then(() => telemetry.shutdown())
      .catch(() => undefined)
      .then(() => {
        identity.close();
        process.exit(0);
      });
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  // The supervisor owns this process: when it goes away, so do we.
  process.on("disconnect", stop);
}

main().catch((err: unknown) => {
  console.error(`agent failed to start: ${(err as Error)?.message ?? String(err)}`);
  process.exit(1);
});
