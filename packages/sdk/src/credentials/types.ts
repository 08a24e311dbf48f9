import { HexrError } from "@hexr/core";

/** Short-lived cloud credentials for one tool, as `hexrTool` hands them out; `expiresAt` in epoch ms. */
export type ToolCredentials =
  | {
      tool: string;
      provider: "aws";
      accessKeyId: string;
      secretAccessKey: string;
      sessionToken: string;
      region: string;
      assumedRoleArn?: string;
      expiresAt: number;
    }
  | { tool: string; provider: "gcp"; accessToken: string; tokenType: string; serviceAccount?: string; expiresAt: number }
  | { tool: string; provider: "azure"; accessToken: string; tokenType: string; expiresAt: number };

/** Which tier answered a lookup (the `hexr.cache.tier` span attribute): in-process, Valkey, or the platform's exchange. */
export type CacheTier = "L1" | "L2" | "L3";

/** The per-identity key the platform hands out for sealing L2 entries. */
export interface CacheKey {
  id: string;
  key: Buffer;
}

function bad(what: string): HexrError {
  return new HexrError("credentials.invalid_response", `the platform's exchange response is malformed (${what})`, {
    kind: "upstream",
  });
}

const str = (o: Record<string, unknown>, k: string): string => {
  const v = o[k];
  if (typeof v !== "string" || v.length === 0) throw bad(k);
  return v;
};

/** Validates the `credentials` object of an exchange response (or of a decrypted cache entry). */
export function parseCredentials(tool: string, raw: unknown): ToolCredentials {
  if (typeof raw !== "object" || raw === null) throw bad("credentials");
  const o = raw as Record<string, unknown>;
  const expiresAt = typeof o["expiresAt"] === "number" ? o["expiresAt"] : Date.parse(str(o, "expiresAt"));
  if (!Number.isFinite(expiresAt)) throw bad("expiresAt");
  switch (o["provider"]) {
    case "aws":
      return {
        tool,
        provider: "aws",
        accessKeyId: str(o, "accessKeyId"),
        secretAccessKey: str(o, "secretAccessKey"),
        sessionToken: str(o, "sessionToken"),
        region: str(o, "region"),
        ...(typeof o["assumedRoleArn"] === "string" ? { assumedRoleArn: o["assumedRoleArn"] } : {}),
        expiresAt,
      };
    case "gcp":
      return {
        tool,
        provider: "gcp",
        accessToken: str(o, "accessToken"),
        tokenType: str(o, "tokenType"),
        ...(typeof o["serviceAccount"] === "string" ? { serviceAccount: o["serviceAccount"] } : {}),
        expiresAt,
      };
    case "azure":
      return { tool, provider: "azure", accessToken: str(o, "accessToken"), tokenType: str(o, "tokenType"), expiresAt };
    default:
      throw bad("provider");
  }
}
