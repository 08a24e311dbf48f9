import { HexrError } from "@hexr/core";
import protobuf from "protobufjs";

/**
 * The messages of the SPIFFE Workload API (spiffe/spiffe standards/workloadapi.proto). The proto has
 * no package line, so the gRPC paths are `/SpiffeWorkloadAPI/<Method>`.
 */
const WORKLOAD_PROTO = `
syntax = "proto3";
import "google/protobuf/struct.proto";

message X509SVIDRequest {}
message X509SVIDResponse {
  repeated X509SVID svids = 1;
  repeated bytes crl = 2;
  map<string, bytes> federated_bundles = 3;
}
message X509SVID {
  string spiffe_id = 1;
  bytes x509_svid = 2;
  bytes x509_svid_key = 3;
  bytes bundle = 4;
  string hint = 5;
}
message X509BundlesRequest {}
message X509BundlesResponse {
  repeated bytes crl = 1;
  map<string, bytes> bundles = 2;
}
message JWTSVIDRequest {
  repeated string audience = 1;
  string spiffe_id = 2;
}
message JWTSVIDResponse { repeated JWTSVID svids = 1; }
message JWTSVID {
  string spiffe_id = 1;
  string svid = 2;
  string hint = 3;
}
message JWTBundlesRequest {}
message JWTBundlesResponse { map<string, bytes> bundles = 1; }
message ValidateJWTSVIDRequest {
  string audience = 1;
  string svid = 2;
}
message ValidateJWTSVIDResponse {
  string spiffe_id = 1;
  google.protobuf.Struct claims = 2;
}
`;

function buildRoot(): protobuf.Root {
  const root = new protobuf.Root();
  const struct = protobuf.common.get("google/protobuf/struct.proto");
  if (!struct?.nested) throw new Error("protobufjs lacks google/protobuf/struct.proto");
  root.addJSON(struct.nested);
  protobuf.parse(WORKLOAD_PROTO, root, { keepCase: true });
  root.resolveAll();
  return root;
}

const root = buildRoot();
const type = (name: string) => root.lookupType(name);

export const messages = {
  X509SVIDRequest: type("X509SVIDRequest"),
  X509SVIDResponse: type("X509SVIDResponse"),
  X509BundlesRequest: type("X509BundlesRequest"),
  X509BundlesResponse: type("X509BundlesResponse"),
  JWTSVIDRequest: type("JWTSVIDRequest"),
  JWTSVIDResponse: type("JWTSVIDResponse"),
  JWTBundlesRequest: type("JWTBundlesRequest"),
  JWTBundlesResponse: type("JWTBundlesResponse"),
  ValidateJWTSVIDRequest: type("ValidateJWTSVIDRequest"),
  ValidateJWTSVIDResponse: type("ValidateJWTSVIDResponse"),
} as const;

export const SERVICE_NAME = "SpiffeWorkloadAPI";

export interface X509SvidMessage {
  spiffe_id: string;
  x509_svid: Uint8Array;
  x509_svid_key: Uint8Array;
  bundle: Uint8Array;
  hint: string;
}
export interface X509SvidResponseMessage {
  svids: X509SvidMessage[];
  crl: Uint8Array[];
  federated_bundles: Record<string, Uint8Array>;
}
export interface X509BundlesResponseMessage {
  crl: Uint8Array[];
  bundles: Record<string, Uint8Array>;
}
export interface JwtSvidRequestMessage {
  audience: string[];
  spiffe_id: string;
}
export interface JwtSvidResponseMessage {
  svids: Array<{ spiffe_id: string; svid: string; hint: string }>;
}
export interface JwtBundlesResponseMessage {
  bundles: Record<string, Uint8Array>;
}
export interface ValidateJwtSvidRequestMessage {
  audience: string;
  svid: string;
}
export interface ValidateJwtSvidResponseMessage {
  spiffe_id: string;
  claims: StructMessage;
}

/** google.protobuf.Struct as protobufjs objects: one `kind` field set per Value. */
export interface StructMessage {
  fields: Record<string, ValueMessage>;
}
export type ValueMessage =
  | { nullValue: 0 }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: StructMessage }
  | { listValue: { values: ValueMessage[] } };

/** JSON value → google.protobuf.Value (JWT claims are JSON, so every value has a Struct form). */
export function toProtoValue(v: unknown): ValueMessage {
  if (v === null || v === undefined) return { nullValue: 0 };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toProtoValue) } };
  if (typeof v === "object") return { structValue: toProtoStruct(v as Record<string, unknown>) };
  return { stringValue: String(v) };
}

export function toProtoStruct(obj: Record<string, unknown>): StructMessage {
  const fields: Record<string, ValueMessage> = {};
  for (const [k, v] of Object.entries(obj)) fields[k] = toProtoValue(v);
  return { fields };
}

/** Decodes a request body; malformed protobuf is the caller's error. */
export function decode<T>(t: protobuf.Type, bytes: Uint8Array): T {
  let msg: protobuf.Message;
  try {
    msg = t.decode(bytes);
  } catch {
    throw new HexrError("workload_api.malformed_request", `the request is not a valid ${t.name} message`, {
      kind: "invalid_argument",
    });
  }
  return t.toObject(msg, { defaults: true, arrays: true, objects: true, bytes: Buffer }) as T;
}

export function encode(t: protobuf.Type, obj: object): Buffer {
  return Buffer.from(t.encode(t.fromObject(obj)).finish());
}
