import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

/** The outcome names follow the errors S3 and STS return for each failure. */
export type SigV4Failure =
  | "MissingAuthenticationToken"
  | "IncompleteSignature"
  | "InvalidAccessKeyId"
  | "InvalidToken"
  | "ExpiredToken"
  | "RequestTimeTooSkewed"
  | "XAmzContentSHA256Mismatch"
  | "SignatureDoesNotMatch"
  | "NotImplemented";

export class SigV4Rejected extends Error {
  constructor(
    readonly code: SigV4Failure,
    message: string,
  ) {
    super(message);
    this.name = "SigV4Rejected";
  }
}

export interface SessionSecret {
  secretAccessKey: string;
  sessionToken: string;
  expiresAt: number;
}

export interface VerifiedRequest {
  accessKeyId: string;
  region: string;
  service: string;
}

const sha256Hex = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const hmac = (key: Buffer | string, data: string) => createHmac("sha256", key).update(data, "utf8").digest();

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ is %XX (uppercase). */
export function uriEncode(s: string, keepSlash = false): string {
  let out = "";
  for (const byte of Buffer.from(s, "utf8")) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(c) || (keepSlash && c === "/")) out += c;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function canonicalQuery(rawQuery: string): string {
  if (!rawQuery) return "";
  const pairs = rawQuery
    .split("&")
    .filter(Boolean)
    .map((p) => {
      const i = p.indexOf("=");
      const k = decodeURIComponent((i === -1 ? p : p.slice(0, i)).replace(/\+/g, "%20"));
      const v = i === -1 ? "" : decodeURIComponent(p.slice(i + 1).replace(/\+/g, "%20"));
      return [uriEncode(k), uriEncode(v)] as const;
    });
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join("&");
}

/** S3 signs the path as sent; other services sign each segment encoded once more. */
function canonicalUri(rawPath: string, service: string): string {
  if (service === "s3") return rawPath || "/";
  return (
    rawPath
      .split("/")
      .map((seg) => uriEncode(uriEncode(decodeURIComponent(seg))))
      .join("/") || "/"
  );
}

export interface VerifyOptions {
  lookup: (accessKeyId: string) => SessionSecret | undefined;
  now: number;
  /** S3 carries the payload hash in `x-amz-content-sha256`; other services hash the body. */
  service: "s3" | "sts";
}

/**
 * Verifies an AWS Signature Version 4 `Authorization` header the way AWS does: known key, matching
 * session token, unexpired credentials, request time within 15 minutes, payload hash, then the
 * HMAC chain over the canonical request.
 */
export function verifySigV4(req: IncomingMessage, body: Buffer, opts: VerifyOptions): VerifiedRequest {
  const auth = req.headers.authorization;
  if (!auth) throw new SigV4Rejected("MissingAuthenticationToken", "Request is missing Authentication Token");
  const m =
    /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(
      auth,
    );
  if (!m) throw new SigV4Rejected("IncompleteSignature", "Authorization header is not a valid AWS4-HMAC-SHA256 signature");
  const [, accessKeyId, date, region, service, signedHeadersRaw, signature] = m as unknown as string[];
  const secret = opts.lookup(accessKeyId!);
  if (!secret) throw new SigV4Rejected("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.");
  const token = req.headers["x-amz-security-token"];
  if (token !== secret.sessionToken)
    throw new SigV4Rejected("InvalidToken", "The provided token is malformed or otherwise invalid.");
  if (secret.expiresAt <= opts.now) throw new SigV4Rejected("ExpiredToken", "The provided token has expired.");

  const amzDate = String(req.headers["x-amz-date"] ?? "");
  const dm = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!dm || amzDate.slice(0, 8) !== date)
    throw new SigV4Rejected("IncompleteSignature", "x-amz-date is missing or does not match the credential scope");
  const signedAt = Date.UTC(+dm[1]!, +dm[2]! - 1, +dm[3]!, +dm[4]!, +dm[5]!, +dm[6]!);
  if (Math.abs(signedAt - opts.now) > 15 * 60_000) {
    throw new SigV4Rejected("RequestTimeTooSkewed", "The difference between the request time and the current time is too large.");
  }

  const signedHeaders = signedHeadersRaw!.split(";");
  if (!signedHeaders.includes("host")) throw new SigV4Rejected("SignatureDoesNotMatch", "the host header must be signed");
  let payloadHash: string;
  if (opts.service === "s3") {
    const declared = String(req.headers["x-amz-content-sha256"] ?? "");
    if (declared.startsWith("STREAMING-"))
      throw new SigV4Rejected("NotImplemented", "chunked (streaming) payload signing is not supported here");
    if (declared !== "UNSIGNED-PAYLOAD" && declared !== sha256Hex(body)) {
      throw new SigV4Rejected(
        "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
      );
    }
    payloadHash = declared;
  } else {
    payloadHash = sha256Hex(body);
  }

  const url = req.url ?? "/";
  const q = url.indexOf("?");
  const canonicalHeaders = signedHeaders
    .map((h) => {
      const v = req.headers[h];
      const value = (Array.isArray(v) ? v.join(",") : (v ?? "")).trim().replace(/\s+/g, " ");
      return `${h}:${value}\n`;
    })
    .join("");
  const canonicalRequest = [
    req.method ?? "GET",
    canonicalUri(q === -1 ? url : url.slice(0, q), service!),
    canonicalQuery(q === -1 ? "" : url.slice(q + 1)),
    canonicalHeaders,
    signedHeadersRaw,
    payloadHash,
  ].join("\n");
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256Hex(canonicalRequest)].join("\n");
  const kSigning = hmac(hmac(hmac(hmac(`AWS4${secret.secretAccessKey}`, date!), region!), service!), "aws4_request");
  const expected = createHmac("sha256", kSigning).update(stringToSign, "utf8").digest();
  const given = Buffer.from(signature!, "hex");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new SigV4Rejected(
      "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature you provided.",
    );
  }
  return { accessKeyId: accessKeyId!, region: region!, service: service! };
}
