import { describe, expect, it } from "vitest";
import { discoverAgentsInSource } from "./discover.js";

describe("agent discovery by static analysis", () => {
  it("finds a single-role agent and its framework", () => {
    const src = `import { hexrAgent } from "hexr";\nimport OpenAI from "openai";\nexport default hexrAgent({ name: "research-analyst", description: "d" }, async (q) => q);`;
    expect(discoverAgentsInSource(src)).toEqual([
      {
        name: "research-analyst",
        description: "d",
        roles: ["main"],
        entryRole: "main",
        framework: "openai",
        form: "function",
        line: 3,
      },
    ]);
  });

  it("finds the roles of a multi-role agent", () => {
    const src = `import { hexrAgent } from "hexr";\nimport { generateText } from "ai";\nconst researcher = async () => 1;\nexport default hexrAgent({ name: "content-crew", entryRole: "researcher" }, { researcher, writer: async () => 2, "fact-checker": async () => 3 });`;
    const [a] = discoverAgentsInSource(src);
    expect(a).toMatchObject({
      name: "content-crew",
      roles: ["researcher", "writer", "fact-checker"],
      entryRole: "researcher",
      framework: "ai-sdk",
    });
  });

  it("finds a decorated class agent", () => {
    const src = `import { agent, role } from "hexr";\nimport Anthropic from "@anthropic-ai/sdk";\n@agent({ name: "crew", entryRole: "a" })\nexport default class Crew {\n  @role("a") async one() {}\n  @role("b") async two() {}\n  helper() {}\n}`;
    expect(discoverAgentsInSource(src)[0]).toMatchObject({
      name: "crew",
      roles: ["a", "b"],
      entryRole: "a",
      form: "class",
      framework: "anthropic",
    });
  });

  it.each([
    ["mastra", `import { Agent } from "@mastra/core";`],
    ["langchain", `import { ChatOpenAI } from "@langchain/openai";`],
    ["custom", `import fs from "node:fs";`],
  ])("detects %s", (fw, imp) => {
    expect(discoverAgentsInSource(`${imp}\nhexrAgent({ name: "x" }, () => 1);`)[0]!.framework).toBe(fw);
  });

  it.each([
    [`const n = "x"; hexrAgent({ name: n }, () => 1);`, "must be a string literal"],
    [`hexrAgent({ name: "Bad_Name" }, () => 1);`, "DNS label"],
    [`hexrAgent({ name: "x" }, { a: () => 1, b: () => 2 });`, "set entryRole"],
    [`hexrAgent({ name: "x", entryRole: "c" }, { a: () => 1, b: () => 2 });`, 'entryRole "c"'],
    [`hexrAgent({ name: "x" }, { ...others });`, "literal property names"],
    [`hexrAgent(meta, () => 1);`, "object literal"],
    [`hexrAgent({ name: "x" });`, "needs a handler"],
  ])("explains what is wrong: %s", (src, msg) => {
    expect(() => discoverAgentsInSource(src, "a.ts")).toThrow(msg);
  });

  it("reports the line of a problem", () => {
    expect(() => discoverAgentsInSource(`\n\nhexrAgent({ name: "Bad" }, () => 1);`, "agent.ts")).toThrow(/^agent\.ts:3:/);
  });
});
