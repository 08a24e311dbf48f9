import pino, { type Logger } from "pino";

export type LogFormat = "auto" | "pretty" | "json";

/** Pretty logs on a TTY, JSON lines otherwise. Secrets are redacted by path wherever they appear. */
export function createLogger(opts: {
  level: string;
  format: LogFormat;
  name?: string;
  destination?: NodeJS.WritableStream;
}): Logger {
  const pretty = opts.format === "pretty" || (opts.format === "auto" && process.stdout.isTTY && !opts.destination);
  const base = {
    level: opts.level,
    name: opts.name ?? "hexr",
    base: { pid: process.pid },
    redact: {
      paths: ["*.authorization", "*.headers.authorization", "*.key", "*.secret", "*.token", "*.password", "*.value"],
      censor: "[redacted]",
    },
  };
  if (pretty) {
    return pino({
      ...base,
      transport: { target: "pino-pretty", options: { colorize: true, translateTime: "HH:MM:ss.l", ignore: "pid,name" } },
    });
  }
  return opts.destination ? pino(base, opts.destination as pino.DestinationStream) : pino(base);
}
