import protobuf from "protobufjs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import {
  decodeJwtBundlesResponse,
  decodeJwtSvidResponse,
  decodeValidateJwtSvidResponse,
  decodeX509BundlesResponse,
  decodeX509SvidResponse,
  encodeJwtSvidRequest,
  encodeValidateJwtSvidRequest,
  WireError,
} from "./wire.js";

// The specification's proto, compiled by protobufjs: an independent encoder/decoder to check ours against.
const PROTO = fileURLToPath(new URL("../../../../test/identity/workloadapi.proto", import.meta.url));
let root: protobuf.Root;
const T = (name: string) => root.lookupType(name);
const enc = (name: string, obj: object) => Buffer.from(T(name).encode(T(name).fromObject(obj)).finish());

beforeAll(async () => {
  root = new protobuf.Root();
  root.loadSync(PROTO, { keepCase: true });
  root.resolveAll();
});

describe("Workload API wire codec", () => {
  it("decodes X509SVIDResponse with several SVIDs, CRLs and federated bundles", () => {
    const msg = {
      svids: [
        {
          spiffe_id: "spiffe://a.org/x",
          x509_svid: Buffer.from([1, 2, 3]),
          x509_svid_key: Buffer.from([4]),
          bundle: Buffer.from([5, 6]),
          hint: "internal",
        },
        {
          spiffe_id: "spiffe://a.org/y",
          x509_svid: Buffer.alloc(300, 7),
          x509_svid_key: Buffer.from([8]),
          bundle: Buffer.from([9]),
        },
      ],
      crl: [Buffer.from([0xaa])],
      federated_bundles: { "spiffe://b.org": Buffer.from([1]), "spiffe://c.org": Buffer.from([2, 2]) },
    };
    const out = decodeX509SvidResponse(enc("X509SVIDResponse", msg));
    expect(out.svids).toEqual([
      {
        spiffeId: "spiffe://a.org/x",
        x509Svid: Buffer.from([1, 2, 3]),
        x509SvidKey: Buffer.from([4]),
        bundle: Buffer.from([5, 6]),
        hint: "internal",
      },
      {
        spiffeId: "spiffe://a.org/y",
        x509Svid: Buffer.alloc(300, 7),
        x509SvidKey: Buffer.from([8]),
        bundle: Buffer.from([9]),
        hint: "",
      },
    ]);
    expect(out.crl).toEqual([Buffer.from([0xaa])]);
    expect([...out.federatedBundles]).toEqual([
      ["spiffe://b.org", Buffer.from([1])],
      ["spiffe://c.org", Buffer.from([2, 2])],
    ]);
  });

  it("skips unknown fields of every wire type (forward compatibility)", () => {
    const known = enc("JWTSVIDResponse", { svids: [{ spiffe_id: "spiffe://a.org/x", svid: "t.o.k" }] });
    // field 9 varint, field 10 fixed64, field 11 length-delimited, field 12 fixed32
    const unknown = Buffer.from([0x48, 0x96, 0x01, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5a, 0x02, 0x68, 0x69, 0x65, 1, 2, 3, 4]);
    expect(decodeJwtSvidResponse(Buffer.concat([unknown, known]))).toEqual([
      { spiffeId: "spiffe://a.org/x", svid: "t.o.k", hint: "" },
    ]);
  });

  it("decodes bundles responses", () => {
    const x = decodeX509BundlesResponse(
      enc("X509BundlesResponse", { crl: [], bundles: { "spiffe://a.org": Buffer.from([1, 2]) } }),
    );
    expect([...x.bundles]).toEqual([["spiffe://a.org", Buffer.from([1, 2])]]);
    const j = decodeJwtBundlesResponse(enc("JWTBundlesResponse", { bundles: { "spiffe://a.org": Buffer.from('{"keys":[]}') } }));
    expect(j.bundles.get("spiffe://a.org")!.toString()).toBe('{"keys":[]}');
  });

  it("decodes ValidateJWTSVIDResponse claims from google.protobuf.Struct", () => {
    const claims = {
      fields: {
        sub: { stringValue: "spiffe://a.org/x" },
        exp: { numberValue: 1700000000 },
        ok: { boolValue: true },
        nothing: { nullValue: 0 },
        aud: { listValue: { values: [{ stringValue: "a" }, { stringValue: "b" }] } },
        nested: { structValue: { fields: { n: { numberValue: 1.5 } } } },
      },
    };
    const out = decodeValidateJwtSvidResponse(enc("ValidateJWTSVIDResponse", { spiffe_id: "spiffe://a.org/x", claims }));
    expect(out).toEqual({
      spiffeId: "spiffe://a.org/x",
      claims: { sub: "spiffe://a.org/x", exp: 1700000000, ok: true, nothing: null, aud: ["a", "b"], nested: { n: 1.5 } },
    });
  });

  it("a claim named __proto__ stays a plain property", () => {
    const out = decodeValidateJwtSvidResponse(
      enc("ValidateJWTSVIDResponse", {
        spiffe_id: "spiffe://a.org/x",
        claims: { fields: { ["__proto__"]: { stringValue: "x" } } },
      }),
    );
    expect(Object.getPrototypeOf(out.claims)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(out.claims, "__proto__")?.value).toBe("x");
  });

  it("encodes requests the spec's proto decodes", () => {
    const req = T("JWTSVIDRequest").toObject(
      T("JWTSVIDRequest").decode(encodeJwtSvidRequest(["a", "ü".repeat(100)], "spiffe://a.org/x")),
    );
    expect(req).toEqual({ audience: ["a", "ü".repeat(100)], spiffe_id: "spiffe://a.org/x" });
    const noId = T("JWTSVIDRequest").toObject(T("JWTSVIDRequest").decode(encodeJwtSvidRequest(["a"])));
    expect(noId).toEqual({ audience: ["a"] });
    const v = T("ValidateJWTSVIDRequest").toObject(
      T("ValidateJWTSVIDRequest").decode(encodeValidateJwtSvidRequest("aud", "x.y.z")),
    );
    expect(v).toEqual({ audience: "aud", svid: "x.y.z" });
  });

  it("rejects truncated input, wrong wire types and field 0 with WireError", () => {
    const good = enc("JWTSVIDResponse", { svids: [{ spiffe_id: "spiffe://a.org/x", svid: "t" }] });
    expect(() => decodeJwtSvidResponse(good.subarray(0, good.length - 1))).toThrow(WireError);
    expect(() => decodeJwtSvidResponse(Buffer.from([0x08, 0x01]))).toThrow(/wire type/);
    expect(() => decodeJwtSvidResponse(Buffer.from([0x02, 0x00]))).toThrow(/field number 0/);
    expect(() =>
      decodeJwtSvidResponse(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
    ).toThrow(WireError);
    expect(() => decodeJwtSvidResponse(Buffer.from([0x0b]))).toThrow(/wire type 3/);
  });
});
