import { HexrError } from "@hexr/core";
import type { S3Client, S3ClientConfig } from "@aws-sdk/client-s3";
import { isKnownTool, KNOWN_CLIENTS } from "./clients.js";
import { defaultIdentity } from "../identity/default.js";
import { ToolCredentialProvider, type ToolCredentialProviderOptions } from "./tool-credentials.js";
import type { ToolCredentials } from "./types.js";

let configured: ToolCredentialProvider | undefined;

/** Sets the provider `hexrTool` uses; returns it. */
export function configureTools(opts: ToolCredentialProviderOptions | ToolCredentialProvider): ToolCredentialProvider {
  configured = opts instanceof ToolCredentialProvider ? opts : new ToolCredentialProvider(opts);
  return configured;
}

/**
 * The provider from the environment: `HEXR_PLATFORM_URL`, `HEXR_CACHE_URL` (Valkey/Redis for L2;
 * absent = L1 only), and JWT-SVIDs from the SPIFFE Workload API (`SPIFFE_ENDPOINT_SOCKET`); the
 * trust domain is the agent's own (or `HEXR_TRUST_DOMAIN`).
 */
export function defaultToolProvider(env: NodeJS.ProcessEnv = process.env): ToolCredentialProvider {
  if (configured) return configured;
  const platformUrl = env["HEXR_PLATFORM_URL"];
  if (!platformUrl) {
    throw new HexrError(
      "credentials.not_configured",
      "hexrTool() needs HEXR_PLATFORM_URL (set by 'hexr run' and 'hexr deploy') or configureTools()",
      {
        kind: "failed_precondition",
      },
    );
  }
  const identity = defaultIdentity();
  configured = new ToolCredentialProvider({
    platformUrl,
    jwtSource: identity,
    trustDomain:
      env["HEXR_TRUST_DOMAIN"] ??
      (async () => {
        await identity.ready();
        return identity.trustDomain;
      }),
    ...(env["HEXR_CACHE_URL"] ? { l2: env["HEXR_CACHE_URL"] } : {}),
  });
  return configured;
}

export interface HexrToolOptions<C = Record<string, unknown>> {
  /** Defaults to the environment's provider. */
  provider?: ToolCredentialProvider;
  /** Extra client configuration for known tools (endpoint, retries). */
  clientConfig?: C;
  /** Return the credentials even for a tool that has a ready client. */
  raw?: boolean;
}

const clients = new WeakMap<ToolCredentialProvider, Map<string, unknown>>();

/**
 * `hexrTool("aws_s3")` → an `S3Client` with short-lived credentials from the platform; other tools →
 * their credentials. Lookups go L1 → L2 → exchange; a second call is answered in-process.
 */
export async function hexrTool(
  name: "aws_s3",
  opts?: HexrToolOptions<Partial<S3ClientConfig>> & { raw?: false },
): Promise<S3Client>;
export async function hexrTool(name: string, opts: HexrToolOptions & { raw: true }): Promise<ToolCredentials>;
export async function hexrTool(name: string, opts?: HexrToolOptions): Promise<unknown>;
export async function hexrTool(name: string, opts: HexrToolOptions = {}): Promise<unknown> {
  const provider = opts.provider ?? defaultToolProvider();
  // Always look up first, so a denial or cloud error surfaces here and not at the first API call.
  const creds = await provider.get(name);
  if (opts.raw || !isKnownTool(name)) return creds;
  let perProvider = clients.get(provider);
  if (!perProvider) clients.set(provider, (perProvider = new Map()));
  if (opts.clientConfig === undefined && perProvider.has(name)) return perProvider.get(name);
  const client = await KNOWN_CLIENTS[name](provider, name, creds, opts.clientConfig as Partial<S3ClientConfig> | undefined);
  if (opts.clientConfig === undefined) perProvider.set(name, client);
  return client;
}
