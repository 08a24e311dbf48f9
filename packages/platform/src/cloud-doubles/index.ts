/**
 * Local stand-ins for the cloud token services the credential injector calls (AWS STS + S3, Google
 * STS + IAM Credentials + Cloud Storage, Microsoft Entra). They speak each cloud's wire format and
 * verify federated tokens the way the cloud does. For tests and benchmarks only: not exported by
 * the package root.
 */
export * from "./aws-sts.js";
export * from "./s3.js";
export * from "./gcp-sts.js";
export * from "./azure-entra.js";
export * from "./oidc-verifier.js";
export * from "./sigv4.js";
export * from "./tls.js";
export type { RunningDouble } from "./http.js";
