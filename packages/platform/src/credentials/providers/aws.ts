import { AssumeRoleWithWebIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import type { AwsToolConfig } from "../tools/schema.js";
import { cloudError, type CloudErrorCode } from "./errors.js";
import { httpsAgentFor } from "./http.js";
import type { CloudProvider, IssuedCredentials, ProviderClientOptions } from "./types.js";

const CODE_BY_AWS_ERROR: Record<string, CloudErrorCode> = {
  InvalidIdentityToken: "invalid_identity_token",
  IDPCommunicationError: "invalid_identity_token",
  ExpiredToken: "expired_token",
  IDPRejectedClaim: "idp_rejected",
  // What STS answers when the role's trust policy conditions (sub, aud) do not match.
  AccessDenied: "idp_rejected",
  MalformedPolicyDocument: "cloud_misconfigured",
  PackedPolicyTooLarge: "cloud_misconfigured",
  RegionDisabled: "cloud_misconfigured",
  ValidationError: "cloud_misconfigured",
  InvalidParameterValue: "cloud_misconfigured",
  Throttling: "cloud_throttled",
  RequestLimitExceeded: "cloud_throttled",
};

interface AwsSdkError {
  name?: string;
  message?: string;
  $fault?: "client" | "server";
  $metadata?: { httpStatusCode?: number; requestId?: string };
}

/** Maps an error thrown by @aws-sdk/client-sts to a typed `credentials.*` error. */
export function mapAwsError(err: unknown): Error {
  const e = (err ?? {}) as AwsSdkError;
  const status = e.$metadata?.httpStatusCode;
  const awsCode = (e.name ?? "").replace(/Exception$/, "");
  const info = {
    provider: "aws" as const,
    ...(awsCode ? { cloudCode: awsCode } : {}),
    ...(e.message ? { cloudMessage: e.message } : {}),
    ...(status ? { httpStatus: status } : {}),
    ...(e.$metadata?.requestId ? { requestId: e.$metadata.requestId } : {}),
    cause: err,
  };
  if (status === undefined) return cloudError("cloud_unavailable", info);
  const code = CODE_BY_AWS_ERROR[awsCode];
  if (code) return cloudError(code, info);
  if (status >= 500 || e.$fault === "server") return cloudError("cloud_unavailable", info);
  return cloudError("cloud_error", info);
}

/** AWS RoleSessionName: 2-64 of `[\w+=,.@-]`; it shows in CloudTrail, so it names the agent. */
export function roleSessionName(name: string): string {
  const clean = name.replace(/[^\w+=,.@-]/g, "-").slice(0, 64);
  return clean.length >= 2 ? clean : `hexr-${clean}`;
}

/** AWS STS AssumeRoleWithWebIdentity through the official SDK (unsigned call: the token is the credential). */
export function createAwsProvider({ extraCa, timeoutMs = 10_000 }: ProviderClientOptions = {}): CloudProvider<AwsToolConfig> & {
  close(): void;
} {
  const clients = new Map<string, STSClient>();
  const httpsAgent = httpsAgentFor(extraCa);
  const clientFor = (config: AwsToolConfig): STSClient => {
    const key = `${config.region}|${config.stsEndpoint ?? ""}`;
    let client = clients.get(key);
    if (!client) {
      client = new STSClient({
        region: config.region,
        ...(config.stsEndpoint ? { endpoint: config.stsEndpoint } : {}),
        // Rejections are final; one retry covers a dropped connection.
        maxAttempts: 2,
        requestHandler: { requestTimeout: timeoutMs, connectionTimeout: timeoutMs, ...(httpsAgent ? { httpsAgent } : {}) },
      });
      clients.set(key, client);
    }
    return client;
  };
  return {
    name: "aws",
    tokenAudience: (config) => config.tokenAudience,
    async exchange(config, token, ctx): Promise<IssuedCredentials> {
      let out;
      try {
        out = await clientFor(config).send(
          new AssumeRoleWithWebIdentityCommand({
            RoleArn: config.roleArn,
            RoleSessionName: roleSessionName(ctx.sessionName),
            WebIdentityToken: token,
            DurationSeconds: config.sessionDurationSeconds,
          }),
          ctx.signal ? { abortSignal: ctx.signal } : {},
        );
      } catch (err) {
        throw mapAwsError(err);
      }
      const c = out.Credentials;
      if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) {
        throw cloudError("cloud_error", { provider: "aws", cloudMessage: "AssumeRoleWithWebIdentity returned no credentials" });
      }
      return {
        provider: "aws",
        accessKeyId: c.AccessKeyId,
        secretAccessKey: c.SecretAccessKey,
        sessionToken: c.SessionToken,
        expiresAt: c.Expiration.getTime(),
        region: config.region,
        ...(out.AssumedRoleUser?.Arn ? { assumedRoleArn: out.AssumedRoleUser.Arn } : {}),
      };
    },
    close() {
      for (const c of clients.values()) c.destroy();
      clients.clear();
      httpsAgent?.destroy();
    },
  };
}
