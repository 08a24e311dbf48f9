import { validateTrustDomain } from "@hexr/core";
import { z } from "zod";

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
});
export type PlatformConfig = z.infer<typeof PlatformConfig>;
export type PlatformConfigInput = z.input<typeof PlatformConfig>;
