import { z } from "zod";
import { ToolName } from "../tools/schema.js";

export const ExchangeRequest = z.strictObject({ tool: ToolName });
export type ExchangeRequest = z.infer<typeof ExchangeRequest>;

const iso = z.string().describe("RFC 3339");

export const WireCredentials = z.discriminatedUnion("provider", [
  z.object({
    provider: z.literal("aws"),
    accessKeyId: z.string(),
    secretAccessKey: z.string(),
    sessionToken: z.string(),
    region: z.string(),
    assumedRoleArn: z.string().optional(),
    expiresAt: iso,
  }),
  z.object({
    provider: z.literal("gcp"),
    accessToken: z.string(),
    tokenType: z.string(),
    serviceAccount: z.string().optional(),
    expiresAt: iso,
  }),
  z.object({ provider: z.literal("azure"), accessToken: z.string(), tokenType: z.string(), expiresAt: iso }),
]);
export type WireCredentials = z.infer<typeof WireCredentials>;

export const CacheKey = z.object({
  id: z.string().describe("derivation version; entries sealed under another id are ignored"),
  key: z.string().describe("base64 AES-256 key for sealing this identity's L2 cache entries"),
});

export const ExchangeResponse = z.object({
  tool: ToolName,
  spiffeId: z.string(),
  expiresAt: iso,
  credentials: WireCredentials,
  cacheKey: CacheKey,
});
export type ExchangeResponse = z.infer<typeof ExchangeResponse>;

export const CacheKeyResponse = z.object({ spiffeId: z.string(), cacheKey: CacheKey });
export type CacheKeyResponse = z.infer<typeof CacheKeyResponse>;
