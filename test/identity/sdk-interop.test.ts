import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { randomBytes } from "node:crypto";
import { createIdentity, WorkloadApiClient } from "hexr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAuthority, type LocalAuthority } from "../../packages/platform/src/identity/authority/authority.js";
import { authorityMigrations } from "../../packages/platform/src/identity/authority/store.js";
import { createSqliteStorage } from "../../packages/platform/src/storage/sqlite.js";
import type { Storage } from "../../packages/platform/src/storage/types.js";
import { PROTO_PATH } from "./reference-client.js";

// The SDK against a Workload API server that is not Hexr's: a stock grpc-js server generated from
// the spec's proto (as a SPIRE agent is a grpc-go one), reached over tcp:// this time.
const TD = "example.org";
const ME = `spiffe://${TD}/workload/a`;
let storage: Storage;
let authority: LocalAuthority;
let otherAuthority: LocalAuthority;
let server: grpc.Server;
let address: string;
const seenHeaders: Array<string | undefined> = [];
let x509Calls = 0;
let mode: "normal" | "end-after-first" | "unimplemented" = "normal";

beforeAll(async () => {
  storage = createSqliteStorage({ filename: ":memory:" });
  await storage.migrate(authorityMigrations);
  authority = await createAuthority({ storage, trustDomain: TD, masterKey: randomBytes(32), issuer: "https://oidc.example.org" });
  const otherStorage = createSqliteStorage({ filename: ":memory:" });
  await otherStorage.migrate(authorityMigrations);
  otherAuthority = await createAuthority({ storage: otherStorage, trustDomain: "other.org", masterKey: randomBytes(32) });

  const def = protoLoader.loadSync(PROTO_PATH, { keepCase: true, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { SpiffeWorkloadAPI: grpc.ServiceClientConstructor };
  const header = (md: grpc.Metadata) => {
    const v = md.get("workload.spiffe.io")[0]?.toString();
    seenHeaders.push(v);
    return v === "true";
  };
  // grpc-js ends a server stream with a status when the stream emits 'error'.
  const fail = (call: grpc.ServerWritableStream<unknown, unknown>, err: Error) => void call.emit("error", err);
  const bad = { code: grpc.status.INVALID_ARGUMENT, details: "security header missing from request" };
  server = new grpc.Server();
  server.addService(pkg.SpiffeWorkloadAPI.service, {
    async FetchX509SVID(call: grpc.ServerWritableStream<unknown, unknown>) {
      if (!header(call.metadata)) return fail(call, Object.assign(new Error(bad.details), bad));
      if (mode === "unimplemented") return fail(call, Object.assign(new Error("nope"), { code: grpc.status.UNIMPLEMENTED }));
      x509Calls++;
      const svid = await authority.mintX509Svid(ME);
      call.write({
        svids: [
          {
            spiffe_id: ME,
            x509_svid: Buffer.concat(svid.certChainDer),
            x509_svid_key: svid.privateKeyPkcs8Der,
            bundle: Buffer.concat(authority.x509Authorities()),
            hint: "internal",
          },
        ],
        crl: [],
        federated_bundles: { "spiffe://other.org": Buffer.concat(otherAuthority.x509Authorities()) },
      });
      if (mode === "end-after-first") fail(call, Object.assign(new Error("restarting"), { code: grpc.status.UNAVAILABLE }));
    },
    async FetchJWTSVID(
      call: grpc.ServerUnaryCall<{ audience: string[]; spiffe_id: string }, unknown>,
      cb: grpc.sendUnaryData<unknown>,
    ) {
      if (!header(call.metadata)) return cb(Object.assign(new Error(bad.details), bad));
      const t = await authority.mintJwtSvid(ME, call.request.audience, {
        extraClaims: { nested: { list: [1, "two", true, null] } },
      });
      cb(null, { svids: [{ spiffe_id: ME, svid: t.token, hint: "" }] });
    },
    FetchJWTBundles(call: grpc.ServerWritableStream<unknown, unknown>) {
      if (!header(call.metadata)) return fail(call, Object.assign(new Error(bad.details), bad));
      const keys = authority.bundle().keys.filter((k) => k.use === "jwt-svid");
      call.write({ bundles: { [`spiffe://${TD}`]: Buffer.from(JSON.stringify({ keys })) } });
    },
    async ValidateJWTSVID(
      call: grpc.ServerUnaryCall<{ audience: string; svid: string }, unknown>,
      cb: grpc.sendUnaryData<unknown>,
    ) {
      if (!header(call.metadata)) return cb(Object.assign(new Error(bad.details), bad));
      try {
        const v = await authority.validateJwtSvid(call.request.svid, call.request.audience);
        const value = (x: unknown): unknown =>
          x === null
            ? { nullValue: 0 }
            : typeof x === "number"
              ? { numberValue: x }
              : typeof x === "string"
                ? { stringValue: x }
                : typeof x === "boolean"
                  ? { boolValue: x }
                  : Array.isArray(x)
                    ? { listValue: { values: x.map(value) } }
                    : { structValue: { fields: Object.fromEntries(Object.entries(x as object).map(([k, y]) => [k, value(y)])) } };
        cb(null, {
          spiffe_id: v.spiffeId,
          claims: { fields: Object.fromEntries(Object.entries(v.claims).map(([k, y]) => [k, value(y)])) },
        });
      } catch (err) {
        cb(Object.assign(new Error((err as Error).message), { code: grpc.status.INVALID_ARGUMENT }));
      }
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `tcp://127.0.0.1:${port}`;
});
afterAll(async () => {
  server.forceShutdown();
  await storage.close();
});

describe("SDK against a stock grpc-js Workload API server over tcp://", () => {
  it("reads the X.509 context, including federated bundles, and always sends the security header", async () => {
    mode = "normal";
    const client = new WorkloadApiClient({ address });
    try {
      const ctx = await client.fetchX509Context();
      expect(ctx.svids.map((s) => [s.spiffeId, s.hint])).toEqual([[ME, "internal"]]);
      expect([...ctx.bundles.keys()].sort()).toEqual(["example.org", "other.org"]);
      expect(ctx.bundles.get("other.org")!.authorities[0]!.raw).toEqual(otherAuthority.x509Authorities()[0]);
      const bundles = await client.fetchJwtBundles();
      const jwt = (await client.fetchJwtSvids(["aud-1"]))[0]!;
      expect(jwt.spiffeId).toBe(ME);
      expect(bundles.get(TD)!.keys.size).toBeGreaterThan(0);
      const v = await client.validateJwtSvid(jwt.token, "aud-1");
      expect(v.claims["nested"]).toEqual({ list: [1, "two", true, null] });
      expect(seenHeaders.length).toBeGreaterThanOrEqual(4);
      expect(seenHeaders.every((h) => h === "true")).toBe(true);
    } finally {
      client.close();
    }
  });

  it("reconnects when the server drops the stream with UNAVAILABLE and takes the new SVID", async () => {
    mode = "end-after-first";
    const before = x509Calls;
    const id = createIdentity({ address, backoff: { initialMs: 20, maxMs: 100 } });
    try {
      await id.ready();
      const first = id.x509Svid.certificates[0]!.serialNumber;
      await new Promise<void>((resolve) => id.onUpdate((s) => s.certificates[0]!.serialNumber !== first && resolve()));
      expect(x509Calls - before).toBeGreaterThanOrEqual(2);
    } finally {
      id.close();
      mode = "normal";
    }
  });

  it("treats UNIMPLEMENTED as fatal instead of retrying forever", async () => {
    mode = "unimplemented";
    const id = createIdentity({ address, backoff: { initialMs: 20, maxMs: 100 } });
    try {
      await expect(id.ready({ timeoutMs: 10_000 })).rejects.toMatchObject({ code: "identity.unimplemented" });
    } finally {
      id.close();
      mode = "normal";
    }
  });
});
