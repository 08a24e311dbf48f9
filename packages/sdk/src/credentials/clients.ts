import { HexrError } from "@hexr/core";
import type { S3Client, S3ClientConfig } from "@aws-sdk/client-s3";
import type { ToolCredentialProvider } from "./tool-credentials.js";
import type { ToolCredentials } from "./types.js";

/** Client factories for tools the SDK knows by name; their SDKs are optional peer dependencies. */
export const KNOWN_CLIENTS = {
  aws_s3: async (
    provider: ToolCredentialProvider,
    tool: string,
    first: ToolCredentials,
    config: Partial<S3ClientConfig> = {},
  ): Promise<S3Client> => {
    if (first.provider !== "aws") {
      throw new HexrError(
        "credentials.provider_mismatch",
        `tool '${tool}' is configured for ${first.provider}, but an S3 client needs aws`,
        {
          kind: "failed_precondition",
        },
      );
    }
    let mod: typeof import("@aws-sdk/client-s3");
    try {
      mod = await import("@aws-sdk/client-s3");
    } catch {
      throw new HexrError(
        "credentials.client_unavailable",
        "hexrTool('aws_s3') returns an S3Client: install @aws-sdk/client-s3 in the agent",
        {
          kind: "failed_precondition",
        },
      );
    }
    return new mod.S3Client({
      region: first.region,
      ...config,
      // The S3Client asks again as expiry nears; the answer comes from the same caches.
      credentials: async () => {
        const c = await provider.get(tool);
        if (c.provider !== "aws")
          throw new HexrError("credentials.provider_mismatch", `tool '${tool}' is no longer an aws tool`, {
            kind: "failed_precondition",
          });
        return {
          accessKeyId: c.accessKeyId,
          secretAccessKey: c.secretAccessKey,
          sessionToken: c.sessionToken,
          expiration: new Date(c.expiresAt),
        };
      },
    });
  },
} as const;

export type KnownTool = keyof typeof KNOWN_CLIENTS;

export function isKnownTool(name: string): name is KnownTool {
  return Object.prototype.hasOwnProperty.call(KNOWN_CLIENTS, name);
}
