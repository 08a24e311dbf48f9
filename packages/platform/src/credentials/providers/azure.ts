import type { AzureToolConfig } from "../tools/schema.js";
import { cloudError, type CloudErrorCode } from "./errors.js";
import { httpsAgentFor, parseJsonObject, post, TransportError } from "./http.js";
import type { CloudProvider, IssuedCredentials, ProviderClientOptions } from "./types.js";

const JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/** Entra `AADSTS` codes that say what was wrong with a federated assertion. */
const CODE_BY_AADSTS: Record<number, CloudErrorCode> = {
  70021: "idp_rejected", // no federated identity credential matches the assertion
  700213: "idp_rejected", // ... matches its subject
  700211: "invalid_identity_token", // ... matches its issuer
  700212: "invalid_identity_token", // ... matches its audience
  700024: "expired_token", // assertion outside its valid time range
  700027: "invalid_identity_token", // signature validation failed
  50027: "invalid_identity_token", // malformed JWT
  50166: "invalid_identity_token", // could not reach the issuer's OIDC endpoint
  700016: "cloud_misconfigured", // application not found in the directory
  90002: "cloud_misconfigured", // tenant not found
  900023: "cloud_misconfigured", // tenant id malformed
  70011: "cloud_misconfigured", // invalid scope
};

export function entraErrorCode(status: number, codes: number[]): CloudErrorCode {
  if (status === 429) return "cloud_throttled";
  if (status >= 500) return "cloud_unavailable";
  for (const c of codes) {
    const mapped = CODE_BY_AADSTS[c];
    if (mapped) return mapped;
  }
  return "cloud_error";
}

/** Microsoft Entra client-credentials grant with a federated client assertion (workload identity federation). */
export function createAzureProvider({
  extraCa,
  timeoutMs = 10_000,
  clock = Date.now,
}: ProviderClientOptions = {}): CloudProvider<AzureToolConfig> & {
  close(): void;
} {
  const agent = httpsAgentFor(extraCa);
  return {
    name: "azure",
    tokenAudience: (config) => config.tokenAudience,
    async exchange(config, token, ctx): Promise<IssuedCredentials> {
      const url = `${config.authorityHost.replace(/\/+$/, "")}/${encodeURIComponent(config.tenantId)}/oauth2/v2.0/token`;
      const form = new URLSearchParams({
        client_id: config.clientId,
        scope: config.scope,
        grant_type: "client_credentials",
        client_assertion_type: JWT_BEARER,
        client_assertion: token,
      });
      const started = clock();
      let res;
      try {
        res = await post(url, form.toString(), {
          headers: { "content-type": "application/x-www-form-urlencoded" },
          timeoutMs,
          ...(ctx.signal ? { signal: ctx.signal } : {}),
          ...(agent ? { agent } : {}),
        });
      } catch (err) {
        if (err instanceof TransportError || (err as Error).name === "AbortError") {
          throw cloudError("cloud_unavailable", { provider: "azure", cloudMessage: (err as Error).message, cause: err });
        }
        throw err;
      }
      const json = parseJsonObject(res.body);
      if (res.status !== 200) {
        const codes = Array.isArray(json?.["error_codes"])
          ? (json["error_codes"] as unknown[]).filter((c): c is number => typeof c === "number")
          : [];
        const description = typeof json?.["error_description"] === "string" ? json["error_description"] : undefined;
        const error = typeof json?.["error"] === "string" ? json["error"] : undefined;
        const traceId = typeof json?.["trace_id"] === "string" ? json["trace_id"] : undefined;
        throw cloudError(entraErrorCode(res.status, codes), {
          provider: "azure",
          httpStatus: res.status,
          ...(codes.length ? { cloudCode: `AADSTS${codes[0]}` } : error ? { cloudCode: error } : {}),
          // Entra descriptions end with trace/correlation ids and a timestamp: the first line says it all.
          ...(description ? { cloudMessage: description.split(/\r?\n/)[0]! } : {}),
          ...(traceId ? { requestId: traceId } : {}),
        });
      }
      const accessToken = json?.["access_token"];
      const expiresIn = Number(json?.["expires_in"]);
      if (typeof accessToken !== "string" || accessToken.length === 0 || !(expiresIn > 0)) {
        throw cloudError("cloud_error", {
          provider: "azure",
          httpStatus: res.status,
          cloudMessage: "token endpoint answered without access_token/expires_in",
        });
      }
      const tokenType = typeof json?.["token_type"] === "string" ? json["token_type"] : "Bearer";
      return { provider: "azure", accessToken, tokenType, expiresAt: started + expiresIn * 1000 };
    },
    close() {
      agent?.destroy();
    },
  };
}
