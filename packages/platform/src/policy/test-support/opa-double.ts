import { createServer, type IncomingMessage, type Server } from "node:http";
import type { OpaInput } from "../opa-engine.js";
import type { EnforcementMode } from "../types.js";

/**
 * A stand-in for an OPA server (OPA cannot run here) that speaks the Data API wire format
 * (https://www.openpolicyagent.org/docs/rest-api#data-api): `POST /v1/data/<path>` with
 * `{"input": ...}` → `200 {"result": ...}`, `200 {}` when the document is undefined, and
 * `400 {"code", "message"}` for a malformed body. It evaluates this rule, written here in Rego for
 * reference and implemented below on the input it receives:
 *
 *   package hexr.authz
 *   same_tenant if input.principal.tenant == input.resource.tenant
 *   allow if input.principal.type == "ApiKey"; same_tenant
 *   allow if input.principal.type == "Agent"; same_tenant; input.action in {"vault:read", "vault:list"}; not prod_denied
 *   prod_denied if startswith(input.resource.name, "prod/"); input.principal.agent != "deployer"
 *   decision := {"allow": allow, "mode": data.modes.prod, "policy_ids": ["prod-guard"]} if prod_denied
 *   decision := {"allow": allow} otherwise
 */
export function opaDouble(modes: { prod: EnforcementMode }) {
  const queries: unknown[] = [];
  const evaluate = (input: OpaInput) => {
    const sameTenant = input.principal["tenant"] !== undefined && input.principal["tenant"] === input.resource.tenant;
    const prodDenied = String(input.resource["name"] ?? "").startsWith("prod/") && input.principal["agent"] !== "deployer";
    let allow = false;
    if (input.principal.type === "ApiKey" && sameTenant) allow = true;
    if (input.principal.type === "Agent" && sameTenant && ["vault:read", "vault:list"].includes(input.action) && !prodDenied)
      allow = true;
    if (input.principal.type === "Agent" && sameTenant && prodDenied) {
      // the allow that would hold without the prod rule decides what audit/warn let through
      return { allow: false, mode: modes.prod, policy_ids: ["prod-guard"] };
    }
    return { allow };
  };
  const readBody = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (req.method !== "POST" || !req.url?.startsWith("/v1/data/"))
        return send(404, { code: "resource_not_found", message: "not found" });
      let body: { input?: OpaInput };
      try {
        body = JSON.parse(await readBody(req)) as { input?: OpaInput };
      } catch (err) {
        return send(400, {
          code: "invalid_parameter",
          message: `body contains malformed input document: ${(err as Error).message}`,
        });
      }
      queries.push(body);
      const path = req.url.slice("/v1/data/".length).split("?")[0];
      if (path === "hexr/broken")
        return send(500, { code: "internal_error", message: "eval_conflict_error: functions must not produce multiple outputs" });
      if (path !== "hexr/authz" || body.input === undefined) return send(200, {});
      send(200, { result: evaluate(body.input) });
    })();
  });
  return { server, queries };
}
