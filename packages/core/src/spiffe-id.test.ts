import { describe, expect, it } from "vitest";
import { agentSpiffeId, describeWorkload, isSpiffeId, parseSpiffeId, systemSpiffeId, validateTrustDomain } from "./spiffe-id.js";

describe("parseSpiffeId", () => {
  it.each([
    "spiffe://example.org",
    "spiffe://example.org/workload",
    "spiffe://hexr.local/agent/acme-corp/research-analyst/main",
    "spiffe://a_b-c.d/Path.With-Mixed_Case/x",
    "spiffe://1.2.3.4/ip-looking-domain",
    "spiffe://td/" + "a".repeat(2000),
  ])("accepts %#", (id) => {
    expect(parseSpiffeId(id).toString()).toBe(id);
  });

  it.each([
    ["", "scheme"],
    ["http://example.org/x", "scheme"],
    ["SPIFFE://example.org/x", "scheme"],
    ["spiffe://", "trust domain is missing"],
    ["spiffe:///path", "trust domain is missing"],
    ["spiffe://Example.org/x", "lowercase"],
    ["spiffe://example.org:8080/x", "port"],
    ["spiffe://user@example.org/x", "user info"],
    ["spiffe://example.org/", "trailing"],
    ["spiffe://example.org/x/", "trailing"],
    ["spiffe://example.org//x", "empty path segment"],
    ["spiffe://example.org/./x", "'.' and '..'"],
    ["spiffe://example.org/x/..", "'.' and '..'"],
    ["spiffe://example.org/x?q=1", "query"],
    ["spiffe://example.org/x#frag", "query and fragment"],
    ["spiffe://example.org/x%20y", "path segments may contain"],
    ["spiffe://exa mple.org/x", "trust domain may contain"],
    ["spiffe://example.org/" + "a".repeat(2048), "longer than 2048"],
  ])("rejects case %# (%s)", (id, why) => {
    expect(() => parseSpiffeId(id)).toThrow(why);
    expect(isSpiffeId(id)).toBe(false);
  });

  it("throws a typed error", () => {
    try {
      parseSpiffeId("spiffe://bad:1");
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ code: "spiffe.invalid_id", kind: "invalid_argument" });
    }
  });

  it("splits trust domain, path and segments", () => {
    const id = parseSpiffeId("spiffe://hexr.local/agent/acme/writer/main");
    expect(id.trustDomain).toBe("hexr.local");
    expect(id.path).toBe("/agent/acme/writer/main");
    expect(id.segments).toEqual(["agent", "acme", "writer", "main"]);
  });
});

describe("Hexr ID shapes", () => {
  it("builds and describes agent and system IDs", () => {
    const a = agentSpiffeId("hexr.local", "acme-corp", "content-crew", "writer");
    expect(a.toString()).toBe("spiffe://hexr.local/agent/acme-corp/content-crew/writer");
    expect(describeWorkload(a)).toEqual({
      kind: "agent",
      trustDomain: "hexr.local",
      tenant: "acme-corp",
      agent: "content-crew",
      role: "writer",
    });
    expect(agentSpiffeId("hexr.local", "t", "a").toString()).toBe("spiffe://hexr.local/agent/t/a/main");
    expect(describeWorkload(systemSpiffeId("hexr.local", "vault"))).toEqual({
      kind: "system",
      trustDomain: "hexr.local",
      service: "vault",
    });
    expect(describeWorkload("spiffe://hexr.local/agent/only/three")).toEqual({ kind: "other", trustDomain: "hexr.local" });
  });

  it("refuses segments that would change the shape", () => {
    expect(() => agentSpiffeId("hexr.local", "a/b", "x")).toThrow();
    expect(() => agentSpiffeId("hexr.local", "..", "x")).toThrow();
    expect(() => validateTrustDomain("Hexr.Local")).toThrow("invalid trust domain");
  });
});
