import { HexrError, type ErrorKind } from "@hexr/core";
import type { ProviderName } from "../tools/schema.js";

/** The typed outcomes of a failed cloud exchange; codes are `credentials.<code>`. */
export type CloudErrorCode =
  /** The cloud verified the token but its trust configuration refuses this identity (trust policy, attribute condition, no federated credential). */
  | "idp_rejected"
  /** The cloud could not verify the token (unknown issuer, bad signature, wrong audience, JWKS unreachable). */
  | "invalid_identity_token"
  | "expired_token"
  /** The tool's cloud-side configuration is wrong (role or service account missing, duration above the maximum). */
  | "cloud_misconfigured"
  | "cloud_throttled"
  | "cloud_unavailable"
  | "cloud_error";

const KIND: Record<CloudErrorCode, ErrorKind> = {
  idp_rejected: "permission_denied",
  invalid_identity_token: "upstream",
  expired_token: "upstream",
  cloud_misconfigured: "failed_precondition",
  cloud_throttled: "unavailable",
  cloud_unavailable: "unavailable",
  cloud_error: "upstream",
};

const SUMMARY: Record<CloudErrorCode, string> = {
  idp_rejected: "refused this identity",
  invalid_identity_token: "rejected the identity token",
  expired_token: "says the identity token has expired",
  cloud_misconfigured: "rejected the tool's configuration",
  cloud_throttled: "is throttling requests",
  cloud_unavailable: "could not be reached",
  cloud_error: "returned an error",
};

const JWT_LIKE = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.?[A-Za-z0-9_-]*/g;

/** Cloud messages are shown to callers: tokens are cut out and the length bounded. */
export function sanitizeCloudMessage(message: string | undefined): string | undefined {
  if (message === undefined) return undefined;
  const clean = message.replace(JWT_LIKE, "[token]").replace(/\s+/g, " ").trim();
  return clean.length > 300 ? `${clean.slice(0, 297)}...` : clean;
}

export interface CloudErrorInfo {
  provider: ProviderName;
  /** The cloud's own error code (`InvalidIdentityToken`, `invalid_grant`, `AADSTS700213`). */
  cloudCode?: string;
  cloudMessage?: string;
  httpStatus?: number;
  requestId?: string;
  cause?: unknown;
}

export function cloudError(code: CloudErrorCode, info: CloudErrorInfo): HexrError {
  const cloudMessage = sanitizeCloudMessage(info.cloudMessage);
  const tail = [info.cloudCode, cloudMessage].filter(Boolean).join(": ");
  return new HexrError(`credentials.${code}`, `${info.provider} ${SUMMARY[code]}${tail ? ` (${tail})` : ""}`, {
    kind: KIND[code],
    cause: info.cause,
    details: {
      provider: info.provider,
      ...(info.cloudCode ? { cloudCode: info.cloudCode } : {}),
      ...(cloudMessage ? { cloudMessage } : {}),
      ...(info.httpStatus ? { cloudStatus: info.httpStatus } : {}),
      ...(info.requestId ? { cloudRequestId: info.requestId } : {}),
    },
  });
}
