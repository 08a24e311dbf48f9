import { createHash, randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { AwsStsDouble } from "./aws-sts.js";
import { listen, sendXml, xmlEscape, type RunningDouble } from "./http.js";
import { SigV4Rejected, verifySigV4 } from "./sigv4.js";

export interface S3DoubleOptions {
  /** Whose credentials to accept: the sessions the STS double issued. */
  sts: AwsStsDouble;
  /** Bucket → role ARNs whose sessions may use it (a stand-in for the role's IAM policy). */
  buckets: Record<string, string[]>;
  clock?: () => number;
}

export interface S3Double extends RunningDouble {
  /** Objects stored, `bucket/key` → bytes. */
  readonly objects: Map<string, Buffer>;
}

const S3_STATUS: Record<string, number> = {
  AccessDenied: 403,
  InvalidAccessKeyId: 403,
  InvalidToken: 400,
  ExpiredToken: 400,
  SignatureDoesNotMatch: 403,
  RequestTimeTooSkewed: 403,
  XAmzContentSHA256Mismatch: 400,
  MissingAuthenticationToken: 403,
  IncompleteSignature: 400,
  NotImplemented: 501,
  NoSuchBucket: 404,
  NoSuchKey: 404,
  MethodNotAllowed: 405,
};

function s3Error(res: ServerResponse, code: string, message: string, head: boolean): void {
  const requestId = randomUUID();
  if (head) {
    res.writeHead(S3_STATUS[code] ?? 400, { "x-amz-request-id": requestId });
    res.end();
    return;
  }
  sendXml(
    res,
    S3_STATUS[code] ?? 400,
    `<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message><RequestId>${requestId}</RequestId></Error>`,
    {
      "x-amz-request-id": requestId,
    },
  );
}

/**
 * A tiny path-style S3 (PutObject, GetObject, HeadObject, DeleteObject, ListObjectsV2) that accepts
 * only requests signed with SigV4 by credentials the STS double issued, so a test proves the
 * credentials work the way real S3 would check them.
 */
export async function startS3Double(opts: S3DoubleOptions): Promise<S3Double> {
  const clock = opts.clock ?? Date.now;
  const objects = new Map<string, Buffer>();
  const running = await listen(async (req, body, res) => {
    const head = req.method === "HEAD";
    let accessKeyId: string;
    try {
      accessKeyId = verifySigV4(req, body, { lookup: (id) => opts.sts.session(id), now: clock(), service: "s3" }).accessKeyId;
    } catch (err) {
      if (err instanceof SigV4Rejected) return s3Error(res, err.code, err.message, head);
      throw err;
    }
    const url = new URL(req.url ?? "/", "http://s3.local");
    const [bucket = "", ...rest] = url.pathname.slice(1).split("/");
    const key = rest.map((s) => decodeURIComponent(s)).join("/");
    const allowed = opts.buckets[bucket];
    if (!allowed) return s3Error(res, "NoSuchBucket", "The specified bucket does not exist", head);
    if (!allowed.includes(opts.sts.session(accessKeyId)!.roleArn)) return s3Error(res, "AccessDenied", "Access Denied", head);
    const id = `${bucket}/${key}`;

    if (!key) {
      if (req.method !== "GET" || url.searchParams.get("list-type") !== "2")
        return s3Error(res, "MethodNotAllowed", "only ListObjectsV2 on a bucket", head);
      const prefix = url.searchParams.get("prefix") ?? "";
      const keys = [...objects.keys()].filter((k) => k.startsWith(`${bucket}/${prefix}`)).sort();
      const contents = keys
        .map((k) => {
          const data = objects.get(k)!;
          return `<Contents><Key>${xmlEscape(k.slice(bucket.length + 1))}</Key><Size>${data.length}</Size><ETag>"${createHash("md5").update(data).digest("hex")}"</ETag><StorageClass>STANDARD</StorageClass></Contents>`;
        })
        .join("");
      return sendXml(
        res,
        200,
        `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${xmlEscape(bucket)}</Name><Prefix>${xmlEscape(prefix)}</Prefix><KeyCount>${keys.length}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>${contents}</ListBucketResult>`,
      );
    }
    switch (req.method) {
      case "PUT": {
        objects.set(id, body);
        res.writeHead(200, { etag: `"${createHash("md5").update(body).digest("hex")}"`, "content-length": 0 });
        res.end();
        return;
      }
      case "GET":
      case "HEAD": {
        const data = objects.get(id);
        if (!data) return s3Error(res, "NoSuchKey", "The specified key does not exist.", head);
        res.writeHead(200, {
          "content-type": "application/octet-stream",
          "content-length": data.length,
          etag: `"${createHash("md5").update(data).digest("hex")}"`,
        });
        res.end(head ? undefined : data);
        return;
      }
      case "DELETE":
        objects.delete(id);
        res.writeHead(204);
        res.end();
        return;
      default:
        return s3Error(res, "MethodNotAllowed", `${req.method} is not supported here`, head);
    }
  });
  return { ...running, objects };
}
