import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

/**
 * The reference Workload API client for tests: stock @grpc/grpc-js + @grpc/proto-loader generated
 * from the specification's proto, so the server is checked against an implementation that is not ours.
 */
export const PROTO_PATH = fileURLToPath(new URL("./workloadapi.proto", import.meta.url));

const definition = protoLoader.loadSync(PROTO_PATH, {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const pkg = grpc.loadPackageDefinition(definition) as unknown as { SpiffeWorkloadAPI: grpc.ServiceClientConstructor };

export interface X509SvidMsg {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}
export interface X509SvidResponseMsg {
  svids: X509SvidMsg[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}
export interface BundlesResponseMsg {
  crl?: Buffer[];
  bundles: Record<string, Buffer>;
}
export interface JwtSvidResponseMsg {
  svids: Array<{ spiffe_id: string; svid: string; hint: string }>;
}
export interface ValidateResponseMsg {
  spiffe_id: string;
  claims: { fields: Record<string, unknown> };
}

export type ServiceError = grpc.ServiceError;
export const status = grpc.status;

/** Metadata with the mandatory security header (or without it, to test the check). */
export function securityMetadata(present = true): grpc.Metadata {
  const md = new grpc.Metadata();
  if (present) md.set("workload.spiffe.io", "true");
  return md;
}

export interface ReferenceClient {
  raw: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  /** First message of FetchX509SVID (the stream is cancelled after it). */
  fetchX509Svid(md?: grpc.Metadata): Promise<X509SvidResponseMsg>;
  /** Collects `count` messages of a server stream, then cancels it. */
  collect<T>(
    method: "FetchX509SVID" | "FetchX509Bundles" | "FetchJWTBundles" | "FetchWITSVID" | "FetchWITBundles",
    count: number,
    md?: grpc.Metadata,
  ): Promise<T[]>;
  fetchJwtSvid(req: { audience: string[]; spiffe_id?: string }, md?: grpc.Metadata): Promise<JwtSvidResponseMsg>;
  validateJwtSvid(req: { audience: string; svid: string }, md?: grpc.Metadata): Promise<ValidateResponseMsg>;
  close(): void;
}

/** `unix:///abs/path` or `unix:/abs/path` as grpc-js understands it. */
export function createReferenceClient(socketPath: string): ReferenceClient {
  const raw = new pkg.SpiffeWorkloadAPI(
    `unix://${socketPath}`,
    grpc.credentials.createInsecure(),
  ) as unknown as ReferenceClient["raw"];
  const unary = <T>(method: string, req: unknown, md: grpc.Metadata) =>
    new Promise<T>((resolve, reject) => {
      (raw[method] as (r: unknown, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, v: T) => void) => void).call(
        raw,
        req,
        md,
        (err, v) => (err ? reject(err) : resolve(v)),
      );
    });
  const collect = <T>(method: string, count: number, md: grpc.Metadata) =>
    new Promise<T[]>((resolve, reject) => {
      const got: T[] = [];
      const call = (raw[method] as (r: unknown, m: grpc.Metadata) => grpc.ClientReadableStream<T>).call(raw, {}, md);
      call.on("data", (m: T) => {
        got.push(m);
        if (got.length === count) {
          call.cancel();
          resolve(got);
        }
      });
      call.on("error", (err: grpc.ServiceError) => {
        if (err.code !== grpc.status.CANCELLED || got.length < count) reject(err);
      });
    });
  return {
    raw,
    fetchX509Svid: async (md = securityMetadata()) => (await collect<X509SvidResponseMsg>("FetchX509SVID", 1, md))[0]!,
    collect: (method, count, md = securityMetadata()) => collect(method, count, md),
    fetchJwtSvid: (req, md = securityMetadata()) => unary("FetchJWTSVID", req, md),
    validateJwtSvid: (req, md = securityMetadata()) => unary("ValidateJWTSVID", req, md),
    close: () => raw.close(),
  };
}
