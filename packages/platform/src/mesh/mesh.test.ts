import { createServer, request as httpRequest, type Server } from "node:http";
import { request as httpsRequest } from "node:https";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalAuthority } from "../identity/authority/authority.js";
import { mintTlsIdentity, testAuthority } from "../test-support/identity.js";
import { CALLER_HEADER, MESH_TOKEN_HEADER, TARGET_HEADER } from "./headers.js";
import { startInboundProxy, type InboundProxy } from "./inbound.js";
import { expectPeer, startOutboundProxy, type OutboundProxy } from "./outbound.js";
import { createStaticIdentitySource, type TlsIdentity } from "./svid.js";
import { meshTokenMatches, newMeshToken } from "./token.js";

const AGENT = "spiffe://hexr.local/agent/acme-corp/research-analyst/main";
const SAME_TENANT = "spiffe://hexr.local/agent/acme-corp/content-crew/writer";
const OTHER_TENANT = "spiffe://hexr.local/agent/beta-inc/spy/main";

interface Seen {
  caller: string | undefined;
  tokenOk: boolean;
  body: string;
}

/** The agent side: trusts the caller header only when the mesh token matches. */
function startAgent(token: string): Promise<{ server: Server; port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      const tokenOk = meshTokenMatches(req.headers[MESH_TOKEN_HEADER], token);
      const caller = tokenOk ? (req.headers[CALLER_HEADER] as string | undefined) : undefined;
      seen.push({ caller, tokenOk, body });
      res.writeHead(tokenOk ? 200 : 403, { "content-type": "application/json" });
      res.end(JSON.stringify({ caller: caller ?? null, echo: body }));
    });
  });
  return new Promise((r) =>
    server.listen(0, "127.0.0.1", () => r({ server, port: (server.address() as AddressInfo).port, seen })),
  );
}

function tlsCall(
  url: string,
  client: TlsIdentity | undefined,
  opts: { ca: string; expect?: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: u.hostname,
        port: u.port,
        path: "/invoke",
        method: "POST",
        ca: opts.ca,
        ...(client ? { cert: client.certChainPem, key: client.keyPem } : {}),
        checkServerIdentity: expectPeer(opts.expect ?? AGENT),
        headers: { "content-type": "application/json", ...opts.headers },
        agent: false,
      },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(opts.body ?? "{}");
  });
}

describe("mTLS mesh proxy", () => {
  let authority: LocalAuthority;
  let foreign: LocalAuthority;
  let agentId: TlsIdentity;
  let token: string;
  let agent: Awaited<ReturnType<typeof startAgent>>;
  let inbound: InboundProxy;
  let source: ReturnType<typeof createStaticIdentitySource>;

  beforeAll(async () => {
    ({ authority } = await testAuthority("hexr.local"));
    ({ authority: foreign } = await testAuthority("other.test"));
    agentId = await mintTlsIdentity(authority, AGENT);
    token = newMeshToken();
    agent = await startAgent(token);
    source = createStaticIdentitySource(agentId);
    inbound = await startInboundProxy({ identity: source, upstream: { port: agent.port }, meshToken: token });
  });
  afterAll(async () => {
    await inbound.close();
    agent.server.close();
  });

  it("passes a valid same-tenant call to the agent with the verified caller ID", async () => {
    const caller = await mintTlsIdentity(authority, SAME_TENANT);
    const r = await tlsCall(inbound.url, caller, { ca: agentId.bundlePem, body: '{"q":1}' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ caller: SAME_TENANT, echo: '{"q":1}' });
  });

  it("refuses a call without a client certificate at the handshake", async () => {
    const before = inbound.stats.rejected.tls;
    await expect(tlsCall(inbound.url, undefined, { ca: agentId.bundlePem })).rejects.toThrow();
    expect(inbound.stats.rejected.tls).toBe(before + 1);
  });

  it("refuses a certificate from another trust domain at the handshake", async () => {
    const stranger = await mintTlsIdentity(foreign, "spiffe://other.test/agent/acme-corp/research-analyst/main");
    await expect(tlsCall(inbound.url, stranger, { ca: agentId.bundlePem })).rejects.toThrow();
  });

  it("refuses a caller from another tenant with 403 and never reaches the agent", async () => {
    const count = agent.seen.length;
    const spy = await mintTlsIdentity(authority, OTHER_TENANT);
    const r = await tlsCall(inbound.url, spy, { ca: agentId.bundlePem });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ code: "mesh.peer_not_allowed" });
    expect(r.body).toContain("beta-inc");
    expect(agent.seen.length).toBe(count);
  });

  it("replaces a forged caller header and never forwards a forged mesh token", async () => {
    const caller = await mintTlsIdentity(authority, SAME_TENANT);
    const r = await tlsCall(inbound.url, caller, {
      ca: agentId.bundlePem,
      headers: { [CALLER_HEADER]: "spiffe://hexr.local/agent/acme-corp/admin/main", [MESH_TOKEN_HEADER]: "forged" },
    });
    expect(JSON.parse(r.body).caller).toBe(SAME_TENANT);
  });

  it("lets the agent reject a local process that calls it directly with a forged header", async () => {
    const res = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        { host: "127.0.0.1", port: agent.port, path: "/invoke", method: "POST", headers: { [CALLER_HEADER]: SAME_TENANT } },
        (r) => {
          r.resume();
          resolve(r.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end("{}");
    });
    expect(res).toBe(403);
    expect(agent.seen.at(-1)).toMatchObject({ tokenOk: false, caller: undefined });
  });

  it("a client refuses a server whose SPIFFE ID is not the expected one", async () => {
    const caller = await mintTlsIdentity(authority, SAME_TENANT);
    await expect(tlsCall(inbound.url, caller, { ca: agentId.bundlePem, expect: SAME_TENANT })).rejects.toThrow(/expected/);
  });

  it("rotates its certificate without dropping an established connection", async () => {
    const caller = await mintTlsIdentity(authority, SAME_TENANT);
    const { Agent } = await import("node:https");
    const keep = new Agent({
      keepAlive: true,
      maxSockets: 1,
      cert: caller.certChainPem,
      key: caller.keyPem,
      ca: agentId.bundlePem,
    });
    const call = () =>
      new Promise<{ status: number; serial: string }>((resolve, reject) => {
        const req = httpsRequest(
          {
            host: "127.0.0.1",
            port: inbound.port,
            path: "/",
            method: "POST",
            agent: keep,
            checkServerIdentity: expectPeer(AGENT),
          },
          (res) => {
            const serial = (res.socket as import("node:tls").TLSSocket).getPeerCertificate().serialNumber;
            res.resume();
            res.on("end", () => resolve({ status: res.statusCode ?? 0, serial }));
          },
        );
        req.on("error", reject);
        req.end("{}");
      });
    const first = await call();
    const rotated = await mintTlsIdentity(authority, AGENT);
    source.set(rotated);
    const second = await call(); // same pooled connection, still the old certificate
    expect(second).toEqual(first);
    keep.destroy();
    const fresh = new Agent({ keepAlive: false, cert: caller.certChainPem, key: caller.keyPem, ca: agentId.bundlePem });
    const third = await new Promise<string>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: "127.0.0.1",
          port: inbound.port,
          path: "/",
          method: "POST",
          agent: fresh,
          checkServerIdentity: expectPeer(AGENT),
        },
        (res) => {
          res.resume();
          resolve((res.socket as import("node:tls").TLSSocket).getPeerCertificate().serialNumber);
        },
      );
      req.on("error", reject);
      req.end("{}");
    });
    expect(third).not.toBe(first.serial);
    expect(inbound.stats.snapshot().handshakes).toBeGreaterThan(0);
  });

  describe("outbound proxy", () => {
    let outbound: OutboundProxy;
    let callerToken: string;

    beforeAll(async () => {
      const caller = await mintTlsIdentity(authority, SAME_TENANT);
      callerToken = newMeshToken();
      outbound = await startOutboundProxy({
        identity: createStaticIdentitySource(caller),
        meshToken: callerToken,
        resolve: async (name) => {
          if (name === "research-analyst") return { url: inbound.url, spiffeId: AGENT };
          if (name === "impostor") return { url: inbound.url, spiffeId: "spiffe://hexr.local/agent/acme-corp/impostor/main" };
          throw Object.assign(new Error("unknown"), {});
        },
      });
    });
    afterAll(() => outbound.close());

    const viaOutbound = (headers: Record<string, string>) =>
      fetch(`${outbound.url}/invoke`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: '{"hello":true}',
      });

    it("originates mTLS with the agent's SVID and reaches the target as the caller", async () => {
      const r = await viaOutbound({ [MESH_TOKEN_HEADER]: callerToken, [TARGET_HEADER]: "research-analyst" });
      expect(r.status).toBe(200);
      expect(await r.json()).toEqual({ caller: SAME_TENANT, echo: '{"hello":true}' });
    });

    it("serves only its own agent: no or wrong mesh token is refused", async () => {
      expect((await viaOutbound({ [TARGET_HEADER]: "research-analyst" })).status).toBe(403);
      expect((await viaOutbound({ [MESH_TOKEN_HEADER]: "nope", [TARGET_HEADER]: "research-analyst" })).status).toBe(403);
    });

    it("refuses to talk to a target that does not present the expected SPIFFE ID", async () => {
      const r = await viaOutbound({ [MESH_TOKEN_HEADER]: callerToken, [TARGET_HEADER]: "impostor" });
      expect(r.status).toBe(502);
      expect(await r.json()).toMatchObject({ code: "mesh.target_unreachable" });
    });

    it("needs a target", async () => {
      const r = await viaOutbound({ [MESH_TOKEN_HEADER]: callerToken });
      expect(r.status).toBe(400);
    });
  });
});
