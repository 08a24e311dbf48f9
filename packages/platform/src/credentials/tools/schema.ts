import { z } from "zod";

/** Tool names are what agents pass to `hexrTool(name)`: `aws_s3`, `gcs-reports`. */
export const ToolName = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,62}$/, "must be 1-63 lowercase letters, digits, '_' or '-', starting with a letter");
export type ToolName = z.infer<typeof ToolName>;

const httpUrl = (what: string) =>
  z.url({ protocol: /^https?$/, error: `must be an http(s) URL (${what})` }).refine((u) => !/[?#]/.test(u), {
    message: "must not carry a query or fragment",
  });

/**
 * The `aud` of the token handed to a cloud. Never a SPIFFE ID: the platform's services and agents
 * accept JWT-SVIDs addressed to SPIFFE IDs, and a token sent out to a cloud must be useless to them.
 */
const cloudAudience = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((a) => !/^\s*spiffe:/i.test(a), {
      message: "must not be a SPIFFE ID (tokens sent to a cloud must not be accepted by Hexr services or agents)",
    });

export const AWS_DEFAULT_AUDIENCE = "sts.amazonaws.com";
export const AZURE_DEFAULT_AUDIENCE = "api://AzureADTokenExchange";

export const AwsToolConfig = z.strictObject({
  roleArn: z
    .string()
    .regex(
      /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/,
      "must be an IAM role ARN such as arn:aws:iam::123456789012:role/agent",
    ),
  region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/, "must be an AWS region such as us-east-1"),
  /** AssumeRoleWithWebIdentity accepts 900 s up to the role's maximum (at most 12 h). */
  sessionDurationSeconds: z.number().int().min(900).max(43_200).default(900),
  /** Overrides the regional STS endpoint (VPC endpoints, local test doubles). */
  stsEndpoint: httpUrl("STS endpoint").optional(),
  /** The `aud` of the token sent to STS: the client ID registered on the IAM OIDC provider. */
  tokenAudience: cloudAudience(256).default(AWS_DEFAULT_AUDIENCE),
});
export type AwsToolConfig = z.infer<typeof AwsToolConfig>;

const GCP_PROVIDER =
  /^\/\/iam\.googleapis\.com\/projects\/\d+\/locations\/global\/workloadIdentityPools\/[a-z0-9-]{4,32}\/providers\/[a-z0-9-]{4,32}$/;

export const GcpToolConfig = z.strictObject({
  /** The workload identity pool provider, as STS expects it in `audience`. */
  audience: z
    .string()
    .regex(
      GCP_PROVIDER,
      "must be a workload identity pool provider: //iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>",
    ),
  /** Service account to impersonate after the exchange; absent = use the federated token directly. */
  serviceAccount: z.email().optional(),
  tokenUrl: httpUrl("STS token URL").default("https://sts.googleapis.com/v1/token"),
  /** Base of the IAM Credentials API used for impersonation. */
  iamCredentialsUrl: httpUrl("IAM Credentials API").default("https://iamcredentials.googleapis.com"),
  scope: z.string().min(1).max(1024).default("https://www.googleapis.com/auth/cloud-platform"),
  /** The `aud` of the token sent to STS; GCP's default allowed audience is `https:` + the provider name. */
  tokenAudience: cloudAudience(512).optional(),
  lifetimeSeconds: z.number().int().min(600).max(43_200).default(3600),
});
export type GcpToolConfig = z.infer<typeof GcpToolConfig>;

export const AzureToolConfig = z.strictObject({
  /** The Entra directory (tenant) id or domain. */
  tenantId: z.string().regex(/^[A-Za-z0-9.-]{1,100}$/, "must be a directory id (GUID) or domain"),
  clientId: z.guid({ error: "must be the application (client) id, a GUID" }),
  scope: z.string().min(1).max(1024).default("https://management.azure.com/.default"),
  authorityHost: httpUrl("authority host").default("https://login.microsoftonline.com"),
  tokenAudience: cloudAudience(256).default(AZURE_DEFAULT_AUDIENCE),
});
export type AzureToolConfig = z.infer<typeof AzureToolConfig>;

export const ToolSpec = z.discriminatedUnion("provider", [
  z.strictObject({ provider: z.literal("aws"), config: AwsToolConfig }),
  z.strictObject({ provider: z.literal("gcp"), config: GcpToolConfig }),
  z.strictObject({ provider: z.literal("azure"), config: AzureToolConfig }),
]);
export type ToolSpec = z.infer<typeof ToolSpec>;
export type ProviderName = ToolSpec["provider"];

/** `POST /tools` body: the name plus the provider and its config. */
export const CreateToolRequest = z.discriminatedUnion("provider", [
  z.strictObject({ name: ToolName, provider: z.literal("aws"), config: AwsToolConfig }),
  z.strictObject({ name: ToolName, provider: z.literal("gcp"), config: GcpToolConfig }),
  z.strictObject({ name: ToolName, provider: z.literal("azure"), config: AzureToolConfig }),
]);
export type CreateToolRequest = z.input<typeof CreateToolRequest>;

export const Tool = z.object({
  name: ToolName,
  tenant: z.string(),
  provider: z.enum(["aws", "gcp", "azure"]),
  config: z.record(z.string(), z.unknown()),
  createdAt: z.string().describe("RFC 3339"),
  updatedAt: z.string().describe("RFC 3339"),
});
export type Tool = Omit<z.infer<typeof Tool>, "provider" | "config"> & ToolSpec;
