/** The proxy pair of bench/mesh in its own process (as `hexr run` hosts them apart from the agent). */
import { startInboundProxy } from "../../packages/platform/src/mesh/inbound.js";
import { startOutboundProxy } from "../../packages/platform/src/mesh/outbound.js";
import { createStaticIdentitySource } from "../../packages/platform/src/mesh/svid.js";
import { mintTlsIdentity, testAuthority } from "../../packages/platform/src/test-support/identity.js";

const [handlerPort, serverToken, clientToken] = process.argv.slice(2);
const { authority } = await testAuthority();
const serverId = "spiffe://hexr.local/agent/acme-corp/research-analyst/main";
const clientId = "spiffe://hexr.local/agent/acme-corp/content-crew/writer";
const inbound = await startInboundProxy({
  identity: createStaticIdentitySource(await mintTlsIdentity(authority, serverId)),
  upstream: { port: Number(handlerPort) },
  meshToken: serverToken!,
});
const outbound = await startOutboundProxy({
  identity: createStaticIdentitySource(await mintTlsIdentity(authority, clientId)),
  meshToken: clientToken!,
  resolve: async () => ({ url: inbound.url, spiffeId: serverId }),
});
process.stdout.write(JSON.stringify({ outbound: outbound.url }) + "\n");
process.on("SIGTERM", () => process.exit(0));
setInterval(() => process.stderr.write(JSON.stringify(inbound.stats.snapshot()) + "\n"), 60_000).unref();
