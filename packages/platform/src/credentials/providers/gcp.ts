import type { GcpToolConfig } from "../tools/schema.js";
import { cloudError, type CloudErrorCode } from "./errors.js";
import { httpsAgentFor, parseJsonObject, post, TransportError, type HttpResponse } from "./http.js";
import type { CloudProvider, IssuedCredentials, ProviderClientOptions } from "./types.js";

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";

/** GCP accepts tokens whose `aud` is `https:` + the provider's resource name unless configured otherwise. */
export function gcpTokenAudience(config: GcpToolConfig): string {
  return config.tokenAudience ?? `https:${config.audience}`;
}

/** RFC 6749 §5.2 error codes as Google STS uses them. */
function stsErrorCode(status: number, error: string | undefined, description: string | undefined): CloudErrorCode {
  if (status === 429) return "cloud_throttled";
  if (status >= 500) return "cloud_unavailable";
  switch (error) {
    case "invalid_grant":
      return /expired|stale/i.test(description ?? "") ? "expired_token" : "invalid_identity_token";
    case "unauthorized_client":
    case "access_denied":
      return "idp_rejected";
    case "invalid_target":
    case "invalid_request":
    case "invalid_scope":
    case "unsupported_grant_type":
      return "cloud_misconfigured";
    default:
      return "cloud_error";
  }
}

/** Google API errors (`{error: {code, message, status}}`) from the IAM Credentials API. */
function iamErrorCode(status: number, apiStatus: string | undefined): CloudErrorCode {
  if (status === 429 || apiStatus === "RESOURCE_EXHAUSTED") return "cloud_throttled";
  if (status >= 500) return "cloud_unavailable";
  if (status === 403 || apiStatus === "PERMISSION_DENIED") return "idp_rejected";
  if (status === 401 || apiStatus === "UNAUTHENTICATED") return "invalid_identity_token";
  if (status === 404 || status === 400) return "cloud_misconfigured";
  return "cloud_error";
}

function requestId(res: HttpResponse): string | undefined {
  const id = res.headers["x-request-id"] ?? res.headers["x-guploader-uploadid"];
  return typeof id === "string" ? id : undefined;
}

/**
 * GCP workload identity federation: RFC 8693 token exchange at Google STS, then (optionally)
 * `generateAccessToken` on the service account with the federated token.
 */
export function createGcpProvider({
  extraCa,
  timeoutMs = 10_000,
  clock = Date.now,
}: ProviderClientOptions = {}): CloudProvider<GcpToolConfig> & {
  close(): void;
} {
  const agent = httpsAgentFor(extraCa);
  const send = async (url: string, body: string, headers: Record<string, string>, signal?: AbortSignal) => {
    try {
      return await post(url, body, { headers, timeoutMs, ...(signal ? { signal } : {}), ...(agent ? { agent } : {}) });
    } catch (err) {
      if (err instanceof TransportError || (err as Error).name === "AbortError") {
        throw cloudError("cloud_unavailable", { provider: "gcp", cloudMessage: (err as Error).message, cause: err });
      }
      throw err;
    }
  };

  return {
    name: "gcp",
    tokenAudience: gcpTokenAudience,
    async exchange(config, token, ctx): Promise<IssuedCredentials> {
      const form = new URLSearchParams({
        grant_type: TOKEN_EXCHANGE,
        audience: config.audience,
        scope: config.scope,
        requested_token_type: ACCESS_TOKEN_TYPE,
        subject_token: token,
        subject_token_type: JWT_TYPE,
      });
      const started = clock();
      const res = await send(
        config.tokenUrl,
        form.toString(),
        { "content-type": "application/x-www-form-urlencoded" },
        ctx.signal,
      );
      const json = parseJsonObject(res.body);
      if (res.status !== 200) {
        const error = typeof json?.["error"] === "string" ? json["error"] : undefined;
        const description = typeof json?.["error_description"] === "string" ? json["error_description"] : undefined;
        throw cloudError(stsErrorCode(res.status, error, description), {
          provider: "gcp",
          httpStatus: res.status,
          ...(error ? { cloudCode: error } : {}),
          ...(description ? { cloudMessage: description } : {}),
          ...(requestId(res) ? { requestId: requestId(res)! } : {}),
        });
      }
      const accessToken = json?.["access_token"];
      const expiresIn = json?.["expires_in"];
      // Without a lifetime we cannot know when to stop serving the token: guessing one could hand out dead credentials.
      if (
        typeof accessToken !== "string" ||
        accessToken.length === 0 ||
        typeof expiresIn !== "number" ||
        !Number.isFinite(expiresIn) ||
        expiresIn <= 0
      ) {
        throw cloudError("cloud_error", {
          provider: "gcp",
          httpStatus: res.status,
          cloudMessage: "STS answered without access_token/expires_in",
        });
      }
      const federatedExpiry = started + expiresIn * 1000;
      if (!config.serviceAccount) {
        return { provider: "gcp", accessToken, tokenType: "Bearer", expiresAt: federatedExpiry };
      }

      const url = `${config.iamCredentialsUrl.replace(/\/+$/, "")}/v1/projects/-/serviceAccounts/${encodeURIComponent(config.serviceAccount)}:generateAccessToken`;
      const body = JSON.stringify({ scope: [config.scope], lifetime: `${config.lifetimeSeconds}s` });
      const imp = await send(
        url,
        body,
        { "content-type": "application/json", authorization: `Bearer ${accessToken}` },
        ctx.signal,
      );
      const ij = parseJsonObject(imp.body);
      if (imp.status !== 200) {
        const e = (ij?.["error"] ?? {}) as { message?: unknown; status?: unknown };
        const apiStatus = typeof e.status === "string" ? e.status : undefined;
        throw cloudError(iamErrorCode(imp.status, apiStatus), {
          provider: "gcp",
          httpStatus: imp.status,
          ...(apiStatus ? { cloudCode: apiStatus } : {}),
          ...(typeof e.message === "string" ? { cloudMessage: e.message } : {}),
        });
      }
      const saToken = ij?.["accessToken"];
      const expireTime = typeof ij?.["expireTime"] === "string" ? Date.parse(ij["expireTime"]) : NaN;
      if (typeof saToken !== "string" || saToken.length === 0 || Number.isNaN(expireTime)) {
        throw cloudError("cloud_error", {
          provider: "gcp",
          httpStatus: imp.status,
          cloudMessage: "generateAccessToken answered without a token",
        });
      }
      return {
        provider: "gcp",
        accessToken: saToken,
        tokenType: "Bearer",
        expiresAt: expireTime,
        serviceAccount: config.serviceAccount,
      };
    },
    close() {
      agent?.destroy();
    },
  };
}
