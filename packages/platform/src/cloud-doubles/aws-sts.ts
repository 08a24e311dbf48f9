import { randomBytes, randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import { listen, parseParams, sendXml, xmlEscape, type RunningDouble } from "./http.js";
import { audiences, OidcVerifier, stringLike, TokenRejected } from "./oidc-verifier.js";
import { SigV4Rejected, verifySigV4, type SessionSecret } from "./sigv4.js";

const NS = "https://sts.amazonaws.com/doc/2011-06-15/";

/** An IAM OIDC identity provider: the issuer URL and the client IDs (`aud`) it accepts. */
export interface AwsOidcProvider {
  url: string;
  clientIds: string[];
}

/** A role and its trust policy for `sts:AssumeRoleWithWebIdentity`. */
export interface AwsRole {
  arn: string;
  trust: {
    /** The `Principal.Federated` provider (issuer URL). */
    provider: string;
    /** `StringLike` conditions on `<provider>:sub`; at least one must match. */
    subjects: string[];
    /** `StringEquals` on `<provider>:aud`; absent = any of the provider's client IDs. */
    audiences?: string[];
  };
  maxSessionDurationSeconds?: number;
}

export interface AwsSession extends SessionSecret {
  accessKeyId: string;
  roleArn: string;
  assumedRoleArn: string;
  assumedRoleId: string;
  subject: string;
}

export interface AwsStsDoubleOptions {
  providers: AwsOidcProvider[];
  roles: AwsRole[];
  accountId?: string;
  clock?: () => number;
}

export interface AwsStsDouble extends RunningDouble {
  /** Credentials this double issued, by access key id (the S3 double verifies signatures with them). */
  session(accessKeyId: string): AwsSession | undefined;
  /** Every AssumeRoleWithWebIdentity answered, with its outcome. */
  readonly calls: Array<{ action: string; outcome: string; subject?: string }>;
  readonly verifier: OidcVerifier;
}

class StsError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly type: "Sender" | "Receiver" = "Sender",
  ) {
    super(message);
  }
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
function awsId(prefix: string, length: number): string {
  let s = prefix;
  for (const b of randomBytes(length)) s += ALNUM[b % ALNUM.length];
  return s;
}

function sendError(res: ServerResponse, err: StsError, requestId: string): void {
  sendXml(
    res,
    err.status,
    `<ErrorResponse xmlns="${NS}">
  <Error>
    <Type>${err.type}</Type>
    <Code>${xmlEscape(err.code)}</Code>
    <Message>${xmlEscape(err.message)}</Message>
  </Error>
  <RequestId>${requestId}</RequestId>
</ErrorResponse>`,
    { "x-amzn-requestid": requestId },
  );
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

/**
 * A local AWS STS speaking the query/XML protocol: `AssumeRoleWithWebIdentity` verifies the token as
 * STS does (registered OIDC provider, audience, discovery + JWKS signature, expiry, the role's trust
 * policy on `sub`) and `GetCallerIdentity` checks SigV4 with the credentials it issued.
 */
export async function startAwsStsDouble(opts: AwsStsDoubleOptions): Promise<AwsStsDouble> {
  const clock = opts.clock ?? Date.now;
  const accountId = opts.accountId ?? "123456789012";
  const verifier = new OidcVerifier({ clock });
  const sessions = new Map<string, AwsSession>();
  const calls: AwsStsDouble["calls"] = [];

  const assume = async (p: Record<string, string>): Promise<string> => {
    const roleArn = p["RoleArn"] ?? "";
    const sessionName = p["RoleSessionName"] ?? "";
    const token = p["WebIdentityToken"] ?? "";
    if (!/^[\w+=,.@-]{2,64}$/.test(sessionName)) {
      throw new StsError(
        400,
        "ValidationError",
        `1 validation error detected: Value '${sessionName}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*`,
      );
    }
    if (token.length < 4 || token.length > 20_000) {
      throw new StsError(
        400,
        "ValidationError",
        "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length between 4 and 20000",
      );
    }
    let peeked;
    try {
      peeked = verifier.peek(token);
    } catch {
      throw new StsError(
        400,
        "InvalidIdentityToken",
        "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)",
      );
    }
    const iss = String(peeked.claims.iss ?? "");
    const provider = opts.providers.find((x) => x.url === iss);
    if (!provider) throw new StsError(400, "InvalidIdentityToken", `No OpenIDConnect provider found in your account for ${iss}`);
    const auds = audiences(peeked.claims);
    if (!auds.some((a) => provider.clientIds.includes(a)))
      throw new StsError(400, "InvalidIdentityToken", "Incorrect token audience");

    let claims;
    try {
      claims = await verifier.verify(token, iss);
    } catch (err) {
      if (!(err instanceof TokenRejected)) throw err;
      if (err.reason === "expired") {
        const exp = typeof peeked.claims.exp === "number" ? iso(peeked.claims.exp * 1000) : "?";
        throw new StsError(
          400,
          "ExpiredTokenException",
          `Token expired: current date/time ${iso(clock())} must be before the expiration date/time ${exp}`,
        );
      }
      if (err.reason === "discovery_failed" || err.reason === "issuer_mismatch") {
        throw new StsError(
          400,
          "IDPCommunicationError",
          "Couldn't retrieve verification key from your identity provider, please reference AssumeRoleWithWebIdentity documentation for requirements",
        );
      }
      throw new StsError(
        400,
        "InvalidIdentityToken",
        "The web identity token that was passed could not be validated by AWS. Get a new identity token from the identity provider and then retry the request.",
      );
    }

    const sub = String(claims.sub);
    const role = opts.roles.find((r) => r.arn === roleArn);
    const trusted =
      role !== undefined &&
      role.trust.provider === iss &&
      role.trust.subjects.some((pattern) => stringLike(pattern, sub)) &&
      (role.trust.audiences === undefined || audiences(claims).some((a) => role.trust.audiences!.includes(a)));
    if (!role || !trusted) throw new StsError(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity");

    const duration = p["DurationSeconds"] === undefined ? 3600 : Number(p["DurationSeconds"]);
    if (!Number.isInteger(duration) || duration < 900) {
      throw new StsError(
        400,
        "ValidationError",
        "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900",
      );
    }
    if (duration > (role.maxSessionDurationSeconds ?? 3600)) {
      throw new StsError(
        400,
        "ValidationError",
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
      );
    }

    const roleName = roleArn.split("/").pop()!;
    const roleAccount = roleArn.split(":")[4] ?? accountId;
    const roleId = awsId("AROA", 17);
    const session: AwsSession = {
      accessKeyId: awsId("ASIA", 16),
      secretAccessKey: randomBytes(30).toString("base64"),
      sessionToken: randomBytes(256).toString("base64"),
      expiresAt: clock() + duration * 1000,
      roleArn,
      assumedRoleArn: `arn:aws:sts::${roleAccount}:assumed-role/${roleName}/${sessionName}`,
      assumedRoleId: `${roleId}:${sessionName}`,
      subject: sub,
    };
    sessions.set(session.accessKeyId, session);
    calls.push({ action: "AssumeRoleWithWebIdentity", outcome: "ok", subject: sub });
    const providerArn = `arn:aws:iam::${accountId}:oidc-provider/${iss.replace(/^https?:\/\//, "")}`;
    return `<AssumeRoleWithWebIdentityResponse xmlns="${NS}">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>${xmlEscape(sub)}</SubjectFromWebIdentityToken>
    <Audience>${xmlEscape(auds[0] ?? "")}</Audience>
    <AssumedRoleUser>
      <Arn>${xmlEscape(session.assumedRoleArn)}</Arn>
      <AssumedRoleId>${xmlEscape(session.assumedRoleId)}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>${session.sessionToken}</SessionToken>
      <SecretAccessKey>${session.secretAccessKey}</SecretAccessKey>
      <Expiration>${iso(session.expiresAt)}</Expiration>
      <AccessKeyId>${session.accessKeyId}</AccessKeyId>
    </Credentials>
    <Provider>${xmlEscape(providerArn)}</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>${randomUUID()}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>`;
  };

  const running = await listen(async (req, body, res) => {
    const requestId = randomUUID();
    const params =
      req.method === "POST" ? parseParams(req, body) : Object.fromEntries(new URL(req.url ?? "/", "http://x").searchParams);
    const action = params["Action"] ?? "";
    try {
      if (params["Version"] !== "2011-06-15")
        throw new StsError(400, "InvalidAction", "Could not find operation for version " + String(params["Version"]));
      if (action === "AssumeRoleWithWebIdentity") {
        // The token is the credential: STS ignores any signature on this call.
        sendXml(res, 200, await assume(params), { "x-amzn-requestid": requestId });
        return;
      }
      if (action === "GetCallerIdentity") {
        let verified;
        try {
          verified = verifySigV4(req, body, { lookup: (id) => sessions.get(id), now: clock(), service: "sts" });
        } catch (err) {
          if (!(err instanceof SigV4Rejected)) throw err;
          const code = err.code === "InvalidAccessKeyId" || err.code === "InvalidToken" ? "InvalidClientTokenId" : err.code;
          const message =
            code === "InvalidClientTokenId" ? "The security token included in the request is invalid." : err.message;
          throw new StsError(err.code === "ExpiredToken" ? 400 : 403, code, message);
        }
        const s = sessions.get(verified.accessKeyId)!;
        sendXml(
          res,
          200,
          `<GetCallerIdentityResponse xmlns="${NS}">
  <GetCallerIdentityResult>
    <Arn>${xmlEscape(s.assumedRoleArn)}</Arn>
    <UserId>${xmlEscape(s.assumedRoleId)}</UserId>
    <Account>${s.roleArn.split(":")[4] ?? accountId}</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>${requestId}</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>`,
          { "x-amzn-requestid": requestId },
        );
        return;
      }
      throw new StsError(400, "InvalidAction", `Could not find operation ${action} for version 2011-06-15`);
    } catch (err) {
      if (!(err instanceof StsError)) throw err;
      if (action === "AssumeRoleWithWebIdentity") calls.push({ action, outcome: err.code });
      sendError(res, err, requestId);
    }
  });

  return { ...running, session: (id) => sessions.get(id), calls, verifier };
}
