import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { hexrAgent, toAgentDefinition, type AgentContext } from "./define.js";

describe("hexrAgent", () => {
  it("makes one handler the 'main' role", () => {
    const def = hexrAgent({ name: "solo" }, async (x: number) => x + 1);
    expect(Object.keys(def.roles)).toEqual(["main"]);
    expect(def.meta.entryRole).toBe("main");
    expect(toAgentDefinition(def)).toBe(def);
  });

  it("takes a record of roles with an entry role", () => {
    const def = hexrAgent({ name: "crew", entryRole: "a" }, { a: async () => 1, b: async () => 2 });
    expect(Object.keys(def.roles)).toEqual(["a", "b"]);
  });

  it.each([
    [{ name: "Bad Name" }, () => 1, "DNS label"],
    [{ name: "crew" }, { a: () => 1, b: () => 2 }, "entryRole"],
    [{ name: "crew", entryRole: "z" }, { a: () => 1 }, "not one of its roles"],
    [{ name: "crew" }, {}, "no roles"],
    [{ name: "crew" }, { "Not-OK": () => 1 }, "DNS label"],
  ])("rejects %j", (meta, handler, msg) => {
    expect(() => hexrAgent(meta, handler as never)).toThrow(msg);
  });

  // Node 20 and vitest's transformer cannot run TC39 decorators; esbuild (what `hexr run` uses
  // through tsx) lowers them, so the decorated classes are compiled with it, as they are at run time.
  async function compileDecorated(source: string): Promise<Record<string, unknown>> {
    const { transform } = await import("esbuild");
    const defineTs = fileURLToPath(new URL("./define.ts", import.meta.url));
    const js = (await transform(source.replace("%DEFINE%", defineTs), { loader: "ts", format: "esm", target: "es2022" })).code;
    const dir = mkdtempSync(join(tmpdir(), "hexr-deco-"));
    const file = join(dir, "agent.mjs");
    writeFileSync(file, js);
    try {
      return (await import(/* @vite-ignore */ file)) as Record<string, unknown>;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it("accepts a class with standard decorators", async () => {
    const mod = await compileDecorated(`
      import { agent, role } from "%DEFINE%";
      @agent({ name: "deco", entryRole: "first" })
      export default class Deco {
        prefix = "p:";
        @role("first") async one(input: string) { return this.prefix + input; }
        @role("second") async two(input: string, ctx: { role: string }) { return ctx.role + ":" + input; }
        helper() { return 1; }
      }`);
    const def = toAgentDefinition(mod["default"])!;
    expect(def.meta.name).toBe("deco");
    expect(Object.keys(def.roles).sort()).toEqual(["first", "second"]);
    expect(await def.roles["first"]!("x", {} as AgentContext)).toBe("p:x");
    expect(await def.roles["second"]!("y", { role: "second" } as AgentContext)).toBe("second:y");
  });

  it("refuses a decorated class without roles", async () => {
    await expect(
      compileDecorated(`
      import { agent } from "%DEFINE%";
      @agent({ name: "empty" })
      export default class Empty {}`),
    ).rejects.toThrow("no @role methods");
  });

  it("does not take arbitrary values for agents", () => {
    expect(toAgentDefinition({ meta: { name: "x" }, roles: {} })).toBeUndefined();
    expect(toAgentDefinition(class {})).toBeUndefined();
  });
});
