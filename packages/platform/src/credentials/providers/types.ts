import type { ProviderName } from "../tools/schema.js";

/** Short-lived cloud credentials as the exchange returns them; `expiresAt` in epoch ms. */
export type IssuedCredentials =
  | {
      provider: "aws";
      accessKeyId: string;
      secretAccessKey: string;
      sessionToken: string;
      expiresAt: number;
      region: string;
      assumedRoleArn?: string;
    }
  | { provider: "gcp"; accessToken: string; tokenType: string; expiresAt: number; serviceAccount?: string }
  | { provider: "azure"; accessToken: string; tokenType: string; expiresAt: number };

export interface ExchangeContext {
  /** The caller's SPIFFE ID (the `sub` of the token). */
  spiffeId: string;
  /** A name the cloud records in its audit log (AWS RoleSessionName). */
  sessionName: string;
  signal?: AbortSignal;
}

/** One cloud: which audience its token needs, and how to trade that token for credentials. */
export interface CloudProvider<C> {
  readonly name: ProviderName;
  tokenAudience(config: C): string;
  /** Throws a `credentials.*` HexrError (see errors.ts) on any failure. */
  exchange(config: C, token: string, ctx: ExchangeContext): Promise<IssuedCredentials>;
}

/** Options every provider client takes. */
export interface ProviderClientOptions {
  /** Extra PEM CA certificates trusted for cloud endpoints, besides the system roots. */
  extraCa?: string[];
  /** Per-request timeout. */
  timeoutMs?: number;
  clock?: () => number;
}
