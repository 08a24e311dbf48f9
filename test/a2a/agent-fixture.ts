import { unsafeTenantScope } from "../../packages/platform/src/auth/principal.js";
import { signerFromSvid } from "../../packages/platform/src/a2a/card.js";
import { meshCaller } from "../../packages/platform/src/a2a/caller.js";
import type { A2AHandler } from "../../packages/platform/src/a2a/handler.js";
import { startA2AServer, type RunningA2AServer } from "../../packages/platform/src/a2a/server.js";
import { startInboundProxy, type InboundProxy } from "../../packages/platform/src/mesh/inbound.js";
import { createStaticIdentitySource, derToPem } from "../../packages/platform/src/mesh/svid.js";
import { newMeshToken } from "../../packages/platform/src/mesh/token.js";
import type { TestPlatform } from "../../packages/platform/src/test-support/platform.js";

export interface MeshedAgent {
  spiffeId: string;
  server: RunningA2AServer;
  proxy: InboundProxy;
  close(): Promise<void>;
}

/**
 * An agent laid out as `hexr run` lays it out: its A2A server on loopback behind its inbound mTLS
 * proxy (SVID minted by the platform's authority), registered and running in the registry.
 */
export async function startMeshedAgent(
  p: TestPlatform,
  o: { tenant: string; name: string; handler: A2AHandler; description?: string },
): Promise<MeshedAgent> {
  const spiffeId = `spiffe://${p.info.trustDomain}/agent/${o.tenant}/${o.name}/main`;
  const svid = await p.identity.authority.mintX509Svid(spiffeId);
  const meshToken = newMeshToken();
  const server = await startA2AServer({
    storage: p.storage,
    scope: unsafeTenantScope(o.tenant, o.tenant),
    agent: o.name,
    rpcPath: "/a2a",
    metadata: { name: o.name, description: o.description ?? `the ${o.name} agent` },
    authenticate: meshCaller({ meshToken }),
    spiffeId,
    signer: signerFromSvid(svid),
    handler: o.handler,
  });
  const proxy = await startInboundProxy({
    identity: createStaticIdentitySource({
      spiffeId,
      certChainPem: svid.certChainDer.map((d) => derToPem(d)).join(""),
      keyPem: derToPem(svid.privateKeyPkcs8Der, "PRIVATE KEY"),
      bundlePem: p.identity.authority
        .x509Authorities()
        .map((d) => derToPem(d))
        .join(""),
      expiresAt: svid.expiresAt,
    }),
    upstream: { port: server.port },
    meshToken,
  });
  const put = await p.api(`/api/v1/tenants/${o.tenant}/agents/${o.name}`, {
    method: "PUT",
    json: {
      description: o.description ?? `the ${o.name} agent`,
      roles: [{ role: "main", endpoint: proxy.url, status: "running" }],
    },
  });
  if (!put.ok) throw new Error(`registering ${o.name}: ${put.status} ${await put.text()}`);
  const heartbeat = async () => {
    const hb = await p.api(`/api/v1/tenants/${o.tenant}/agents/${o.name}/heartbeat`, {
      method: "POST",
      json: { role: "main", status: "running", endpoint: proxy.url },
    });
    if (!hb.ok) throw new Error(`heartbeat of ${o.name}: ${hb.status}`);
  };
  await heartbeat();
  // As `hexr run` does: the registry calls a role stale after 15 s without one.
  const timer = setInterval(() => void heartbeat().catch(() => undefined), 5_000);
  return {
    spiffeId,
    server,
    proxy,
    async close() {
      clearInterval(timer);
      await proxy.close();
      await server.close();
    },
  };
}
