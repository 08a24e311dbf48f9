import { ExecRequest, ExecResult, SandboxStatus, TenantName } from "@hexr/core";
import { z } from "zod";
import { defineRoute, Reply, type RouteDef } from "../http/router.js";
import type { SandboxService } from "./service.js";

const TenantParams = z.object({ tenant: TenantName });

const BackendHealthBody = z.object({
  backend: z.string(),
  available: z.boolean(),
  summary: z.string(),
  checks: z.array(z.object({ name: z.string(), ok: z.boolean(), detail: z.string(), severity: z.enum(["error", "warning"]) })),
});
const DoctorBody = z.object({
  status: SandboxStatus,
  backends: z.array(BackendHealthBody),
  load: z.object({ running: z.number(), queued: z.number() }),
});

/** REST binding of the sandbox. Results never end up in a cache: code output may be sensitive. */
export function sandboxRoutes(sandbox: SandboxService, opts: { maxCodeBytes: number }): RouteDef[] {
  // JSON escaping can double a string; the service enforces the real code limit.
  const bodyLimit = opts.maxCodeBytes * 2 + 256 * 1024;
  const noStore = { "cache-control": "no-store" };
  return [
    defineRoute({
      method: "POST",
      path: "/api/v1/sandbox/execute",
      summary: "Run code in a fresh isolated sandbox (on behalf of the caller's tenant)",
      description:
        "Agents authenticate with a JWT-SVID addressed to spiffe://<td>/system/sandbox; the policy engine decides `sandbox:exec`. Admin keys run as the operator.",
      tags: ["sandbox"],
      auth: "authenticated",
      body: ExecRequest,
      response: ExecResult,
      bodyLimit,
      handler: async ({ body }, ctx) => {
        const { result, headers } = await sandbox.execute(body, { principal: ctx.principal, signal: ctx.signal });
        return new Reply(result, 200, { ...noStore, ...headers });
      },
    }),
    defineRoute({
      method: "POST",
      path: "/api/v1/tenants/:tenant/sandbox/execute",
      summary: "Run code in a fresh isolated sandbox on behalf of a tenant",
      tags: ["sandbox"],
      auth: "tenant",
      params: TenantParams,
      body: ExecRequest,
      response: ExecResult,
      bodyLimit,
      handler: async ({ body, scope }, ctx) => {
        const { result, headers } = await sandbox.execute(body, {
          principal: ctx.principal,
          tenant: scope.tenant,
          signal: ctx.signal,
        });
        return new Reply(result, 200, { ...noStore, ...headers });
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/sandbox/status",
      summary: "Whether executions can run here, on which backend, in which languages",
      tags: ["sandbox"],
      auth: "authenticated",
      response: SandboxStatus,
      handler: async () => {
        await sandbox.started();
        return sandbox.status();
      },
    }),
    defineRoute({
      method: "GET",
      path: "/api/v1/sandbox/doctor",
      summary: "What each sandbox backend found on this machine (the checks of `hexr sandbox doctor`)",
      tags: ["sandbox"],
      auth: "admin",
      response: DoctorBody,
      handler: async () => {
        await sandbox.started();
        return { status: sandbox.status(), backends: sandbox.healths(), load: sandbox.load() };
      },
    }),
  ];
}
