import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import { connect as netConnect } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createReferenceClient,
  securityMetadata,
  status,
  type BundlesResponseMsg,
  type ReferenceClient,
  type ServiceError,
  type X509SvidResponseMsg,
} from "../../../../../test/identity/reference-client.js";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeFrame } from "./grpc.js";
import { startWorkloadApiServer, workloadSocketPath } from "./server.js";
import { startWorkloadApiFixture, TRUST_DOMAIN, type WorkloadApiFixture } from "./test-support/fixture.js";

const ME = `spiffe://${TRUST_DOMAIN}/agent/acme-corp/tester/main`;
let fx: WorkloadApiFixture;
let client: ReferenceClient;

beforeAll(async () => {
  fx = await startWorkloadApiFixture();
  client = createReferenceClient(fx.socketPath);
});
afterAll(async () => {
  client.close();
  await fx.close();
});
afterEach(async () => {
  for (const e of await fx.entries.list()) await fx.entries.delete(e.id);
});

/** DER certificates concatenated → X509Certificate[] (each DER SEQUENCE carries its own length). */
function splitDer(buf: Buffer): X509Certificate[] {
  const out: X509Certificate[] = [];
  let off = 0;
  while (off < buf.length) {
    const lenByte = buf[off + 1]!;
    const n = lenByte & 0x80 ? lenByte & 0x7f : 0;
    const len = n ? buf.subarray(off + 2, off + 2 + n).reduce((a, b) => a * 256 + b, 0) : lenByte;
    const end = off + 2 + n + len;
    out.push(new X509Certificate(buf.subarray(off, end)));
    off = end;
  }
  return out;
}

const code = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: ServiceError) => e.code,
  );

describe("Workload API over the unix socket (reference grpc-js client)", () => {
  it("FetchX509SVID: the caller's SVID, its key, the bundle; no federated bundles", async () => {
    await fx.registerProcess(process.pid, ME);
    const res = await client.fetchX509Svid();
    expect(res.svids).toHaveLength(1);
    const svid = res.svids[0]!;
    expect(svid.spiffe_id).toBe(ME);
    const chain = splitDer(svid.x509_svid);
    expect(chain).toHaveLength(2);
    expect(chain[0]!.subjectAltName).toBe(`URI:${ME}`);
    const key = createPrivateKey({ key: svid.x509_svid_key, format: "der", type: "pkcs8" });
    expect(createPublicKey(key).export({ format: "der", type: "spki" })).toEqual(
      chain[0]!.publicKey.export({ format: "der", type: "spki" }),
    );
    expect(svid.bundle).toEqual(Buffer.concat(fx.authority.x509Authorities()));
    expect(res.federated_bundles).toEqual({});
    expect(res.crl).toEqual([]);
  });

  it("every RPC without the workload.spiffe.io header is INVALID_ARGUMENT", async () => {
    await fx.registerProcess(process.pid, ME);
    const md = securityMetadata(false);
    expect(await code(client.fetchX509Svid(md))).toBe(status.INVALID_ARGUMENT);
    expect(await code(client.collect("FetchX509Bundles", 1, md))).toBe(status.INVALID_ARGUMENT);
    expect(await code(client.collect("FetchJWTBundles", 1, md))).toBe(status.INVALID_ARGUMENT);
    expect(await code(client.fetchJwtSvid({ audience: ["x"] }, md))).toBe(status.INVALID_ARGUMENT);
    expect(await code(client.validateJwtSvid({ audience: "x", svid: "a.b.c" }, md))).toBe(status.INVALID_ARGUMENT);
    const wrong = securityMetadata(false);
    wrong.set("workload.spiffe.io", "yes");
    expect(await code(client.fetchX509Svid(wrong))).toBe(status.INVALID_ARGUMENT);
  });

  it("a caller without an entry gets PERMISSION_DENIED everywhere", async () => {
    expect(await code(client.fetchX509Svid())).toBe(status.PERMISSION_DENIED);
    expect(await code(client.collect("FetchX509Bundles", 1))).toBe(status.PERMISSION_DENIED);
    expect(await code(client.collect("FetchJWTBundles", 1))).toBe(status.PERMISSION_DENIED);
    expect(await code(client.fetchJwtSvid({ audience: ["x"] }))).toBe(status.PERMISSION_DENIED);
    expect(await code(client.validateJwtSvid({ audience: "x", svid: "a.b.c" }))).toBe(status.PERMISSION_DENIED);
  });

  it("an entry pinned to another process does not apply to us", async () => {
    await fx.registerProcess(process.ppid, ME);
    expect(await code(client.fetchX509Svid())).toBe(status.PERMISSION_DENIED);
  });

  it("the WIT-SVID profile and unknown methods are UNIMPLEMENTED", async () => {
    await fx.registerProcess(process.pid, ME);
    expect(await code(client.collect("FetchWITSVID", 1))).toBe(status.UNIMPLEMENTED);
    expect(await code(client.collect("FetchWITBundles", 1))).toBe(status.UNIMPLEMENTED);
  });

  it("FetchJWTSVID: audience required, entitlement per SPIFFE ID, cached per audience set", async () => {
    await fx.registerProcess(process.pid, ME);
    expect(await code(client.fetchJwtSvid({ audience: [] }))).toBe(status.INVALID_ARGUMENT);
    expect(await code(client.fetchJwtSvid({ audience: [""] }))).toBe(status.INVALID_ARGUMENT);
    expect(await code(client.fetchJwtSvid({ audience: ["a"], spiffe_id: "spiffe://x/../y" }))).toBe(status.INVALID_ARGUMENT);
    expect(
      await code(client.fetchJwtSvid({ audience: ["a"], spiffe_id: `spiffe://${TRUST_DOMAIN}/agent/acme-corp/other/main` })),
    ).toBe(status.PERMISSION_DENIED);
    const a = await client.fetchJwtSvid({ audience: ["svc-a", "svc-b"] });
    expect(a.svids).toHaveLength(1);
    expect(a.svids[0]!.spiffe_id).toBe(ME);
    const again = await client.fetchJwtSvid({ audience: ["svc-b", "svc-a"], spiffe_id: ME });
    expect(again.svids[0]!.svid).toBe(a.svids[0]!.svid);
    const other = await client.fetchJwtSvid({ audience: ["svc-c"] });
    expect(other.svids[0]!.svid).not.toBe(a.svids[0]!.svid);
    const v = await client.validateJwtSvid({ audience: "svc-a", svid: a.svids[0]!.svid });
    expect(v.spiffe_id).toBe(ME);
    expect(v.claims.fields).toHaveProperty("sub");
    expect(await code(client.validateJwtSvid({ audience: "svc-c", svid: a.svids[0]!.svid }))).toBe(status.INVALID_ARGUMENT);
    expect(await code(client.validateJwtSvid({ audience: "", svid: a.svids[0]!.svid }))).toBe(status.INVALID_ARGUMENT);
  });

  it("returns every identity, the process-pinned one first", async () => {
    await fx.entries.create(
      { spiffeId: `spiffe://${TRUST_DOMAIN}/system/broad`, selectors: [`unix:uid:${process.geteuid!()}`] },
      "test",
    );
    await fx.registerProcess(process.pid, ME);
    const res = await client.fetchX509Svid();
    expect(res.svids.map((s) => s.spiffe_id)).toEqual([ME, `spiffe://${TRUST_DOMAIN}/system/broad`]);
    const jwt = await client.fetchJwtSvid({ audience: ["a"] });
    expect(jwt.svids.map((s) => s.spiffe_id)).toEqual([ME, `spiffe://${TRUST_DOMAIN}/system/broad`]);
  });

  it("FetchX509Bundles / FetchJWTBundles are keyed by spiffe://<td>; the JWT bundle holds only jwt-svid keys", async () => {
    await fx.registerProcess(process.pid, ME);
    const [x] = await client.collect<BundlesResponseMsg>("FetchX509Bundles", 1);
    expect(Object.keys(x!.bundles)).toEqual([`spiffe://${TRUST_DOMAIN}`]);
    expect(x!.bundles[`spiffe://${TRUST_DOMAIN}`]).toEqual(Buffer.concat(fx.authority.x509Authorities()));
    const [j] = await client.collect<BundlesResponseMsg>("FetchJWTBundles", 1);
    const jwks = JSON.parse(j!.bundles[`spiffe://${TRUST_DOMAIN}`]!.toString("utf8")) as {
      keys: Array<{ use: string; kid: string }>;
    };
    expect(jwks.keys.length).toBeGreaterThan(0);
    expect(jwks.keys.every((k) => k.use === "jwt-svid" && typeof k.kid === "string")).toBe(true);
  });

  it("streams push the full state again when the bundle changes (CA prepared)", async () => {
    await fx.registerProcess(process.pid, ME);
    const two = client.collect<BundlesResponseMsg>("FetchJWTBundles", 2);
    await new Promise((r) => setTimeout(r, 100));
    await fx.authority.prepare();
    const [first, second] = await two;
    const keys = (m: BundlesResponseMsg) =>
      (JSON.parse(m.bundles[`spiffe://${TRUST_DOMAIN}`]!.toString("utf8")) as { keys: Array<{ kid: string }> }).keys.map(
        (k) => k.kid,
      );
    expect(keys(second!).length).toBe(keys(first!).length + 1);
    expect(keys(second!)).toEqual(expect.arrayContaining(keys(first!)));
  });

  it("a stream ends with PERMISSION_DENIED when the caller's entry is deleted", async () => {
    const entry = await fx.registerProcess(process.pid, ME);
    const call = (client.raw["FetchX509SVID"] as (r: unknown, m: unknown) => NodeJS.EventEmitter).call(
      client.raw,
      {},
      securityMetadata(),
    );
    const first = new Promise<X509SvidResponseMsg>((r) => call.once("data", r));
    const ended = new Promise<ServiceError>((r) => call.once("error", r));
    expect((await first).svids[0]!.spiffe_id).toBe(ME);
    await fx.entries.delete(entry.id);
    expect((await ended).code).toBe(status.PERMISSION_DENIED);
  });
});

describe("gRPC framing edge cases (raw HTTP/2)", () => {
  let session: ClientHttp2Session;
  beforeAll(async () => {
    await fx.registerProcess(process.pid, ME);
    session = h2connect("http://localhost", { createConnection: () => netConnect(fx.socketPath) });
  });
  afterAll(() => session.close());

  function call(
    headers: Record<string, string>,
    body: Buffer,
  ): Promise<{ status: number; grpcStatus?: string; grpcMessage?: string; data: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": "/SpiffeWorkloadAPI/FetchJWTSVID",
        "content-type": "application/grpc",
        te: "trailers",
        "workload.spiffe.io": "true",
        ...headers,
      });
      let st = 0;
      let grpcStatus: string | undefined;
      let grpcMessage: string | undefined;
      const chunks: Buffer[] = [];
      req.on("response", (h) => {
        st = Number(h[":status"]);
        if (h["grpc-status"] !== undefined) grpcStatus = String(h["grpc-status"]);
        if (h["grpc-message"] !== undefined) grpcMessage = String(h["grpc-message"]);
      });
      req.on("trailers", (t) => {
        grpcStatus = String(t["grpc-status"]);
        if (t["grpc-message"] !== undefined) grpcMessage = String(t["grpc-message"]);
      });
      req.on("data", (d: Buffer) => chunks.push(d));
      req.on("end", () =>
        resolve({
          status: st,
          ...(grpcStatus !== undefined ? { grpcStatus } : {}),
          ...(grpcMessage !== undefined ? { grpcMessage } : {}),
          data: Buffer.concat(chunks),
        }),
      );
      req.on("error", reject);
      // Node ends GET requests itself.
      if (headers[":method"] !== "GET") req.end(body);
    });
  }
  // JWTSVIDRequest{audience: ["a"]}: field 1, wire type 2, length 1, "a".
  const jwtReq = Buffer.from([0x0a, 0x01, 0x61]);

  it("a well-formed call succeeds with grpc-status 0 in the trailers", async () => {
    const r = await call({}, encodeFrame(jwtReq));
    expect(r.status).toBe(200);
    expect(r.grpcStatus).toBe("0");
    expect(r.data.length).toBeGreaterThan(5);
  });
  it("a non-gRPC content type is HTTP 415, a GET is 405", async () => {
    expect((await call({ "content-type": "application/json" }, Buffer.from("{}"))).status).toBe(415);
    expect((await call({ ":method": "GET" }, Buffer.alloc(0))).status).toBe(405);
  });
  it("compressed frames are UNIMPLEMENTED, truncated or repeated frames INTERNAL, garbage INVALID_ARGUMENT", async () => {
    const compressed = encodeFrame(jwtReq);
    compressed[0] = 1;
    expect((await call({}, compressed)).grpcStatus).toBe(String(status.UNIMPLEMENTED));
    expect((await call({}, encodeFrame(jwtReq).subarray(0, 6))).grpcStatus).toBe(String(status.INTERNAL));
    expect((await call({}, Buffer.concat([encodeFrame(jwtReq), encodeFrame(jwtReq)]))).grpcStatus).toBe(String(status.INTERNAL));
    expect((await call({}, Buffer.alloc(0))).grpcStatus).toBe(String(status.INTERNAL));
    const garbage = await call({}, encodeFrame(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f])));
    expect(garbage.grpcStatus).toBe(String(status.INVALID_ARGUMENT));
  });
  it("an oversized request is RESOURCE_EXHAUSTED", async () => {
    const big = encodeFrame(Buffer.concat([Buffer.from([0x0a, 0x80, 0x80, 0x08]), Buffer.alloc(128 * 1024, 0x61)]));
    expect((await call({}, big)).grpcStatus).toBe(String(status.RESOURCE_EXHAUSTED));
  });
  it("grpc-message is percent-encoded", async () => {
    const r = await call({ ":path": "/SpiffeWorkloadAPI/Nope%é" }, encodeFrame(jwtReq));
    expect(r.grpcStatus).toBe(String(status.UNIMPLEMENTED));
    expect(r.grpcMessage).toMatch(/^unknown method \/SpiffeWorkloadAPI\/Nope%25/);
  });
});

describe("rotation and shutdown", () => {
  it("with a short TTL the stream delivers a fresh SVID at half life, before the current one expires", async () => {
    await fx.registerProcess(process.pid, ME, { x509SvidTtlSeconds: 3 });
    const received: Array<{ at: number; msg: X509SvidResponseMsg }> = [];
    const call = (client.raw["FetchX509SVID"] as (r: unknown, m: unknown) => NodeJS.EventEmitter & { cancel(): void }).call(
      client.raw,
      {},
      securityMetadata(),
    );
    await new Promise<void>((resolve, reject) => {
      call.on("data", (msg: X509SvidResponseMsg) => {
        received.push({ at: Date.now(), msg });
        if (received.length === 2) resolve();
      });
      call.on("error", reject);
    });
    call.cancel();
    const [a, b] = received.map((r) => splitDer(r.msg.svids[0]!.x509_svid)[0]!);
    expect(b!.serialNumber).not.toBe(a!.serialNumber);
    expect(received[1]!.at).toBeLessThan(Date.parse(a!.validTo));
    expect(Date.parse(b!.validTo)).toBeGreaterThan(Date.parse(a!.validTo));
  });

  it("stopping the server ends open streams with UNAVAILABLE and removes the socket", async () => {
    const own = await startWorkloadApiFixture();
    const c = createReferenceClient(own.socketPath);
    try {
      await own.registerProcess(process.pid, ME);
      const call = (c.raw["FetchX509SVID"] as (r: unknown, m: unknown) => NodeJS.EventEmitter).call(
        c.raw,
        {},
        securityMetadata(),
      );
      await new Promise((r) => call.once("data", r));
      const ended = new Promise<ServiceError>((r) => call.once("error", r));
      await own.api.stop();
      expect((await ended).code).toBe(status.UNAVAILABLE);
      const { existsSync } = await import("node:fs");
      expect(existsSync(own.socketPath)).toBe(false);
    } finally {
      c.close();
      await own.close();
    }
  });
});

describe("socket placement", () => {
  it("falls back to a private temp dir when <dataDir>/run/workload.sock is too long for a socket address", () => {
    const short = workloadSocketPath("/var/lib/hexr");
    expect(short).toBe("/var/lib/hexr/run/workload.sock");
    const deep = "/tmp/" + "d".repeat(120);
    const p = workloadSocketPath(deep);
    expect(Buffer.byteLength(p)).toBeLessThanOrEqual(107);
    expect(p).toBe(workloadSocketPath(deep));
    expect(p).not.toBe(workloadSocketPath(deep + "x"));
    expect(p.startsWith(tmpdir())).toBe(true);
  });

  it("refuses a socket another server is using, a non-socket in the way, and a directory others can enter", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hexr-sock-"));
    try {
      const path = join(dir, "run", "w.sock");
      await expect(startWorkloadApiServer({ socketPath: fx.socketPath, service: fx.api.service })).rejects.toMatchObject({
        code: "identity.workload_socket_in_use",
      });
      mkdirSync(join(dir, "run"), { mode: 0o700 });
      writeFileSync(path, "not a socket");
      await expect(startWorkloadApiServer({ socketPath: path, service: fx.api.service })).rejects.toMatchObject({
        code: "identity.workload_socket_blocked",
      });
      rmSync(path);
      chmodSync(join(dir, "run"), 0o755);
      await expect(startWorkloadApiServer({ socketPath: path, service: fx.api.service })).rejects.toMatchObject({
        code: "identity.workload_socket_dir_unsafe",
      });
      await expect(
        startWorkloadApiServer({ socketPath: "/tmp/" + "s".repeat(120), service: fx.api.service }),
      ).rejects.toMatchObject({
        code: "identity.workload_socket_path",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
