import { VaultClient, type Secret, type SecretInfo, type SecretVersionInfo, type VaultClientOptions } from "./client.js";

export {
  VaultClient,
  jwtSvidTokenProvider,
  vaultAudience,
  type Secret,
  type SecretInfo,
  type SecretVersionInfo,
  type TokenProvider,
  type VaultClientOptions,
} from "./client.js";

let client: VaultClient | undefined;
const current = () => (client ??= new VaultClient());

/**
 * The agent's vault, by identity: `vault.get(name)`, `vault.put(name, value)`, `vault.list(prefix)`.
 * No API key and no environment variable holds a secret: the SDK presents a JWT-SVID for the vault
 * (from the Workload API that `hexr run` provides) and the platform's policies decide.
 */
export const vault = {
  get(name: string, opts?: { version?: number }): Promise<string> {
    return current().get(name, opts);
  },
  getSecret(name: string, opts?: { version?: number }): Promise<Secret> {
    return current().getSecret(name, opts);
  },
  getBytes(name: string, opts?: { version?: number }): Promise<Buffer> {
    return current().getBytes(name, opts);
  },
  put(name: string, value: string | Uint8Array, opts?: { expectedVersion?: number }): Promise<SecretVersionInfo> {
    return current().put(name, value, opts);
  },
  list(prefix?: string, opts?: { includeDeleted?: boolean }): Promise<SecretInfo[]> {
    return current().list(prefix, opts);
  },
  versions(name: string): Promise<SecretVersionInfo[]> {
    return current().versions(name);
  },
  delete(name: string): Promise<void> {
    return current().delete(name);
  },
  /** Replaces the default client (tests, several platforms in one process); returns it. */
  configure(opts: VaultClientOptions | VaultClient): VaultClient {
    client = opts instanceof VaultClient ? opts : new VaultClient(opts);
    return client;
  },
};
