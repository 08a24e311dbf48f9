import { parseSpiffeId } from "@hexr/core";
import { GrpcCode, WorkloadApiError } from "./errors.js";
import { resolveEndpoint, type WorkloadEndpoint } from "./endpoint.js";
import { GrpcClient, type StreamHandle } from "./grpc-client.js";
import { audienceOf, decodeJwtUnverified, parseJwtBundle, type JwtBundle, type JwtSvid } from "./jwt.js";
import { toX509Bundles, toX509Context, type X509Bundle, type X509Context } from "./svid.js";
import {
  decodeJwtBundlesResponse,
  decodeJwtSvidResponse,
  decodeValidateJwtSvidResponse,
  decodeX509BundlesResponse,
  decodeX509SvidResponse,
  EMPTY_REQUEST,
  encodeJwtSvidRequest,
  encodeValidateJwtSvidRequest,
} from "./wire.js";

const METHOD = (name: string) => `/SpiffeWorkloadAPI/${name}`;

export interface WorkloadApiClientOptions {
  /** `unix:///path` or `tcp://IP:port`; defaults to `SPIFFE_ENDPOINT_SOCKET`. */
  address?: string;
  env?: NodeJS.ProcessEnv;
  /** Deadline of unary calls. */
  timeoutMs?: number;
}

export interface Watch {
  cancel(): void;
  /** Settles when the stream ends: resolves on cancel, rejects with a WorkloadApiError otherwise. */
  done: Promise<void>;
}

/**
 * A client of the SPIFFE Workload API that speaks only the specification, so it works against
 * Hexr's local platform and against a SPIRE agent alike.
 */
export class WorkloadApiClient {
  readonly endpoint: WorkloadEndpoint;
  private readonly grpc: GrpcClient;
  private readonly timeoutMs: number;

  constructor(opts: WorkloadApiClientOptions = {}) {
    this.endpoint = resolveEndpoint(opts.address, opts.env);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    // Every call carries the security header the spec mandates.
    this.grpc = new GrpcClient(this.endpoint, { metadata: { "workload.spiffe.io": "true" } });
  }

  /** Streams X.509 contexts: the full set of SVIDs and bundles now and on every rotation. */
  watchX509Context(onUpdate: (ctx: X509Context) => void): Watch {
    return this.watch("FetchX509SVID", (m) => onUpdate(toX509Context(decodeX509SvidResponse(m))));
  }

  fetchX509Context(): Promise<X509Context> {
    return this.first((cb) => this.watchX509Context(cb));
  }

  watchX509Bundles(onUpdate: (bundles: Map<string, X509Bundle>) => void): Watch {
    return this.watch("FetchX509Bundles", (m) => onUpdate(toX509Bundles(decodeX509BundlesResponse(m))));
  }

  fetchX509Bundles(): Promise<Map<string, X509Bundle>> {
    return this.first((cb) => this.watchX509Bundles(cb));
  }

  watchJwtBundles(onUpdate: (bundles: Map<string, JwtBundle>) => void): Watch {
    return this.watch("FetchJWTBundles", (m) => {
      const out = new Map<string, JwtBundle>();
      for (const [key, jwks] of decodeJwtBundlesResponse(m).bundles) {
        const td = parseSpiffeId(key).trustDomain;
        out.set(td, parseJwtBundle(td, jwks));
      }
      onUpdate(out);
    });
  }

  fetchJwtBundles(): Promise<Map<string, JwtBundle>> {
    return this.first((cb) => this.watchJwtBundles(cb));
  }

  /** JWT-SVIDs for an audience: every identity of the caller, or only `spiffeId`. */
  async fetchJwtSvids(audience: string | readonly string[], spiffeId?: string): Promise<JwtSvid[]> {
    const aud = typeof audience === "string" ? [audience] : [...audience];
    const reply = await this.grpc.unary(METHOD("FetchJWTSVID"), encodeJwtSvidRequest(aud, spiffeId), {
      timeoutMs: this.timeoutMs,
    });
    return decodeJwtSvidResponse(reply).map((s) => {
      const { claims } = decodeJwtUnverified(s.svid);
      return {
        spiffeId: s.spiffeId,
        token: s.svid,
        audience: audienceOf(claims),
        expiresAt: typeof claims["exp"] === "number" ? claims["exp"] * 1000 : 0,
        ...(typeof claims["iat"] === "number" ? { issuedAt: claims["iat"] * 1000 } : {}),
        hint: s.hint,
      };
    });
  }

  /** Asks the Workload API to validate a token (the spec's preferred way). */
  async validateJwtSvid(token: string, audience: string): Promise<{ spiffeId: string; claims: Record<string, unknown> }> {
    const reply = await this.grpc.unary(METHOD("ValidateJWTSVID"), encodeValidateJwtSvidRequest(audience, token), {
      timeoutMs: this.timeoutMs,
    });
    return decodeValidateJwtSvidResponse(reply);
  }

  close(): void {
    this.grpc.close();
  }

  private watch(method: string, onMessage: (m: Buffer) => void): Watch {
    const h: StreamHandle = this.grpc.stream(METHOD(method), EMPTY_REQUEST, onMessage);
    return h;
  }

  /** The first message of a stream, then the stream is cancelled. */
  private first<T>(start: (cb: (v: T) => void) => Watch): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let got = false;
      // Also keeps the process alive until the answer arrives (watch streams alone do not).
      const keepAlive = setTimeout(() => {
        if (got) return;
        got = true;
        w.cancel();
        reject(new WorkloadApiError(GrpcCode.DEADLINE_EXCEEDED, `no answer from the Workload API within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      const w = start((v) => {
        if (got) return;
        got = true;
        clearTimeout(keepAlive);
        w.cancel();
        resolve(v);
      });
      w.done.then(
        () => {
          clearTimeout(keepAlive);
          if (!got) reject(new Error("the Workload API ended the stream without a message"));
        },
        (err: unknown) => {
          clearTimeout(keepAlive);
          if (!got) reject(err as Error);
        },
      );
    });
  }
}
