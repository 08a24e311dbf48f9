import type { TenantScope } from "../auth/principal.js";
import type { Migration, Queryable, Storage } from "../storage/types.js";
import type { Artifact, ListTasksQuery, Message, Task, TaskState, TaskStatus } from "./model.js";
import { WriteBatcher } from "./write-batcher.js";

export const a2aMigrations: Migration[] = [
  {
    id: "a2a/001-tasks",
    up: `CREATE TABLE a2a_tasks (
      id TEXT PRIMARY KEY,
      tenant_id TEXT NOT NULL,
      agent TEXT NOT NULL,
      owner TEXT NOT NULL,
      message_id TEXT NOT NULL,
      context_id TEXT NOT NULL,
      kind TEXT NOT NULL,
      state TEXT NOT NULL,
      status_json TEXT NOT NULL,
      artifacts_json TEXT,
      history_json TEXT,
      metadata_json TEXT,
      reply_json TEXT,
      runner TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      updated_at BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX a2a_tasks_idempotency ON a2a_tasks (tenant_id, agent, owner, message_id);
    CREATE INDEX a2a_tasks_by_update ON a2a_tasks (tenant_id, agent, updated_at, id);
    CREATE INDEX a2a_tasks_by_runner ON a2a_tasks (runner, state)`,
  },
];

/** A task as stored, with who owns it and how it answered. */
export interface TaskRecord {
  task: Task;
  /** The caller that created the task: only it (or an admin caller) may see it. */
  owner: string;
  /** The messageId that created the task (idempotency key together with the owner). */
  messageId: string;
  /** `message`: the agent answered with a Message, not a task; `reply` holds it. */
  kind: "task" | "message";
  reply?: Message;
  runner: string;
}

interface Row {
  id: string;
  owner: string;
  message_id: string;
  context_id: string;
  kind: string;
  status_json: string;
  artifacts_json: string | null;
  history_json: string | null;
  metadata_json: string | null;
  reply_json: string | null;
  runner: string;
  updated_at: number;
}

const COLUMNS =
  "id, owner, message_id, context_id, kind, status_json, artifacts_json, history_json, metadata_json, reply_json, runner, updated_at";
const ACTIVE = "('TASK_STATE_SUBMITTED', 'TASK_STATE_WORKING', 'TASK_STATE_INPUT_REQUIRED', 'TASK_STATE_AUTH_REQUIRED')";

const json = (v: unknown): string | null => (v === undefined ? null : JSON.stringify(v));

function fromRow(r: Row): TaskRecord {
  const task: Task = { id: r.id, contextId: r.context_id, status: JSON.parse(r.status_json) as TaskStatus };
  if (r.artifacts_json) task.artifacts = JSON.parse(r.artifacts_json) as Artifact[];
  if (r.history_json) task.history = JSON.parse(r.history_json) as Message[];
  if (r.metadata_json) task.metadata = JSON.parse(r.metadata_json) as Record<string, unknown>;
  const rec: TaskRecord = {
    task,
    owner: r.owner,
    messageId: r.message_id,
    kind: r.kind === "message" ? "message" : "task",
    runner: r.runner,
  };
  if (r.reply_json) rec.reply = JSON.parse(r.reply_json) as Message;
  return rec;
}

const statusMillis = (s: TaskStatus) => Date.parse(s.timestamp);

export interface TaskStoreOptions {
  storage: Storage;
  /** Every query is confined to this tenant. */
  scope: TenantScope;
  /** The agent whose tasks these are (several agents may share one database). */
  agent: string;
  /** Stable name of this server instance; tasks it runs are marked with it for crash recovery. */
  runner: string;
  batcher?: WriteBatcher;
}

export type CreateResult = { created: true } | { created: false; id: string };

/** Page cursor: the (updated_at, id) of the last task of the previous page. */
function encodeCursor(updatedAt: number, id: string): string {
  return Buffer.from(`${updatedAt}:${id}`).toString("base64url");
}
function decodeCursor(token: string): { updatedAt: number; id: string } | undefined {
  const s = Buffer.from(token, "base64url").toString("utf8");
  const i = s.indexOf(":");
  if (i <= 0) return undefined;
  const updatedAt = Number(s.slice(0, i));
  return Number.isSafeInteger(updatedAt) ? { updatedAt, id: s.slice(i + 1) } : undefined;
}

/**
 * A2A tasks of one agent in one tenant, through the Storage interface. Writes go through the
 * group-commit batcher; `save` coalesces successive states of one task.
 */
export class TaskStore {
  readonly batcher: WriteBatcher;
  private readonly db: Storage;
  private readonly tenantId: string;
  private readonly agent: string;
  readonly runner: string;

  constructor({ storage, scope, agent, runner, batcher }: TaskStoreOptions) {
    this.db = storage;
    this.tenantId = scope.tenantId;
    this.agent = agent;
    this.runner = runner;
    this.batcher = batcher ?? new WriteBatcher({ storage });
  }

  /**
   * Inserts a new task unless the owner already sent this messageId; then returns the existing id.
   * The unique index (tenant, agent, owner, message_id) arbitrates concurrent duplicates, across
   * processes too.
   */
  create(rec: TaskRecord): Promise<CreateResult> {
    const t = rec.task;
    const now = statusMillis(t.status);
    const params = [
      t.id,
      this.tenantId,
      this.agent,
      rec.owner,
      rec.messageId,
      t.contextId,
      rec.kind,
      t.status.state,
      JSON.stringify(t.status),
      json(t.artifacts),
      json(t.history),
      json(t.metadata),
      json(rec.reply),
      rec.runner,
      now,
      now,
    ];
    return this.batcher.run(async (tx) => {
      const r = await tx.run(
        `INSERT INTO a2a_tasks (id, tenant_id, agent, owner, message_id, context_id, kind, state, status_json, artifacts_json,
           history_json, metadata_json, reply_json, runner, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (tenant_id, agent, owner, message_id) DO NOTHING`,
        params,
      );
      if (r.changes === 1) return { created: true } as const;
      const existing = await tx.get<{ id: string }>(
        "SELECT id FROM a2a_tasks WHERE tenant_id = ? AND agent = ? AND owner = ? AND message_id = ?",
        [this.tenantId, this.agent, rec.owner, rec.messageId],
      );
      // No row and no insert means the conflict was on the primary key: a task id collision.
      if (!existing) throw new Error(`a2a: task id collision on ${t.id}`);
      return { created: false, id: existing.id } as const;
    });
  }

  /**
   * Writes the task's current state unless the stored task is already terminal (a cancel from
   * elsewhere wins). Returns false when the write was refused for that reason. The row is built
   * when the batch commits, from the record as it is then: successive saves of a running task
   * cost one serialization.
   */
  save(rec: TaskRecord, urgent = false): Promise<boolean> {
    return this.batcher.run(
      async (tx) => {
        const t = rec.task;
        const r = await tx.run(
          `UPDATE a2a_tasks SET state = ?, status_json = ?, artifacts_json = ?, history_json = ?, metadata_json = ?, kind = ?,
           reply_json = ?, runner = ?, updated_at = ?
         WHERE tenant_id = ? AND id = ? AND state IN ${ACTIVE}`,
          [
            t.status.state,
            JSON.stringify(t.status),
            json(t.artifacts),
            json(t.history),
            json(t.metadata),
            rec.kind,
            json(rec.reply),
            rec.runner,
            statusMillis(t.status),
            this.tenantId,
            t.id,
          ],
        );
        return r.changes === 1;
      },
      rec.task.id,
      urgent,
    );
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    await this.batcher.drain();
    const row = await this.db.get<Row>(`SELECT ${COLUMNS} FROM a2a_tasks WHERE tenant_id = ? AND agent = ? AND id = ?`, [
      this.tenantId,
      this.agent,
      id,
    ]);
    return row ? fromRow(row) : undefined;
  }

  /** Tasks visible to `owner` (all when null), newest status first, cursor-paginated. */
  async list(
    q: ListTasksQuery,
    owner: string | null,
  ): Promise<{ records: TaskRecord[]; nextPageToken: string; totalSize: number }> {
    await this.batcher.drain();
    const where: string[] = ["tenant_id = ?", "agent = ?", "kind = 'task'"];
    const params: Array<string | number> = [this.tenantId, this.agent];
    if (owner !== null) {
      where.push("owner = ?");
      params.push(owner);
    }
    if (q.contextId !== undefined) {
      where.push("context_id = ?");
      params.push(q.contextId);
    }
    if (q.status !== undefined) {
      where.push("state = ?");
      params.push(q.status);
    }
    if (q.statusTimestampAfter !== undefined) {
      where.push("updated_at > ?");
      params.push(q.statusTimestampAfter);
    }
    const filter = where.join(" AND ");
    const total = await this.db.get<{ n: number | string }>(`SELECT COUNT(*) AS n FROM a2a_tasks WHERE ${filter}`, params);
    const pageWhere = [filter];
    const pageParams = [...params];
    if (q.pageToken) {
      const c = decodeCursor(q.pageToken);
      if (c) {
        pageWhere.push("(updated_at < ? OR (updated_at = ? AND id < ?))");
        pageParams.push(c.updatedAt, c.updatedAt, c.id);
      }
    }
    const rows = await this.db.all<Row>(
      `SELECT ${COLUMNS} FROM a2a_tasks WHERE ${pageWhere.join(" AND ")} ORDER BY updated_at DESC, id DESC LIMIT ?`,
      [...pageParams, q.pageSize + 1],
    );
    const more = rows.length > q.pageSize;
    const page = more ? rows.slice(0, q.pageSize) : rows;
    const last = page[page.length - 1];
    return {
      records: page.map(fromRow),
      nextPageToken: more && last ? encodeCursor(last.updated_at, last.id) : "",
      totalSize: Number(total?.n ?? 0),
    };
  }

  /** True when a page token is one this store could have issued (garbage is a client error). */
  static validPageToken(token: string): boolean {
    return decodeCursor(token) !== undefined;
  }

  /**
   * Crash recovery: tasks this runner had submitted or working when it died are marked failed,
   * with the reason as the status message. Interrupted tasks (waiting for the client) are left
   * alone: nothing was running for them.
   */
  async failInFlight(makeStatus: (task: Task) => TaskStatus): Promise<string[]> {
    return this.db.transaction(async (tx: Queryable) => {
      const rows = await tx.all<Row>(
        `SELECT ${COLUMNS} FROM a2a_tasks WHERE tenant_id = ? AND agent = ? AND runner = ?
           AND state IN ('TASK_STATE_SUBMITTED', 'TASK_STATE_WORKING')`,
        [this.tenantId, this.agent, this.runner],
      );
      for (const row of rows) {
        const rec = fromRow(row);
        const status = makeStatus(rec.task);
        const history = status.message ? [...(rec.task.history ?? []), status.message] : rec.task.history;
        await tx.run(
          "UPDATE a2a_tasks SET state = ?, status_json = ?, history_json = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
          [status.state, JSON.stringify(status), json(history), statusMillis(status), this.tenantId, rec.task.id],
        );
      }
      return rows.map((r) => r.id);
    });
  }

  /** Marks a task canceled unless it is already terminal; used when no local run owns it. */
  async cancelStored(id: string, status: TaskStatus): Promise<boolean> {
    await this.batcher.drain();
    return this.batcher.run(async (tx) => {
      const row = await tx.get<Row>(`SELECT ${COLUMNS} FROM a2a_tasks WHERE tenant_id = ? AND agent = ? AND id = ?`, [
        this.tenantId,
        this.agent,
        id,
      ]);
      if (!row) return false;
      const rec = fromRow(row);
      const history = status.message ? [...(rec.task.history ?? []), status.message] : rec.task.history;
      const r = await tx.run(
        `UPDATE a2a_tasks SET state = ?, status_json = ?, history_json = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND state IN ${ACTIVE}`,
        [status.state, JSON.stringify(status), json(history), statusMillis(status), this.tenantId, id],
      );
      return r.changes === 1;
    });
  }
}

export type { TaskState };
