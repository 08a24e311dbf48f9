import { randomBytes } from "node:crypto";
import type { ServerResponse } from "node:http";
import { listen, parseParams, sendJson, type RunningDouble } from "./http.js";
import { audiences, OidcVerifier, stringLike, TokenRejected } from "./oidc-verifier.js";

/** A workload identity pool provider (OIDC). */
export interface GcpPoolProvider {
  /** `//iam.googleapis.com/projects/<n>/locations/global/workloadIdentityPools/<pool>/providers/<id>`: what STS expects as `audience`. */
  name: string;
  issuerUri: string;
  /** Accepted token `aud` values; GCP's default is `https:` + the provider name. */
  allowedAudiences?: string[];
  /** The attribute condition, as `StringLike` patterns on `google.subject` (= `assertion.sub`); absent = none. */
  subjectCondition?: string[];
}

/** A service account and who holds `roles/iam.workloadIdentityUser` on it (federated subjects, `StringLike`). */
export interface GcpServiceAccount {
  email: string;
  workloadIdentityUsers: string[];
}

export interface GcpStsDoubleOptions {
  providers: GcpPoolProvider[];
  serviceAccounts?: GcpServiceAccount[];
  /** Bucket → principals that may list it (service account emails or federated `principal://` URIs). */
  buckets?: Record<string, string[]>;
  clock?: () => number;
}

interface IssuedToken {
  /** `principal://iam.googleapis.com/<pool>/subject/<sub>` or a service account email. */
  principal: string;
  subject: string;
  expiresAt: number;
}

export interface GcpStsDouble extends RunningDouble {
  readonly calls: Array<{ endpoint: "token" | "generateAccessToken" | "storage"; outcome: string; principal?: string }>;
  /** Who an access token this double issued stands for. */
  tokenInfo(accessToken: string): IssuedToken | undefined;
}

class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    description: string,
  ) {
    super(description);
  }
}

class GoogleApiError extends Error {
  constructor(
    readonly status: number,
    readonly apiStatus: string,
    message: string,
  ) {
    super(message);
  }
}

function sendApiError(res: ServerResponse, err: GoogleApiError): void {
  sendJson(res, err.status, { error: { code: err.status, message: err.message, status: err.apiStatus } });
}

/**
 * Google STS (RFC 8693 token exchange at `/v1/token`), the IAM Credentials API's
 * `generateAccessToken`, and a Cloud Storage object listing that accepts only tokens issued here.
 * Tokens are verified the way workload identity federation does: provider by `audience`, issuer,
 * allowed audiences, discovery + JWKS signature, expiry, then the attribute condition.
 */
export async function startGcpStsDouble(opts: GcpStsDoubleOptions): Promise<GcpStsDouble> {
  const clock = opts.clock ?? Date.now;
  const verifier = new OidcVerifier({ clock });
  const tokens = new Map<string, IssuedToken>();
  const calls: GcpStsDouble["calls"] = [];
  const newToken = (t: IssuedToken) => {
    const token = `ya29.${randomBytes(48).toString("base64url")}`;
    tokens.set(token, t);
    return token;
  };
  const bearer = (header: string | undefined): IssuedToken => {
    const m = /^Bearer (\S+)$/.exec(header ?? "");
    const t = m ? tokens.get(m[1]!) : undefined;
    if (!t || t.expiresAt <= clock()) {
      throw new GoogleApiError(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
      );
    }
    return t;
  };

  const exchange = async (p: Record<string, string>) => {
    if (p["grant_type"] !== "urn:ietf:params:oauth:grant-type:token-exchange") {
      throw new OAuthError(400, "unsupported_grant_type", `Unsupported grant type: ${p["grant_type"] ?? ""}`);
    }
    const subjectType = p["subject_token_type"];
    if (subjectType !== "urn:ietf:params:oauth:token-type:jwt" && subjectType !== "urn:ietf:params:oauth:token-type:id_token") {
      throw new OAuthError(400, "invalid_request", `Invalid value for "subject_token_type": ${subjectType ?? ""}`);
    }
    if (
      p["requested_token_type"] !== undefined &&
      p["requested_token_type"] !== "urn:ietf:params:oauth:token-type:access_token"
    ) {
      throw new OAuthError(400, "invalid_request", `Invalid value for "requested_token_type"`);
    }
    const provider = opts.providers.find((x) => x.name === p["audience"]);
    if (!provider) {
      throw new OAuthError(
        400,
        "invalid_target",
        'The target service indicated by the "audience" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn\'t exist.',
      );
    }
    const token = p["subject_token"] ?? "";
    let peeked;
    try {
      peeked = verifier.peek(token);
    } catch {
      throw new OAuthError(400, "invalid_grant", "Unable to parse the ID Token.");
    }
    const iss = String(peeked.claims.iss ?? "");
    if (iss !== provider.issuerUri) {
      throw new OAuthError(
        400,
        "invalid_grant",
        `The issuer in ID Token ${iss} does not match the expected ISSUER ${provider.issuerUri}.`,
      );
    }
    const allowed = provider.allowedAudiences ?? [`https:${provider.name}`];
    const auds = audiences(peeked.claims);
    if (!auds.some((a) => allowed.includes(a))) {
      throw new OAuthError(
        400,
        "invalid_grant",
        `The audience in ID Token [${auds.join(", ")}] does not match the expected audience ${allowed.join(", ")}.`,
      );
    }
    let claims;
    try {
      claims = await verifier.verify(token, iss);
    } catch (err) {
      if (!(err instanceof TokenRejected)) throw err;
      if (err.reason === "expired") throw new OAuthError(400, "invalid_grant", "The ID Token has expired.");
      if (err.reason === "discovery_failed" || err.reason === "issuer_mismatch") {
        throw new OAuthError(400, "invalid_grant", `Unable to retrieve the public keys of issuer ${iss}.`);
      }
      throw new OAuthError(400, "invalid_grant", "Invalid ID Token: the signature could not be verified.");
    }
    const sub = String(claims.sub);
    if (provider.subjectCondition && !provider.subjectCondition.some((pat) => stringLike(pat, sub))) {
      throw new OAuthError(400, "unauthorized_client", "The given credential is rejected by the attribute condition.");
    }
    const pool = provider.name.replace(/^\/\/iam\.googleapis\.com\//, "").replace(/\/providers\/[^/]+$/, "");
    const principal = `principal://iam.googleapis.com/${pool}/subject/${sub}`;
    const expiresIn = 3600;
    const accessToken = newToken({ principal, subject: sub, expiresAt: clock() + expiresIn * 1000 });
    calls.push({ endpoint: "token", outcome: "ok", principal });
    return {
      access_token: accessToken,
      issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
      token_type: "Bearer",
      expires_in: expiresIn,
    };
  };

  const generateAccessToken = (email: string, auth: string | undefined, body: Buffer) => {
    const caller = bearer(auth);
    const sa = (opts.serviceAccounts ?? []).find((s) => s.email === email);
    // GCP does not say whether the account exists to a caller that may not use it.
    if (!sa || !sa.workloadIdentityUsers.some((pat) => stringLike(pat, caller.subject))) {
      throw new GoogleApiError(
        403,
        "PERMISSION_DENIED",
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
      );
    }
    let req: { scope?: unknown; lifetime?: unknown };
    try {
      req = JSON.parse(body.toString("utf8")) as typeof req;
    } catch {
      throw new GoogleApiError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    }
    if (!Array.isArray(req.scope) || req.scope.length === 0) throw new GoogleApiError(400, "INVALID_ARGUMENT", "Scope required.");
    const lm = /^(\d+)s$/.exec(typeof req.lifetime === "string" ? req.lifetime : "3600s");
    const lifetime = lm ? Number(lm[1]) : NaN;
    if (!(lifetime >= 1 && lifetime <= 3600)) {
      throw new GoogleApiError(400, "INVALID_ARGUMENT", "The lifetime must be between 1s and 3600s.");
    }
    const expiresAt = clock() + lifetime * 1000;
    const accessToken = newToken({ principal: sa.email, subject: caller.subject, expiresAt });
    calls.push({ endpoint: "generateAccessToken", outcome: "ok", principal: sa.email });
    return { accessToken, expireTime: new Date(expiresAt).toISOString().replace(/\.\d{3}Z$/, "Z") };
  };

  const running = await listen(async (req, body, res) => {
    const url = new URL(req.url ?? "/", "http://gcp.local");
    try {
      if (req.method === "POST" && url.pathname === "/v1/token") {
        try {
          sendJson(res, 200, await exchange(parseParams(req, body)));
        } catch (err) {
          if (!(err instanceof OAuthError)) throw err;
          calls.push({ endpoint: "token", outcome: err.error });
          sendJson(res, err.status, { error: err.error, error_description: err.message });
        }
        return;
      }
      const gen = /^\/v1\/projects\/-\/serviceAccounts\/([^/:]+):generateAccessToken$/.exec(url.pathname);
      if (req.method === "POST" && gen) {
        sendJson(res, 200, generateAccessToken(decodeURIComponent(gen[1]!), req.headers.authorization, body));
        return;
      }
      const list = /^\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
      if (req.method === "GET" && list) {
        const caller = bearer(req.headers.authorization);
        const readers = opts.buckets?.[decodeURIComponent(list[1]!)];
        if (!readers) throw new GoogleApiError(404, "NOT_FOUND", "The specified bucket does not exist.");
        if (!readers.includes(caller.principal)) {
          throw new GoogleApiError(
            403,
            "PERMISSION_DENIED",
            `${caller.principal} does not have storage.objects.list access to the Google Cloud Storage bucket.`,
          );
        }
        calls.push({ endpoint: "storage", outcome: "ok", principal: caller.principal });
        sendJson(res, 200, { kind: "storage#objects" });
        return;
      }
      throw new GoogleApiError(404, "NOT_FOUND", `no such method ${req.method} ${url.pathname}`);
    } catch (err) {
      if (!(err instanceof GoogleApiError)) throw err;
      calls.push({
        endpoint: url.pathname.includes("generateAccessToken") ? "generateAccessToken" : "storage",
        outcome: err.apiStatus,
      });
      sendApiError(res, err);
    }
  });
  return { ...running, calls, tokenInfo: (t) => tokens.get(t) };
}
