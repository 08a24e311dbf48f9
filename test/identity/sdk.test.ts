import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import {
  authorizeId,
  authorizeMemberOf,
  authorizePeer,
  authorizeTenant,
  createIdentity,
  keepServerContextFresh,
  mtlsClientOptions,
  mtlsServerOptions,
  svidTlsOptions,
  type Identity,
} from "hexr";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startIdentityPlatform, type IdentityPlatform } from "./helpers.js";

// The SDK's identity client against the platform's Workload API, as an agent uses it.
let p: IdentityPlatform;
let identity: Identity;
const RESEARCHER = "spiffe://hexr.local/agent/acme-corp/researcher/main";
const WRITER = "spiffe://hexr.local/agent/acme-corp/writer/main";
const OTHER_TENANT = "spiffe://hexr.local/agent/globex/spy/main";
const extra: Identity[] = [];

beforeAll(async () => {
  p = await startIdentityPlatform();
  // This process holds three identities, so one process can play client and servers.
  await p.registerProcess(process.pid, RESEARCHER);
  await p.registerProcess(process.pid, WRITER);
  await p.registerProcess(process.pid, OTHER_TENANT);
  identity = createIdentity({ address: `unix://${p.socketPath}` });
  await identity.ready();
});
afterAll(async () => {
  identity.close();
  await p.dispose();
});
afterEach(() => {
  for (const i of extra.splice(0)) i.close();
});

/**
 * The SVID of one of this process's identities (`svidTlsOptions` refuses undefined). While a stream
 * update replaces the set (the rotation test re-mints), wait for it to list the identity again.
 */
async function svid(id: string) {
  for (let i = 0; i < 200; i++) {
    const found = identity.x509Svids.find((s) => s.spiffeId === id);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`the Workload API lists no SVID for ${id}`);
}

describe("SDK Identity", () => {
  it("holds the X.509-SVIDs, the default first, and the bundle of the trust domain", () => {
    expect(identity.x509Svids.map((s) => s.spiffeId).sort()).toEqual([RESEARCHER, WRITER, OTHER_TENANT].sort());
    expect(identity.spiffeId).toBe(identity.x509Svids[0]!.spiffeId);
    expect(identity.trustDomain).toBe("hexr.local");
    const roots = identity.x509Bundle().authorities;
    const chain = identity.x509Svid.certificates;
    expect(roots.some((r) => chain[chain.length - 1]!.checkIssued(r))).toBe(true);
    expect(identity.x509Svid.expiresAt).toBeGreaterThan(Date.now());
  });

  it("builds TLS options from a given SVID or the default one, and refuses an explicit undefined", () => {
    const writer = identity.x509Svids.find((s) => s.spiffeId === WRITER)!;
    const certOf = (o: { cert?: unknown }) => new X509Certificate(String(o.cert)).subjectAltName;
    expect(certOf(svidTlsOptions(identity, writer))).toBe(`URI:${WRITER}`);
    expect(certOf(svidTlsOptions(identity))).toBe(`URI:${identity.x509Svid.spiffeId}`);
    const missing = identity.x509Svids.find((s) => s.spiffeId === "spiffe://hexr.local/agent/nobody/x/y");
    expect(() => svidTlsOptions(identity, missing)).toThrow(expect.objectContaining({ code: "identity.svid_missing" }));
  });

  it("caches JWT-SVIDs per audience and validates them locally and through the Workload API", async () => {
    const a = await identity.jwtSvid("https://api.example.com", { spiffeId: WRITER });
    expect(a.spiffeId).toBe(WRITER);
    expect(await identity.jwtSvid("https://api.example.com", { spiffeId: WRITER })).toBe(a);
    const b = await identity.jwtSvid(["svc-b"], { spiffeId: WRITER });
    expect(b.token).not.toBe(a.token);
    expect(b.audience).toEqual(["svc-b"]);
    const local = await identity.validateJwtSvid(a.token, "https://api.example.com");
    expect(local.spiffeId).toBe(WRITER);
    await expect(identity.validateJwtSvid(a.token, "svc-b")).rejects.toMatchObject({ code: "identity.invalid_jwt_svid" });
    const remote = await identity.client.validateJwtSvid(a.token, "https://api.example.com");
    expect(remote.spiffeId).toBe(WRITER);
    expect(remote.claims["sub"]).toBe(WRITER);
    await expect(identity.jwtSvid([])).rejects.toMatchObject({ code: "identity.invalid_audience" });
  });

  it("serves the credentials layer's JwtSvidSource shape", async () => {
    const s = await identity.fetchJwtSvid("aud-x");
    expect(Object.keys(s).sort()).toEqual(["expiresAt", "spiffeId", "token"]);
    expect(s.expiresAt).toBeGreaterThan(Date.now());
  });

  it("fails ready() with the no-identity code when no entry matches, after retrying", async () => {
    await p.deleteAllEntries();
    try {
      const lonely = createIdentity({ address: `unix://${p.socketPath}`, backoff: { initialMs: 50, maxMs: 200 } });
      extra.push(lonely);
      await expect(lonely.ready({ timeoutMs: 1000 })).rejects.toMatchObject({
        code: "identity.no_identity",
        kind: "permission_denied",
      });
    } finally {
      await p.registerProcess(process.pid, RESEARCHER);
      await p.registerProcess(process.pid, WRITER);
      await p.registerProcess(process.pid, OTHER_TENANT);
    }
  });

  it("picks up a rotated SVID from the stream before the current one expires", async () => {
    const id = "spiffe://hexr.local/agent/acme-corp/rotating/main";
    await p.registerProcess(process.pid, id, { x509SvidTtlSeconds: 3 });
    const rotating = createIdentity({ address: `unix://${p.socketPath}` });
    extra.push(rotating);
    await rotating.ready();
    const first = rotating.x509Svids.find((s) => s.spiffeId === id)!;
    const next = await new Promise<{ at: number; serial: string; expiresAt: number }>((resolve) => {
      rotating.onUpdate((_d, ctx) => {
        const s = ctx.svids.find((x) => x.spiffeId === id)!;
        if (s.certificates[0]!.serialNumber !== first.certificates[0]!.serialNumber) {
          resolve({ at: Date.now(), serial: s.certificates[0]!.serialNumber, expiresAt: s.expiresAt });
        }
      });
    });
    expect(next.at).toBeLessThan(first.expiresAt);
    expect(next.expiresAt).toBeGreaterThan(first.expiresAt);
  });
});

describe("mTLS helpers (peers verified by SPIFFE ID, not host name)", () => {
  async function serve(id: string, authorize: Parameters<typeof authorizePeer>[1]) {
    const seen: Array<{ ok: boolean; peer?: string; error?: string }> = [];
    const own = await svid(id);
    const server = createTlsServer(
      { ...mtlsServerOptions(identity), ...svidTlsOptions(identity, own), requestCert: true, rejectUnauthorized: true },
      (socket: TLSSocket) => {
        try {
          const peer = authorizePeer(socket, authorize);
          seen.push({ ok: true, peer });
          socket.end(`hello ${peer}`);
        } catch (err) {
          seen.push({ ok: false, error: (err as Error).message });
          socket.destroy();
        }
      },
    );
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return { server, port: (server.address() as AddressInfo).port, seen };
  }

  async function call(port: number, as: string, authorizeServer: Parameters<typeof mtlsClientOptions>[1]): Promise<string> {
    const mine = await svid(as);
    return new Promise((resolve, reject) => {
      const s = tlsConnect(
        { ...mtlsClientOptions(identity, authorizeServer), ...svidTlsOptions(identity, mine), host: "127.0.0.1", port },
        () => undefined,
      );
      let data = "";
      s.on("data", (d: Buffer) => (data += d.toString()));
      s.on("end", () => resolve(data));
      s.on("error", reject);
      s.on("close", () => resolve(data));
    });
  }

  it("a same-tenant client is accepted and sees the server's exact ID", async () => {
    const { server, port, seen } = await serve(RESEARCHER, authorizeTenant("hexr.local", "acme-corp"));
    try {
      expect(await call(port, WRITER, authorizeId(RESEARCHER))).toBe(`hello ${WRITER}`);
      expect(seen).toEqual([{ ok: true, peer: WRITER }]);
    } finally {
      server.close();
    }
  });

  it("a client of another tenant is refused by the server's authorizer", async () => {
    const { server, port, seen } = await serve(RESEARCHER, authorizeTenant("hexr.local", "acme-corp"));
    try {
      expect(await call(port, OTHER_TENANT, authorizeMemberOf("hexr.local"))).toBe("");
      expect(seen[0]).toMatchObject({ ok: false, error: expect.stringMatching(/not authorized/) });
    } finally {
      server.close();
    }
  });

  it("the client refuses a server whose SPIFFE ID is not the one it expects", async () => {
    const { server, port } = await serve(OTHER_TENANT, authorizeMemberOf("hexr.local"));
    try {
      await expect(call(port, WRITER, authorizeId(RESEARCHER))).rejects.toThrow(/not authorized/);
    } finally {
      server.close();
    }
  });

  it("a client without a certificate, or with a certificate from another CA, fails the handshake", async () => {
    const { server, port, seen } = await serve(RESEARCHER, authorizeMemberOf("hexr.local"));
    const other = await startIdentityPlatform();
    try {
      const { key: _k, cert: _c, ...noCert } = mtlsClientOptions(identity, authorizeId(RESEARCHER)) as Record<string, unknown>;
      await expect(
        new Promise((resolve, reject) => {
          const s = tlsConnect({ ...noCert, host: "127.0.0.1", port } as never);
          s.on("data", resolve);
          s.on("error", reject);
          s.on("close", () => reject(new Error("closed without data")));
        }),
      ).rejects.toThrow();
      // A process registered on another platform (another CA) presents a chain this server does not trust.
      await other.registerProcess(process.pid, WRITER);
      const stranger = createIdentity({ address: `unix://${other.socketPath}` });
      extra.push(stranger);
      await stranger.ready();
      const opts = {
        ...svidTlsOptions(stranger),
        ca: identity.x509Bundle().authorities.map((c) => c.toString()),
        host: "127.0.0.1",
        port,
        checkServerIdentity: () => undefined,
      };
      await expect(
        new Promise((resolve, reject) => {
          const s = tlsConnect(opts);
          s.on("data", resolve);
          s.on("error", reject);
          s.on("close", () => reject(new Error("closed without data")));
        }),
      ).rejects.toThrow();
      expect(seen.filter((s) => s.ok)).toEqual([]);
    } finally {
      server.close();
      await other.dispose();
    }
  });

  it("keepServerContextFresh swaps a live server's certificate when the SVID rotates", async () => {
    const own = await startIdentityPlatform();
    const id = "spiffe://hexr.local/agent/acme-corp/rotating-server/main";
    await own.registerProcess(process.pid, id, { x509SvidTtlSeconds: 3 });
    const rot = createIdentity({ address: `unix://${own.socketPath}` });
    extra.push(rot);
    await rot.ready();
    const server = createTlsServer(mtlsServerOptions(rot), (socket) => socket.end("ok"));
    const stop = keepServerContextFresh(server, rot);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as AddressInfo).port;
    const servedSerial = () =>
      new Promise<string>((resolve, reject) => {
        const s = tlsConnect({ ...mtlsClientOptions(rot, authorizeId(id)), host: "127.0.0.1", port }, () => {
          resolve(s.getPeerX509Certificate()!.serialNumber);
          s.destroy();
        });
        s.on("error", reject);
      });
    try {
      const before = await servedSerial();
      expect(before).toBe(rot.x509Svid.certificates[0]!.serialNumber);
      await new Promise<void>((resolve) => {
        const off = rot.onUpdate((s) => {
          if (s.certificates[0]!.serialNumber !== before) {
            off();
            resolve();
          }
        });
      });
      const after = await servedSerial();
      expect(after).not.toBe(before);
      expect(after).toBe(rot.x509Svid.certificates[0]!.serialNumber);
    } finally {
      stop();
      server.close();
      await own.dispose();
    }
  });
});
