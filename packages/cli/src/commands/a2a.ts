import { HexrError, TenantName, isHexrError } from "@hexr/core";
import type { Command } from "commander";
import { a2aText, createA2AClient, isA2ATask, type A2AClient, type A2AMessage, type A2ATask, type A2ATaskState } from "hexr";
import { resolveTarget, type Target } from "../client.js";
import { printJson, printTable } from "../output.js";

interface Common {
  tenant?: string;
  dataDir?: string;
  json?: boolean;
}

const STATES: Record<string, A2ATaskState> = {
  submitted: "TASK_STATE_SUBMITTED",
  working: "TASK_STATE_WORKING",
  "input-required": "TASK_STATE_INPUT_REQUIRED",
  "auth-required": "TASK_STATE_AUTH_REQUIRED",
  completed: "TASK_STATE_COMPLETED",
  canceled: "TASK_STATE_CANCELED",
  failed: "TASK_STATE_FAILED",
  rejected: "TASK_STATE_REJECTED",
};

const shortState = (s: string) =>
  s
    .replace(/^TASK_STATE_/, "")
    .toLowerCase()
    .replace(/_/g, "-");

function tenantOf(o: Common): string {
  const t = o.tenant ?? process.env["HEXR_TENANT"] ?? "default";
  if (!TenantName.safeParse(t).success) {
    throw new HexrError("cli.usage", `--tenant '${t}' must be a DNS label: 1-63 lowercase letters, digits or '-'`, {
      kind: "invalid_argument",
    });
  }
  return t;
}

/** A client that reaches agents through the platform's A2A ingress with the local admin key. */
function ingressClient(o: Common): { client: A2AClient; target: Target; tenant: string } {
  const target = resolveTarget(o.dataDir);
  const tenant = tenantOf(o);
  const client = createA2AClient({
    resolve: (agent) => {
      const base = `${target.url}/a2a/${encodeURIComponent(tenant)}/${encodeURIComponent(agent)}`;
      const headers: Record<string, string> = target.apiKey ? { authorization: `Bearer ${target.apiKey}` } : {};
      return { url: base, cardUrl: `${base}/.well-known/agent-card.json`, headers };
    },
  });
  return { client, target, tenant };
}

/** Network failures name the platform (what the user can act on), not the agent's URL. */
async function viaPlatform<T>(target: Target, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isHexrError(err) && err.code === "a2a.unreachable") {
      throw new HexrError(
        "cli.platform_unreachable",
        `cannot reach the platform at ${target.url} (from ${target.via}). Is 'hexr up' running?`,
        {
          kind: "unavailable",
        },
      );
    }
    throw err;
  }
}

/** Ends like the task: failed, rejected or canceled tasks are errors for scripts. */
function outcome(agent: string, r: A2ATask | A2AMessage): void {
  if (!isA2ATask(r)) return;
  const state = r.status.state;
  if (state === "TASK_STATE_FAILED" || state === "TASK_STATE_REJECTED" || state === "TASK_STATE_CANCELED") {
    const why = r.status.message ? a2aText(r.status.message) : "";
    throw new HexrError(`a2a.task_${shortState(state)}`, `${agent}: task ${r.id} ${shortState(state)}${why ? `: ${why}` : ""}`, {
      kind: "upstream",
      details: { taskId: r.id },
    });
  }
}

const common = (c: Command) =>
  c
    .option("--tenant <tenant>", "the agent's tenant (default HEXR_TENANT or 'default')")
    .option("--data-dir <dir>", "data dir of the local platform")
    .option("--json", "machine-readable output");

export function registerA2A(program: Command): void {
  const a = program
    .command("a2a")
    .description("talk to agents over A2A (through the platform's ingress, with the local admin key)");

  common(a.command("send <agent> <text>").description("send a message to an agent and print its answer"))
    .option("--stream", "print the answer as it is produced (SSE)")
    .option("--task <id>", "continue this task (answer an input-required question)")
    .option("--context <id>", "start the task in this conversation context")
    .option("--message-id <id>", "idempotency key: resending the same id returns the same task")
    .option("--no-wait", "return at once with the submitted task")
    .addHelpText(
      "after",
      '\nExamples:\n  hexr a2a send writer "Write about SPIFFE" --tenant acme-corp\n  hexr a2a send writer "French" --task <id> --stream\n',
    )
    .action(
      async (
        agent: string,
        text: string,
        o: Common & { stream?: boolean; task?: string; context?: string; messageId?: string; wait: boolean },
      ) => {
        const { client, target } = ingressClient(o);
        const opts = {
          ...(o.task ? { taskId: o.task } : {}),
          ...(o.context ? { contextId: o.context } : {}),
          ...(o.messageId ? { messageId: o.messageId } : {}),
          ...(o.wait === false ? { returnImmediately: true } : {}),
        };
        if (!o.stream) {
          const r = await viaPlatform(target, () => client.send(agent, text, opts));
          if (o.json) printJson(r);
          else {
            const answer = a2aText(r);
            if (answer) process.stdout.write(answer.endsWith("\n") ? answer : answer + "\n");
            if (isA2ATask(r) && r.status.state !== "TASK_STATE_COMPLETED") {
              process.stderr.write(
                `task ${r.id} is ${shortState(r.status.state)}${r.status.state === "TASK_STATE_INPUT_REQUIRED" ? ` — answer with --task ${r.id}` : ""}\n`,
              );
            }
          }
          outcome(agent, r);
          return;
        }
        let task: A2ATask | undefined;
        let reply: A2AMessage | undefined;
        await viaPlatform(target, async () => {
          for await (const e of client.stream(agent, text, opts)) {
            if (o.json) {
              process.stdout.write(JSON.stringify(e) + "\n");
            } else if (e.kind === "artifact-update") {
              for (const p of e.artifact.parts) if (p.text !== undefined) process.stdout.write(p.text);
            } else if (e.kind === "message") {
              process.stdout.write(a2aText(e.message));
            } else if (e.kind === "status-update" && e.status.message && !e.final) {
              process.stderr.write(`${a2aText(e.status.message)}\n`);
            }
            if (e.kind === "task") task = e.task;
            else if (e.kind === "message") reply = e.message;
            else if (e.kind === "status-update" && task) task = { ...task, status: e.status };
          }
        });
        if (!o.json) process.stdout.write("\n");
        if (reply || !task) return;
        if (!o.json && task.status.state !== "TASK_STATE_COMPLETED") {
          const why = task.status.message ? a2aText(task.status.message) : "";
          const hint = task.status.state === "TASK_STATE_INPUT_REQUIRED" ? ` — answer with --task ${task.id}` : "";
          process.stderr.write(`task ${task.id} is ${shortState(task.status.state)}${why ? `: ${why}` : ""}${hint}\n`);
        }
        outcome(agent, task);
      },
    );

  common(a.command("tasks <agent>").description("list the agent's tasks (newest first)"))
    .option("--state <state>", `only tasks in this state (${Object.keys(STATES).join(", ")})`)
    .option("--context <id>", "only tasks of this conversation context")
    .option("--limit <n>", "at most this many tasks", "50")
    .action(async (agent: string, o: Common & { state?: string; context?: string; limit: string }) => {
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        throw new HexrError("cli.usage", "--limit must be a whole number from 1 to 1000", { kind: "invalid_argument" });
      const status = o.state ? STATES[o.state] : undefined;
      if (o.state && !status)
        throw new HexrError("cli.usage", `--state must be one of ${Object.keys(STATES).join(", ")}`, {
          kind: "invalid_argument",
        });
      const { client, target } = ingressClient(o);
      const tasks: A2ATask[] = [];
      let pageToken = "";
      let total = 0;
      await viaPlatform(target, async () => {
        do {
          const page = await client.listTasks(agent, {
            pageSize: Math.min(100, limit - tasks.length),
            historyLength: 0,
            ...(pageToken ? { pageToken } : {}),
            ...(status ? { status } : {}),
            ...(o.context ? { contextId: o.context } : {}),
          });
          tasks.push(...page.tasks);
          total = page.totalSize;
          pageToken = page.nextPageToken;
        } while (pageToken && tasks.length < limit);
      });
      if (o.json) printJson({ tasks, totalSize: total });
      else {
        printTable(
          tasks.map((t) => ({
            id: t.id,
            state: shortState(t.status.state),
            updated: t.status.timestamp ?? null,
            context: t.contextId,
          })),
          ["id", "state", "updated", "context"],
        );
        if (total > tasks.length) process.stderr.write(`(${tasks.length} of ${total}; use --limit)\n`);
      }
    });

  common(a.command("get <agent> <task>").description("show one task"))
    .option("--history <n>", "at most this many messages of history")
    .action(async (agent: string, taskId: string, o: Common & { history?: string }) => {
      const { client, target } = ingressClient(o);
      const t = await viaPlatform(target, () =>
        client.getTask(agent, taskId, o.history !== undefined ? { historyLength: Number(o.history) } : {}),
      );
      if (o.json) printJson(t);
      else {
        printTable(
          [{ id: t.id, state: shortState(t.status.state), updated: t.status.timestamp ?? null, context: t.contextId }],
          ["id", "state", "updated", "context"],
        );
        const answer = a2aText(t);
        if (answer) process.stdout.write(`\n${answer}\n`);
      }
    });

  common(a.command("cancel <agent> <task>").description("cancel a task")).action(
    async (agent: string, taskId: string, o: Common) => {
      const { client, target } = ingressClient(o);
      const t = await viaPlatform(target, () => client.cancel(agent, taskId));
      if (o.json) printJson(t);
      else process.stdout.write(`task ${t.id} is ${shortState(t.status.state)}\n`);
    },
  );

  common(a.command("card <agent>").description("show the agent's A2A Agent Card (as the ingress serves it)"))
    .option("--v03", "the v0.3 card instead of the v1.0 one")
    .action(async (agent: string, o: Common & { v03?: boolean }) => {
      const { client, target } = ingressClient(o);
      const card = await viaPlatform(target, () => client.card(agent, { version: o.v03 ? "0.3" : "1.0" }));
      if (o.json) printJson(card);
      else {
        const skills = (card["skills"] as Array<{ id: string; name: string; description?: string }> | undefined) ?? [];
        process.stdout.write(`${String(card["name"])}: ${String(card["description"] ?? "")}\n`);
        const ifaces = (card["supportedInterfaces"] as Array<{ url: string; protocolVersion: string }> | undefined) ?? [];
        for (const i of ifaces) process.stdout.write(`  A2A ${i.protocolVersion}  ${i.url}\n`);
        printTable(skills as unknown as Record<string, unknown>[], ["id", "name", "description"]);
        process.stdout.write(`signed: ${Array.isArray(card["signatures"]) && card["signatures"].length > 0 ? "yes" : "no"}\n`);
      }
    });
}
