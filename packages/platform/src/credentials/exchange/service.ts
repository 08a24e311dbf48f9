import { describeWorkload, HexrError, systemSpiffeId } from "@hexr/core";
import type { Logger } from "pino";
import type { Principal, TenantScope } from "../../auth/principal.js";
import type { Authority } from "../../identity/types.js";
import type { PolicyEngine } from "../../policy/types.js";
import type { AwsToolConfig, AzureToolConfig, GcpToolConfig } from "../tools/schema.js";
import type { ToolService } from "../tools/service.js";
import type { CloudProvider, IssuedCredentials } from "../providers/types.js";
import { CACHE_KEY_ID, deriveCacheKey } from "./cache-key.js";
import type { CacheKeyResponse, ExchangeResponse, WireCredentials } from "./schema.js";

/** The service name in the credential injector's SPIFFE ID, `spiffe://<td>/system/credentials`: the audience callers' JWT-SVIDs must carry. */
export const CREDENTIALS_SERVICE = "credentials";

export interface Providers {
  aws: CloudProvider<AwsToolConfig>;
  gcp: CloudProvider<GcpToolConfig>;
  azure: CloudProvider<AzureToolConfig>;
}

export interface ExchangeServiceOptions {
  tools: ToolService;
  /** Resolves the caller's tenant (from its SVID) to a scope. */
  resolveTenant: (name: string) => Promise<TenantScope>;
  authority: Pick<Authority, "trustDomain" | "mintJwtSvid">;
  policy: PolicyEngine;
  providers: Providers;
  /** The platform master key (or a loader, so that it is read only when first needed). */
  masterKey: Buffer | (() => Buffer);
  log: Logger;
  /** Lifetime of the JWT-SVID handed to the cloud; it is used once, right away. */
  cloudTokenTtlSeconds?: number;
}

interface Caller {
  spiffeId: string;
  tenant: string;
  agent: string;
  role: string;
}

function forbidden(code: string, message: string, details?: Record<string, unknown>): HexrError {
  return new HexrError(code, message, { kind: "permission_denied", ...(details ? { details } : {}) });
}

/**
 * The credential injector: a workload's SVID → policy `credentials:exchange` on the tool → a
 * JWT-SVID minted for the cloud's audience → the cloud's STS → short-lived credentials.
 */
export class ExchangeService {
  readonly audience: string;
  private readonly opts: ExchangeServiceOptions;
  private readonly ttl: number;
  private masterKey: Buffer | undefined;

  constructor(opts: ExchangeServiceOptions) {
    this.opts = opts;
    this.ttl = opts.cloudTokenTtlSeconds ?? 300;
    this.audience = systemSpiffeId(opts.authority.trustDomain, CREDENTIALS_SERVICE).toString();
  }

  /** Only agents, identified by their SVID and addressed to this service, may exchange. */
  private caller(p: Principal): Caller {
    if (p.kind !== "workload") {
      throw forbidden(
        "credentials.workload_required",
        "credential exchange is for agents: authenticate with the agent's JWT-SVID, not an API key",
      );
    }
    if (p.via === "jwt-svid" && !(p.audience ?? []).includes(this.audience)) {
      throw new HexrError("credentials.wrong_audience", `the JWT-SVID's audience must include ${this.audience}`, {
        kind: "unauthenticated",
        details: { expectedAudience: this.audience },
      });
    }
    const w = describeWorkload(p.spiffeId);
    if (
      w.kind !== "agent" ||
      w.trustDomain !== this.opts.authority.trustDomain ||
      (p.tenant !== undefined && p.tenant !== w.tenant)
    ) {
      throw forbidden(
        "credentials.not_an_agent",
        `${p.spiffeId} is not an agent identity of trust domain ${this.opts.authority.trustDomain}`,
      );
    }
    return { spiffeId: p.spiffeId, tenant: w.tenant, agent: w.agent, role: w.role };
  }

  cacheKeyFor(p: Principal): CacheKeyResponse {
    const c = this.caller(p);
    return { spiffeId: c.spiffeId, cacheKey: this.cacheKey(c.spiffeId) };
  }

  private cacheKey(spiffeId: string): CacheKeyResponse["cacheKey"] {
    const mk = typeof this.opts.masterKey === "function" ? (this.masterKey ??= this.opts.masterKey()) : this.opts.masterKey;
    return { id: CACHE_KEY_ID, key: deriveCacheKey(mk, spiffeId).toString("base64") };
  }

  async exchange(p: Principal, toolName: string, signal?: AbortSignal): Promise<ExchangeResponse> {
    const caller = this.caller(p);
    const { log } = this.opts;
    // The tool is looked up in the caller's own tenant only: another tenant's tool does not exist for it.
    const scope = await this.opts.resolveTenant(caller.tenant);
    const tool = await this.opts.tools.resolve(scope, toolName);

    const decision = await this.opts.policy.decide({
      principal: p,
      action: "credentials:exchange",
      // The policy schema names credential resources `Credential`, with the provider in the context.
      resource: { type: "Credential", id: tool.name, tenant: scope.tenant },
      context: { provider: tool.provider },
    });
    log.info(
      {
        spiffeId: caller.spiffeId,
        tool: tool.name,
        effect: decision.effect,
        allowed: decision.allowed,
        mode: decision.mode,
        policyIds: decision.policyIds,
      },
      "credentials:exchange decision",
    );
    if (!decision.allowed) {
      throw forbidden("credentials.denied", `policy denies ${caller.spiffeId} credentials for tool '${tool.name}'`, {
        tool: tool.name,
        policyIds: decision.policyIds,
      });
    }

    const ctx = { spiffeId: caller.spiffeId, sessionName: `${caller.agent}.${caller.role}`, ...(signal ? { signal } : {}) };
    let issued: IssuedCredentials;
    switch (tool.provider) {
      case "aws":
        issued = await this.opts.providers.aws.exchange(
          tool.config,
          await this.cloudToken(caller, this.opts.providers.aws.tokenAudience(tool.config)),
          ctx,
        );
        break;
      case "gcp":
        issued = await this.opts.providers.gcp.exchange(
          tool.config,
          await this.cloudToken(caller, this.opts.providers.gcp.tokenAudience(tool.config)),
          ctx,
        );
        break;
      case "azure":
        issued = await this.opts.providers.azure.exchange(
          tool.config,
          await this.cloudToken(caller, this.opts.providers.azure.tokenAudience(tool.config)),
          ctx,
        );
        break;
    }
    log.info(
      {
        spiffeId: caller.spiffeId,
        tool: tool.name,
        provider: tool.provider,
        expiresAt: new Date(issued.expiresAt).toISOString(),
      },
      "issued cloud credentials",
    );
    const expiresAt = new Date(issued.expiresAt).toISOString();
    return {
      tool: tool.name,
      spiffeId: caller.spiffeId,
      expiresAt,
      credentials: toWire(issued),
      cacheKey: this.cacheKey(caller.spiffeId),
    };
  }

  private async cloudToken(caller: Caller, audience: string): Promise<string> {
    const svid = await this.opts.authority.mintJwtSvid(caller.spiffeId, [audience], { ttlSeconds: this.ttl });
    return svid.token;
  }
}

function toWire(c: IssuedCredentials): WireCredentials {
  const expiresAt = new Date(c.expiresAt).toISOString();
  switch (c.provider) {
    case "aws":
      return {
        provider: "aws",
        accessKeyId: c.accessKeyId,
        secretAccessKey: c.secretAccessKey,
        sessionToken: c.sessionToken,
        region: c.region,
        ...(c.assumedRoleArn ? { assumedRoleArn: c.assumedRoleArn } : {}),
        expiresAt,
      };
    case "gcp":
      return {
        provider: "gcp",
        accessToken: c.accessToken,
        tokenType: c.tokenType,
        ...(c.serviceAccount ? { serviceAccount: c.serviceAccount } : {}),
        expiresAt,
      };
    case "azure":
      return { provider: "azure", accessToken: c.accessToken, tokenType: c.tokenType, expiresAt };
  }
}
