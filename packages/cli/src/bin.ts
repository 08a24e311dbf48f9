#!/usr/bin/env node
import { VERSION } from "@hexr/core";
import { Command, CommanderError } from "commander";
import { registerA2A } from "./commands/a2a.js";
import { registerAgents } from "./commands/agents.js";
import { registerConfig } from "./commands/config.js";
import { registerIdentity } from "./commands/identity.js";
import { registerRun } from "./commands/run.js";
import { registerSandbox } from "./commands/sandbox.js";
import { registerWhoami } from "./commands/whoami.js";
import { registerPolicy } from "./commands/policy.js";
import { registerSecrets } from "./commands/secrets.js";
import { registerStatus } from "./commands/status.js";
import { registerKeys, registerTenants } from "./commands/tenants.js";
import { registerTools } from "./commands/tools.js";
import { registerTraces } from "./commands/traces.js";
import { registerUp } from "./commands/up.js";
import { reportError } from "./output.js";

const program = new Command()
  .name("hexr")
  .description("Hexr: a secure runtime for AI agents, with a SPIFFE identity for every agent process")
  .version(VERSION)
  .showHelpAfterError("(run with --help for usage)")
  .exitOverride();

registerUp(program);
registerStatus(program);
registerConfig(program);
registerAgents(program);
registerA2A(program);
registerTenants(program);
registerKeys(program);
registerIdentity(program);
registerWhoami(program);
registerRun(program);
registerSandbox(program);
registerPolicy(program);
registerSecrets(program);
registerTools(program);
registerTraces(program);

const wantsJson = process.argv.includes("--json");
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  process.exit(reportError(err, wantsJson));
}
