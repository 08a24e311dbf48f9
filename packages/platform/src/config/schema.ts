import { validateTrustDomain } from "@hexr/core";
import { z } from "zod";
import { SandboxConfig } from "../sandbox/config.js";
import { TelemetryConfig } from "../telemetry/config.js";

export const LogLevel = z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]);

export const PlatformConfig = z.strictObject({
  /** Where the platform keeps its state: database, keys, sockets, platform.json. */
  dataDir: z.string().min(1),
  host: z.string().min(1).default("127.0.0.1"),
  port: z.number().int().min(0).max(65535).default(7420),
  /** `postgres://...` selects PostgreSQL; absent = SQLite in the data dir. */
  databaseUrl: z
    .string()
    .regex(/^(postgres(ql)?:\/\/|sqlite:)/, "must start with postgres://, postgresql:// or sqlite:")
    .optional(),
  trustDomain: z
    .string()
    .default("hexr.local")
    .refine(
      (v) => {
        try {
          validateTrustDomain(v);
          return true;
        } catch {
          return false;
        }
      },
      { message: "must be lowercase letters, digits, '.', '-' or '_'" },
    ),
  /** URL clients and clouds use to reach the platform (OIDC issuer); defaults to http://host:port. */
  publicUrl: z.url().optional(),
  log: z
    .strictObject({
      level: LogLevel.default("info"),
      format: z.enum(["auto", "pretty", "json"]).default("auto"),
    })
    .prefault({}),
  http: z
    .strictObject({
      bodyLimitBytes: z
        .number()
        .int()
        .min(1024)
        .max(512 * 1024 * 1024)
        .default(1024 * 1024),
      shutdownTimeoutMs: z.number().int().min(0).max(600_000).default(10_000),
    })
    .prefault({}),
  /** The SPIFFE authority (see platform/src/identity). */
  identity: z
    .strictObject({
      x509SvidTtlSeconds: z.number().int().min(1).max(86_400).default(3600),
      jwtSvidTtlSeconds: z.number().int().min(1).max(86_400).default(300),
      maxSvidTtlSeconds: z
        .number()
        .int()
        .min(60)
        .max(30 * 86_400)
        .default(86_400),
      /** Lifetime of an intermediate CA + JWT key; rotated at half life, activated at 5/6. */
      caTtlSeconds: z
        .number()
        .int()
        .min(120)
        .max(365 * 86_400)
        .default(7 * 86_400),
      rootCaTtlSeconds: z
        .number()
        .int()
        .min(240)
        .max(20 * 365 * 86_400)
        .default(365 * 86_400),
      bundleRefreshHintSeconds: z.number().int().min(1).max(86_400).default(300),
      jwtLeewaySeconds: z.number().int().min(0).max(300).default(30),
      /** How often the authority checks whether a rotation step is due. */
      rotationCheckSeconds: z.number().int().min(1).max(3600).default(30),
    })
    .prefault({})
    .superRefine((v, ctx) => {
      if (v.x509SvidTtlSeconds > v.maxSvidTtlSeconds)
        ctx.addIssue({ code: "custom", path: ["x509SvidTtlSeconds"], message: "must not exceed identity.maxSvidTtlSeconds" });
      if (v.jwtSvidTtlSeconds > v.maxSvidTtlSeconds)
        ctx.addIssue({ code: "custom", path: ["jwtSvidTtlSeconds"], message: "must not exceed identity.maxSvidTtlSeconds" });
      if (v.caTtlSeconds < 2 * Math.max(v.x509SvidTtlSeconds, v.jwtSvidTtlSeconds)) {
        ctx.addIssue({ code: "custom", path: ["caTtlSeconds"], message: "must be at least twice the default SVID TTLs" });
      }
      if (v.rootCaTtlSeconds < 2 * v.caTtlSeconds)
        ctx.addIssue({ code: "custom", path: ["rootCaTtlSeconds"], message: "must be at least twice identity.caTtlSeconds" });
    }),
  /** The credential injector (see platform/src/credentials). */
  credentials: z
    .strictObject({
      /** PEM bundle of extra CAs trusted for cloud token endpoints (private endpoints, test doubles). */
      extraCaFile: z.string().min(1).optional(),
      /** Per-call timeout towards a cloud's STS. */
      timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
      /** Lifetime of the JWT-SVID handed to a cloud; it is used once, right away. */
      cloudTokenTtlSeconds: z.number().int().min(30).max(3600).default(300),
    })
    .prefault({}),
  /** The policy engine and decision log (see platform/src/policy, docs/policy.md). */
  policy: z
    .strictObject({
      /** `cedar`: embedded, with tenant policies managed by Hexr; `opa`: an external OPA server's REST Data API. */
      engine: z.enum(["cedar", "opa"]).default("cedar"),
      opa: z
        .strictObject({
          url: z.url(),
          /** Rule path under `data`: `POST /v1/data/<path>`. */
          path: z
            .string()
            .regex(/^[A-Za-z0-9_]+(\/[A-Za-z0-9_]+)*$/, "must be slash-separated rule names, e.g. hexr/authz")
            .default("hexr/authz"),
          timeoutMs: z.number().int().min(50).max(60_000).default(2_000),
        })
        .optional(),
      decisionLogRetentionDays: z.number().int().min(1).max(3650).default(30),
    })
    .prefault({})
    .superRefine((v, ctx) => {
      if (v.engine === "opa" && !v.opa)
        ctx.addIssue({ code: "custom", path: ["opa"], message: "is required when policy.engine is 'opa'" });
    }),
  /** Code execution in isolation (see platform/src/sandbox). */
  sandbox: SandboxConfig.prefault({}),
  /** The OTLP receiver, trace store and Prometheus metrics (see platform/src/telemetry). */
  telemetry: TelemetryConfig.prefault({}),
});
export type PlatformConfig = z.infer<typeof PlatformConfig>;
export type PlatformConfigInput = z.input<typeof PlatformConfig>;
