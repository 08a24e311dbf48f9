import { exitCodeByKind, isHexrError } from "@hexr/core";

/** Prints rows as an aligned table (what people read); `--json` prints the data instead. */
export function printTable(rows: Array<Record<string, unknown>>, columns: string[]): void {
  if (rows.length === 0) {
    process.stdout.write("(none)\n");
    return;
  }
  const cell = (v: unknown) => (v === null || v === undefined ? "-" : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  process.stdout.write(line(columns.map((c) => c.toUpperCase())) + "\n");
  for (const r of rows) process.stdout.write(line(columns.map((c) => cell(r[c]))) + "\n");
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

/** One line on stderr (or a JSON object with --json) and the exit code of the error's kind. */
export function reportError(err: unknown, json: boolean): number {
  if (isHexrError(err)) {
    if (json) {
      process.stderr.write(JSON.stringify({ error: { code: err.code, message: err.message, ...(err.details ?? {}) } }) + "\n");
    } else {
      process.stderr.write(`hexr: ${err.message}\n`);
      const errors = (err.details?.["errors"] ?? []) as Array<{ path: string; message: string }>;
      if (errors.length > 1) for (const e of errors) process.stderr.write(`  ${e.path || "(body)"}: ${e.message}\n`);
    }
    return exitCodeByKind[err.kind];
  }
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(
    json ? JSON.stringify({ error: { code: "internal", message } }) + "\n" : `hexr: unexpected error: ${message}\n`,
  );
  return 70;
}
