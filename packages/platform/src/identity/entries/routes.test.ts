import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../../test-support/platform.js";
import type { Entry } from "./service.js";

// Identity tests do not exercise the code sandbox; its background probes only slow start and stop.
const NO_SANDBOX = { sandbox: { enabled: false } };

const TD = "hexr.local";
const agent = (tenant: string, name = "bot") => `spiffe://${TD}/agent/${tenant}/${name}/main`;

let p: TestPlatform;
let acmeKey: string;

async function json<T>(res: Response, status: number): Promise<T> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  return (text ? JSON.parse(text) : undefined) as T;
}

async function problem(res: Response, status: number, code: string): Promise<Record<string, unknown>> {
  expect(res.headers.get("content-type")).toMatch(/application\/problem\+json/);
  const body = await json<Record<string, unknown>>(res, status);
  expect(body["code"]).toBe(code);
  return body;
}

beforeAll(async () => {
  p = await startTestPlatform({ config: NO_SANDBOX });
  for (const name of ["acme", "globex"]) await json(await p.api("/api/v1/tenants", { method: "POST", json: { name } }), 201);
  acmeKey = (
    await json<{ key: string }>(await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "acme" } }), 201)
  ).key;
});
afterAll(() => p.dispose());

describe("registration entries REST", () => {
  it("creates, reads, lists and deletes an entry", async () => {
    const res = await p.api("/api/v1/identity/entries", {
      method: "POST",
      json: {
        spiffeId: agent("acme"),
        selectors: ["unix:uid:1000", { type: "hexr", value: "agent:bot" }],
        x509SvidTtlSeconds: 600,
      },
    });
    const e = await json<Entry>(res, 201);
    expect(res.headers.get("location")).toBe(`/api/v1/identity/entries/${e.id}`);
    expect(e).toMatchObject({
      spiffeId: agent("acme"),
      tenant: "acme",
      x509SvidTtlSeconds: 600,
      jwtSvidTtlSeconds: 300,
      expiresAt: null,
    });
    expect(e.createdBy).toMatch(/^apikey:/);
    expect(new Date(e.createdAt).toISOString()).toBe(e.createdAt);
    expect(await json(await p.api(`/api/v1/identity/entries/${e.id}`), 200)).toEqual(e);
    const list = await json<{ items: Entry[] }>(await p.api(`/api/v1/identity/entries?tenant=acme`), 200);
    expect(list.items.map((x) => x.id)).toContain(e.id);
    // The Workload API sees it immediately.
    expect(
      p.identity.entries
        .match([
          { type: "unix", value: "uid:1000" },
          { type: "hexr", value: "agent:bot" },
        ])
        .map((x) => x.id),
    ).toEqual([e.id]);
    await json(await p.api(`/api/v1/identity/entries/${e.id}`, { method: "DELETE" }), 204);
    await problem(await p.api(`/api/v1/identity/entries/${e.id}`), 404, "identity.entry_not_found");
    await problem(await p.api(`/api/v1/identity/entries/${e.id}`, { method: "DELETE" }), 404, "identity.entry_not_found");
    expect(
      p.identity.entries.match([
        { type: "unix", value: "uid:1000" },
        { type: "hexr", value: "agent:bot" },
      ]),
    ).toEqual([]);
  });

  it("answers an identical entry with 409 naming the existing one", async () => {
    const body = { spiffeId: agent("acme", "dup"), selectors: ["unix:uid:5", "unix:gid:5"] };
    const e = await json<Entry>(await p.api("/api/v1/identity/entries", { method: "POST", json: body }), 201);
    const conflict = await problem(
      await p.api("/api/v1/identity/entries", { method: "POST", json: { ...body, selectors: ["unix:gid:5", "unix:uid:5"] } }),
      409,
      "identity.entry_exists",
    );
    expect(conflict["id"]).toBe(e.id);
  });

  it("rejects bad input with problem+json and stores nothing", async () => {
    const before = await json<{ items: Entry[] }>(await p.api("/api/v1/identity/entries?limit=1000"), 200);
    const post = (body: unknown) => p.api("/api/v1/identity/entries", { method: "POST", json: body });
    await problem(await post({ selectors: ["unix:uid:1"] }), 400, "request.validation_failed");
    await problem(await post({ spiffeId: agent("acme") }), 400, "request.validation_failed");
    await problem(await post({ spiffeId: agent("acme"), selectors: [] }), 400, "request.validation_failed");
    await problem(
      await post({ spiffeId: agent("acme"), selectors: ["unix:uid:1"], bogus: true }),
      400,
      "request.validation_failed",
    );
    await problem(await post({ spiffeId: agent("acme"), selectors: [42] }), 400, "request.validation_failed");
    await problem(await post({ spiffeId: agent("acme"), selectors: ["nocolon"] }), 400, "identity.invalid_selector");
    await problem(
      await post({ spiffeId: "spiffe://evil.org/agent/acme/bot/main", selectors: ["a:b"] }),
      400,
      "identity.foreign_trust_domain",
    );
    await problem(await post({ spiffeId: "spiffe://hexr.local/../x", selectors: ["a:b"] }), 400, "spiffe.invalid_id");
    await problem(
      await post({ spiffeId: agent("acme"), tenant: "globex", selectors: ["a:b"] }),
      400,
      "identity.entry_tenant_mismatch",
    );
    await problem(
      await post({ spiffeId: agent("acme"), selectors: ["a:b"], x509SvidTtlSeconds: 10_000_000 }),
      400,
      "identity.invalid_ttl",
    );
    await problem(
      await p.api("/api/v1/identity/entries", {
        method: "POST",
        body: "{not json",
        headers: { "content-type": "application/json" },
      }),
      400,
      "request.invalid_json",
    );
    await problem(await p.api("/api/v1/identity/entries/not-an-id"), 400, "request.validation_failed");
    await problem(await p.api("/api/v1/identity/entries?limit=0"), 400, "request.validation_failed");
    await problem(await p.api("/api/v1/identity/entries?after=zzz"), 400, "request.validation_failed");
    const after = await json<{ items: Entry[] }>(await p.api("/api/v1/identity/entries?limit=1000"), 200);
    expect(after.items).toEqual(before.items);
  });

  it("is admin-only for writes and unscoped lists; tenants see their own entries only", async () => {
    const mine = await json<Entry>(
      await p.api("/api/v1/identity/entries", { method: "POST", json: { spiffeId: agent("acme", "t1"), selectors: ["x:1"] } }),
      201,
    );
    const theirs = await json<Entry>(
      await p.api("/api/v1/identity/entries", { method: "POST", json: { spiffeId: agent("globex", "t1"), selectors: ["x:1"] } }),
      201,
    );
    await problem(
      await p.api("/api/v1/identity/entries", {
        method: "POST",
        auth: acmeKey,
        json: { spiffeId: agent("acme", "t2"), selectors: ["x:2"] },
      }),
      403,
      "auth.forbidden",
    );
    await problem(await p.api("/api/v1/identity/entries", { auth: acmeKey }), 403, "auth.forbidden");
    await problem(await p.api(`/api/v1/identity/entries/${mine.id}`, { method: "DELETE", auth: acmeKey }), 403, "auth.forbidden");
    await problem(await p.api("/api/v1/identity/entries", { auth: null }), 401, "auth.unauthenticated");

    const own = await json<{ items: Entry[] }>(await p.api("/api/v1/tenants/acme/identity/entries", { auth: acmeKey }), 200);
    expect(own.items.map((e) => e.tenant)).toEqual(own.items.map(() => "acme"));
    expect(own.items.map((e) => e.id)).toContain(mine.id);
    expect(own.items.map((e) => e.id)).not.toContain(theirs.id);
    expect((await json<Entry>(await p.api(`/api/v1/tenants/acme/identity/entries/${mine.id}`, { auth: acmeKey }), 200)).id).toBe(
      mine.id,
    );
    await problem(
      await p.api(`/api/v1/tenants/acme/identity/entries/${theirs.id}`, { auth: acmeKey }),
      404,
      "identity.entry_not_found",
    );
    await problem(await p.api("/api/v1/tenants/globex/identity/entries", { auth: acmeKey }), 403, "auth.forbidden");
    await problem(await p.api("/api/v1/tenants/nope/identity/entries"), 404, "tenant.not_found");
    // Admins may read any tenant's list.
    const globex = await json<{ items: Entry[] }>(await p.api("/api/v1/tenants/globex/identity/entries"), 200);
    expect(globex.items.map((e) => e.id)).toEqual([theirs.id]);
  });

  it("pages through entries", async () => {
    for (let i = 0; i < 5; i++) {
      await json(
        await p.api("/api/v1/identity/entries", {
          method: "POST",
          json: { spiffeId: agent("globex", `page${i}`), selectors: ["pg:x"] },
        }),
        201,
      );
    }
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const page: { items: Entry[]; nextAfter: string | null } = await json(
        await p.api(`/api/v1/identity/entries?tenant=globex&limit=2${after ? `&after=${after}` : ""}`),
        200,
      );
      seen.push(...page.items.map((e) => e.id));
      after = page.nextAfter;
    } while (after);
    expect(seen).toHaveLength(6);
    expect(new Set(seen).size).toBe(6);
    expect([...seen].sort()).toEqual(seen);
  });
});

describe("tenant deletion", () => {
  it("removes the tenant's registration entries", async () => {
    await json(await p.api("/api/v1/tenants", { method: "POST", json: { name: "short-lived" } }), 201);
    const created = await p.api("/api/v1/identity/entries", {
      method: "POST",
      json: { spiffeId: "spiffe://hexr.local/agent/short-lived/bot/main", selectors: ["unix:uid:4242"] },
    });
    expect(created.status).toBe(201);
    const list = async () =>
      ((await (await p.api("/api/v1/identity/entries?tenant=short-lived")).json()) as { items: unknown[] }).items;
    expect(await list()).toHaveLength(1);
    expect((await p.api("/api/v1/tenants/short-lived", { method: "DELETE" })).status).toBe(204);
    expect(await list()).toHaveLength(0);
  });
});
