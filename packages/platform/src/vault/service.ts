import { HexrError, isHexrError } from "@hexr/core";
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { z } from "zod";
import type { Principal, TenantScope } from "../auth/principal.js";
import { authorize } from "../policy/authorize.js";
import { BatchWriter, timeOrderedId } from "../policy/batch-writer.js";
import { principalLabel } from "../policy/entities.js";
import type { PolicyDecision, PolicyEngine } from "../policy/types.js";
import { isUniqueViolation } from "../storage/types.js";
import { openSecret, sealSecret } from "./envelope.js";
import type { TenantKeyring } from "./keyring.js";
import type { AuditRow, SecretRow, VaultStore, VersionRow } from "./store.js";

const NAME_MAX = 256;
const NAME_SEGMENT = /^[A-Za-z0-9_.-]+$/;

/** `db/password`, `agents/planner/openai-key`: segments of letters, digits, `.`, `_`, `-`; no `.`/`..`. */
export const SecretName = z
  .string()
  .min(1)
  .max(NAME_MAX)
  .refine((n) => n.split("/").every((s) => NAME_SEGMENT.test(s) && s !== "." && s !== ".."), {
    message: "segments of letters, digits, '.', '_' or '-' separated by '/', without empty, '.' or '..' segments",
  });

export const SecretEncoding = z.enum(["utf8", "base64"]);

export const PutSecretRequest = z.strictObject({
  value: z.string().describe("the secret, as text (utf8) or base64 for binary values"),
  encoding: SecretEncoding.default("utf8"),
  /** Compare-and-set: the current version the caller expects (0 = the secret must not exist). */
  expectedVersion: z.number().int().min(0).optional(),
});
export type PutSecretRequest = z.input<typeof PutSecretRequest>;

export const SecretMeta = z.object({
  name: z.string(),
  currentVersion: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
  deleted: z.boolean(),
});
export type SecretMeta = z.infer<typeof SecretMeta>;

export const VersionMeta = z.object({
  name: z.string(),
  version: z.number().int(),
  encoding: SecretEncoding,
  sizeBytes: z.number().int(),
  createdAt: z.string(),
  createdBy: z.string(),
  destroyed: z.boolean(),
  destroyedAt: z.string().nullable(),
});
export type VersionMeta = z.infer<typeof VersionMeta>;

export const SecretValue = z.object({
  name: z.string(),
  version: z.number().int(),
  value: z.string(),
  encoding: SecretEncoding,
  createdAt: z.string(),
});
export type SecretValue = z.infer<typeof SecretValue>;

export const VaultAuditEntry = z.object({
  id: z.string(),
  at: z.string(),
  principal: z.string(),
  action: z.string(),
  name: z.string(),
  version: z.number().int().nullable(),
  outcome: z.string().describe("ok, denied, or the error code"),
  flagged: z.boolean(),
  policyMode: z.string().nullable(),
  requestId: z.string().nullable(),
});
export type VaultAuditEntry = z.infer<typeof VaultAuditEntry>;

/** Who asks, in which tenant: the tenant comes from the route's TenantScope, never from the body. */
export interface VaultCaller {
  principal: Principal;
  scope: TenantScope;
  requestId?: string;
}

/** A result and the policy decision that let it through (routes turn a `warn` into a header). */
export interface Decided<T> {
  result: T;
  decision: PolicyDecision;
}

export interface VaultServiceOptions {
  store: VaultStore;
  keyring: TenantKeyring;
  policy: PolicyEngine;
  log: Logger;
  /** The vault's SPIFFE ID; a JWT-SVID must carry it as audience. */
  vaultId: string;
  maxValueBytes?: number;
  clock?: () => number;
  random?: (n: number) => Buffer;
}

const iso = (ms: number) => new Date(ms).toISOString();

function toSecretMeta(r: SecretRow): SecretMeta {
  return {
    name: r.name,
    currentVersion: Number(r.current_version),
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
    deleted: r.deleted_at !== null,
  };
}

function toVersionMeta(r: VersionRow): VersionMeta {
  return {
    name: r.name,
    version: Number(r.version),
    encoding: r.encoding,
    sizeBytes: Number(r.size_bytes),
    createdAt: iso(r.created_at),
    createdBy: r.created_by,
    destroyed: r.destroyed_at !== null,
    destroyedAt: r.destroyed_at === null ? null : iso(r.destroyed_at),
  };
}

function secretNotFound(scope: TenantScope, name: string, why = "does not exist"): HexrError {
  return new HexrError("vault.secret_not_found", `secret '${name}' ${why} in tenant '${scope.tenant}'`, { kind: "not_found" });
}

function checkName(name: string): string {
  const r = SecretName.safeParse(name);
  if (!r.success) {
    throw new HexrError("vault.invalid_name", `invalid secret name: ${r.error.issues[0]?.message ?? "bad name"}`, {
      kind: "invalid_argument",
    });
  }
  return r.data;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeValue(value: string, encoding: "utf8" | "base64"): Buffer {
  if (encoding === "utf8") return Buffer.from(value, "utf8");
  if (value.length % 4 !== 0 || !BASE64.test(value)) {
    throw new HexrError("vault.invalid_value", "the value is not valid base64 (standard alphabet, padded)", {
      kind: "invalid_argument",
    });
  }
  return Buffer.from(value, "base64");
}

/**
 * The vault: secrets per tenant with versions, envelope-encrypted, read by SPIFFE identity through the
 * policy engine. Every access is audited (who, which name and version, outcome) — never the value.
 */
export class VaultService {
  private readonly store: VaultStore;
  private readonly keyring: TenantKeyring;
  private readonly policy: PolicyEngine;
  private readonly vaultId: string;
  private readonly maxValueBytes: number;
  private readonly clock: () => number;
  private readonly random: (n: number) => Buffer;
  private readonly auditLog: BatchWriter<AuditRow>;
  private seq = 0;

  constructor({
    store,
    keyring,
    policy,
    log,
    vaultId,
    maxValueBytes = 64 * 1024,
    clock = Date.now,
    random = randomBytes,
  }: VaultServiceOptions) {
    this.store = store;
    this.keyring = keyring;
    this.policy = policy;
    this.vaultId = vaultId;
    this.maxValueBytes = maxValueBytes;
    this.clock = clock;
    this.random = random;
    this.auditLog = new BatchWriter({ name: "vault-audit", log, write: (rows) => this.store.insertAudit(rows) });
  }

  async put(caller: VaultCaller, name: string, input: PutSecretRequest): Promise<Decided<VersionMeta>> {
    checkName(name);
    const parsed = PutSecretRequest.safeParse(input);
    if (!parsed.success) {
      throw new HexrError("vault.invalid_value", `invalid secret: ${parsed.error.issues[0]?.message ?? "bad body"}`, {
        kind: "invalid_argument",
      });
    }
    const value = decodeValue(parsed.data.value, parsed.data.encoding);
    if (value.length > this.maxValueBytes) {
      throw new HexrError(
        "vault.value_too_large",
        `a secret value is at most ${this.maxValueBytes} bytes (got ${value.length})`,
        {
          kind: "payload_too_large",
        },
      );
    }
    return this.audited(
      caller,
      "vault:write",
      name,
      undefined,
      async () => {
        const tenantKey = await this.keyring.key(caller.scope);
        const now = this.clock();
        const by = principalLabel(caller.principal);
        for (let attempt = 0; attempt < 5; attempt++) {
          let written: VersionRow | undefined;
          let version: number | undefined;
          try {
            version = await this.store.writeVersion(
              caller.scope,
              name,
              (v) => {
                const sealed = sealSecret(tenantKey, caller.scope.tenantId, name, v, value, this.random);
                written = {
                  name,
                  version: v,
                  wrapped_data_key: sealed.wrappedDataKey.toString("base64"),
                  ciphertext: sealed.ciphertext.toString("base64"),
                  encoding: parsed.data.encoding,
                  size_bytes: value.length,
                  created_at: now,
                  created_by: by,
                  destroyed_at: null,
                };
                return written;
              },
              now,
              parsed.data.expectedVersion,
            );
          } catch (err) {
            // Two writers raced for the same version number: read again and retry.
            if (isUniqueViolation(err)) continue;
            throw err;
          }
          if (version === undefined) {
            throw new HexrError("vault.version_mismatch", `secret '${name}' is not at version ${parsed.data.expectedVersion}`, {
              kind: "conflict",
            });
          }
          return toVersionMeta(written!);
        }
        throw new HexrError("vault.conflict", `secret '${name}' is being written concurrently; try again`, { kind: "conflict" });
      },
      (meta) => meta.version,
    );
  }

  async get(caller: VaultCaller, name: string, version?: number): Promise<Decided<SecretValue>> {
    checkName(name);
    return this.audited(
      caller,
      "vault:read",
      name,
      version,
      async () => {
        const row = await this.store.read(caller.scope, name, version);
        if (!row)
          throw version === undefined ? secretNotFound(caller.scope, name) : secretNotFound(caller.scope, `${name}@${version}`);
        if (row.deleted_at !== null) throw secretNotFound(caller.scope, name, "was deleted");
        if (row.destroyed_at !== null || row.ciphertext === null || row.wrapped_data_key === null) {
          throw new HexrError("vault.version_destroyed", `version ${row.version} of secret '${name}' was destroyed`, {
            kind: "not_found",
          });
        }
        const tenantKey = await this.keyring.key(caller.scope);
        let plain: Buffer;
        try {
          plain = openSecret(tenantKey, caller.scope.tenantId, name, Number(row.version), {
            wrappedDataKey: Buffer.from(row.wrapped_data_key, "base64"),
            ciphertext: Buffer.from(row.ciphertext, "base64"),
          });
        } catch (err) {
          throw new HexrError(
            "vault.integrity_error",
            `secret '${name}' version ${row.version} failed authentication: it was tampered with or moved`,
            {
              kind: "internal",
              cause: err,
            },
          );
        }
        const value = row.encoding === "base64" ? plain.toString("base64") : plain.toString("utf8");
        plain.fill(0);
        return { name, version: Number(row.version), value, encoding: row.encoding, createdAt: iso(row.created_at) };
      },
      (s) => s.version,
    );
  }

  async list(
    caller: VaultCaller,
    opts: { prefix?: string; after?: string; limit?: number; includeDeleted?: boolean } = {},
  ): Promise<Decided<SecretMeta[]>> {
    const prefix = opts.prefix ?? "";
    if (prefix.length > NAME_MAX || /[^A-Za-z0-9_./-]/.test(prefix)) {
      throw new HexrError("vault.invalid_name", "a prefix uses the characters of secret names", { kind: "invalid_argument" });
    }
    // The resource a listing is authorized on: `db/*` for prefix `db/`, `*` for everything.
    return this.audited(caller, "vault:list", `${prefix}*`, undefined, async () =>
      (
        await this.store.list(caller.scope, {
          prefix,
          ...(opts.after !== undefined ? { after: opts.after } : {}),
          limit: Math.min(Math.max(opts.limit ?? 100, 1), 1000),
          includeDeleted: opts.includeDeleted ?? false,
        })
      ).map(toSecretMeta),
    );
  }

  async versions(caller: VaultCaller, name: string): Promise<Decided<VersionMeta[]>> {
    checkName(name);
    return this.audited(caller, "vault:list", name, undefined, async () => {
      const rows = await this.store.versions(caller.scope, name);
      if (rows.length === 0) throw secretNotFound(caller.scope, name);
      return rows.map(toVersionMeta);
    });
  }

  /** Soft delete: a tombstone; versions stay until destroyed, and a new put brings the secret back. */
  async delete(caller: VaultCaller, name: string): Promise<Decided<undefined>> {
    checkName(name);
    return this.audited(caller, "vault:delete", name, undefined, async () => {
      if (!(await this.store.tombstone(caller.scope, name, this.clock()))) {
        const s = await this.store.secret(caller.scope, name);
        throw secretNotFound(caller.scope, name, s ? "is already deleted" : "does not exist");
      }
      return undefined;
    });
  }

  /** Erases one version's ciphertext and data key for good. */
  async destroy(caller: VaultCaller, name: string, version: number): Promise<Decided<undefined>> {
    checkName(name);
    return this.audited(caller, "vault:destroy", name, version, async () => {
      if (!(await this.store.destroy(caller.scope, name, version, this.clock()))) {
        const rows = await this.store.versions(caller.scope, name);
        const v = rows.find((r) => Number(r.version) === version);
        if (!v) throw secretNotFound(caller.scope, `${name}@${version}`);
        throw new HexrError("vault.version_destroyed", `version ${version} of secret '${name}' is already destroyed`, {
          kind: "conflict",
        });
      }
      return undefined;
    });
  }

  async audit(
    scope: TenantScope,
    q: { name?: string; before?: string; since?: number; limit: number },
  ): Promise<VaultAuditEntry[]> {
    await this.auditLog.flush();
    return (await this.store.audit(scope, q)).map((r) => ({
      id: r.id,
      at: iso(r.at),
      principal: r.principal,
      action: r.action,
      name: r.name,
      version: r.version === null ? null : Number(r.version),
      outcome: r.outcome,
      flagged: r.flagged === 1,
      policyMode: r.policy_mode,
      requestId: r.request_id,
    }));
  }

  flushAudit(): Promise<void> {
    return this.auditLog.flush();
  }

  close(): Promise<void> {
    return this.auditLog.close();
  }

  /** JWT-SVIDs must be addressed to the vault; a token for another service is not accepted here. */
  private checkAudience(p: Principal): void {
    if (p.kind === "workload" && p.via === "jwt-svid" && !(p.audience ?? []).includes(this.vaultId)) {
      throw new HexrError(
        "vault.wrong_audience",
        `the JWT-SVID is not addressed to the vault: request one with audience ${this.vaultId}`,
        {
          kind: "unauthenticated",
        },
      );
    }
  }

  /** Audience, policy, the operation, and one audit row whatever happens. */
  private async audited<T>(
    caller: VaultCaller,
    action: "vault:read" | "vault:write" | "vault:list" | "vault:delete" | "vault:destroy",
    name: string,
    version: number | undefined,
    op: () => Promise<T>,
    versionOf?: (r: T) => number,
  ): Promise<Decided<T>> {
    let decision: PolicyDecision | undefined;
    try {
      this.checkAudience(caller.principal);
      decision = await authorize(this.policy, {
        principal: caller.principal,
        action,
        resource: { type: "Secret", id: name, tenant: caller.scope.tenant },
        ...(version !== undefined ? { context: { version } } : {}),
      });
      const result = await op();
      this.record(caller, action, name, versionOf ? versionOf(result) : version, "ok", decision);
      return { result, decision };
    } catch (err) {
      const outcome = isHexrError(err) ? (err.code === "policy.denied" ? "denied" : err.code) : "internal";
      this.record(caller, action, name, version, outcome, decision);
      throw err;
    }
  }

  private record(
    caller: VaultCaller,
    action: string,
    name: string,
    version: number | undefined,
    outcome: string,
    d: PolicyDecision | undefined,
  ): void {
    const at = this.clock();
    this.auditLog.push({
      id: timeOrderedId(at, this.seq++),
      tenant_id: caller.scope.tenantId,
      at,
      principal: principalLabel(caller.principal),
      action,
      name,
      version: version ?? null,
      outcome,
      code: outcome === "ok" ? null : outcome,
      policy_mode: d?.flagged ? d.mode : null,
      flagged: d?.flagged ? 1 : 0,
      request_id: caller.requestId ?? null,
    });
  }
}
