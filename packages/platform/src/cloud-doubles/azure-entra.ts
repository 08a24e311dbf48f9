import { randomUUID } from "node:crypto";
import { generateKeyPair, SignJWT } from "jose";
import { listen, parseParams, sendJson, type RunningDouble } from "./http.js";
import { audiences, OidcVerifier, TokenRejected } from "./oidc-verifier.js";

/** A federated identity credential on an app registration: Entra matches issuer and subject exactly. */
export interface FederatedIdentityCredential {
  issuer: string;
  subject: string;
  audiences: string[];
}

export interface EntraApp {
  tenantId: string;
  clientId: string;
  federatedCredentials: FederatedIdentityCredential[];
}

export interface EntraDoubleOptions {
  apps: EntraApp[];
  /** Entra is HTTPS only: the PEM key and certificate the double serves. */
  tls: { key: string; cert: string };
  clock?: () => number;
}

export interface EntraDouble extends RunningDouble {
  readonly calls: Array<{ outcome: string; subject?: string }>;
}

class EntraError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly aadsts: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The Microsoft Entra v2.0 token endpoint for the client-credentials grant with a federated client
 * assertion, over HTTPS: app lookup, federated credential match on issuer, subject and audience,
 * discovery + JWKS signature check and assertion lifetime, with Entra's `AADSTS` error bodies.
 */
export async function startEntraDouble(opts: EntraDoubleOptions): Promise<EntraDouble> {
  const clock = opts.clock ?? Date.now;
  const verifier = new OidcVerifier({ clock });
  const signing = await generateKeyPair("ES256");
  const calls: EntraDouble["calls"] = [];

  const token = async (tenantId: string, p: Record<string, string>) => {
    const tenantApps = opts.apps.filter((a) => a.tenantId === tenantId);
    if (tenantApps.length === 0) {
      throw new EntraError(
        400,
        "invalid_request",
        90002,
        `Tenant '${tenantId}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`,
      );
    }
    if (p["grant_type"] !== "client_credentials") {
      throw new EntraError(
        400,
        "unsupported_grant_type",
        70003,
        `The app requested an unsupported grant type '${p["grant_type"] ?? ""}'.`,
      );
    }
    if (p["client_assertion_type"] !== "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
      throw new EntraError(
        400,
        "invalid_request",
        900144,
        "The request body must contain the following parameter: 'client_assertion_type'.",
      );
    }
    const app = tenantApps.find((a) => a.clientId === p["client_id"]);
    if (!app) {
      throw new EntraError(
        400,
        "unauthorized_client",
        700016,
        `Application with identifier '${p["client_id"] ?? ""}' was not found in the directory '${tenantId}'.`,
      );
    }
    const assertion = p["client_assertion"] ?? "";
    let peeked;
    try {
      peeked = verifier.peek(assertion);
    } catch {
      throw new EntraError(400, "invalid_request", 50027, "JWT token is invalid or is malformed.");
    }
    const iss = String(peeked.claims.iss ?? "");
    const sub = String(peeked.claims.sub ?? "");
    const byIssuer = app.federatedCredentials.filter((f) => f.issuer === iss);
    if (byIssuer.length === 0) {
      throw new EntraError(
        400,
        "invalid_client",
        700211,
        `No matching federated identity record found for presented assertion issuer '${iss}'.`,
      );
    }
    const bySubject = byIssuer.filter((f) => f.subject === sub);
    if (bySubject.length === 0) {
      throw new EntraError(
        400,
        "invalid_client",
        700213,
        `No matching federated identity record found for presented assertion subject '${sub}'. Please note that the matching is done using a case-sensitive comparison.`,
      );
    }
    const auds = audiences(peeked.claims);
    if (!bySubject.some((f) => f.audiences.some((a) => auds.includes(a)))) {
      throw new EntraError(
        400,
        "invalid_client",
        700212,
        `No matching federated identity record found for presented assertion audience '${auds.join(",")}'.`,
      );
    }
    try {
      await verifier.verify(assertion, iss);
    } catch (err) {
      if (!(err instanceof TokenRejected)) throw err;
      if (err.reason === "expired" || err.reason === "not_yet_valid") {
        const exp = typeof peeked.claims.exp === "number" ? new Date(peeked.claims.exp * 1000).toISOString() : "?";
        throw new EntraError(
          400,
          "invalid_client",
          700024,
          `Client assertion is not within its valid time range. Current time: ${new Date(clock()).toISOString()}, expiry time of assertion ${exp}.`,
        );
      }
      if (err.reason === "discovery_failed" || err.reason === "issuer_mismatch") {
        throw new EntraError(400, "invalid_client", 50166, `Request to External OIDC endpoint failed.`);
      }
      throw new EntraError(401, "invalid_client", 700027, "Client assertion failed signature validation.");
    }
    const scope = p["scope"] ?? "";
    if (!scope.endsWith("/.default")) {
      throw new EntraError(
        400,
        "invalid_scope",
        1002012,
        `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
      );
    }
    const expiresIn = 3599;
    const now = Math.floor(clock() / 1000);
    const accessToken = await new SignJWT({ appid: app.clientId, tid: tenantId, roles: [] })
      .setProtectedHeader({ alg: "ES256", typ: "JWT" })
      .setIssuer(`https://sts.windows.net/${tenantId}/`)
      .setAudience(scope.slice(0, -"/.default".length))
      .setSubject(app.clientId)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + expiresIn)
      .sign(signing.privateKey);
    calls.push({ outcome: "ok", subject: sub });
    return { token_type: "Bearer", expires_in: expiresIn, ext_expires_in: expiresIn, access_token: accessToken };
  };

  const running = await listen(async (req, body, res) => {
    const m = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(new URL(req.url ?? "/", "https://login.local").pathname);
    if (req.method !== "POST" || !m) {
      sendJson(res, 404, {
        error: "invalid_request",
        error_description: "AADSTS900561: The endpoint only accepts POST requests.",
      });
      return;
    }
    try {
      sendJson(res, 200, await token(decodeURIComponent(m[1]!), parseParams(req, body)), {
        "cache-control": "no-store, no-cache",
      });
    } catch (err) {
      if (!(err instanceof EntraError)) throw err;
      calls.push({ outcome: `AADSTS${err.aadsts}` });
      const traceId = randomUUID();
      const correlationId = randomUUID();
      const timestamp = new Date(clock())
        .toISOString()
        .replace("T", " ")
        .replace(/\.\d{3}Z$/, "Z");
      sendJson(res, err.status, {
        error: err.error,
        error_description: `AADSTS${err.aadsts}: ${err.message}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlationId}\r\nTimestamp: ${timestamp}`,
        error_codes: [err.aadsts],
        timestamp,
        trace_id: traceId,
        correlation_id: correlationId,
        error_uri: `https://login.microsoftonline.com/error?code=${err.aadsts}`,
      });
    }
  }, opts.tls);
  return { ...running, calls };
}
