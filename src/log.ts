/**
 * JSON-lines logger joined to traces: every line carries the active span's
 * `trace_id` and `span_id`. Player text must not be logged at info or above;
 * callers pass ids and counts, not prose.
 *
 * @module
 */
import { trace } from "@opentelemetry/api";

/** Log levels, lowest first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];

/** Structured fields of a log line. */
export type LogFields = Record<string, unknown>;

/** The logger handed to plugins. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

/** Where lines go; stdout by default, an array in tests. */
export type LogSink = (line: string) => void;

const encoder = new TextEncoder();
const stdoutSink: LogSink = (line) => {
  Deno.stdout.writeSync(encoder.encode(line + "\n"));
};

// Control characters in values would let a hostile string forge log lines or
// terminal escapes; JSON.stringify escapes C0 controls, and we escape the
// C1 range and line separators it leaves alone.
const UNSAFE = /[\u007f-\u009f\u2028\u2029]/g;
function safeJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v))
    .replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Create a JSON logger writing lines at or above `level`. */
export function createLogger(
  level: LogLevel = "info",
  sink: LogSink = stdoutSink,
  base: LogFields = {},
): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const write = (lvl: LogLevel, msg: string, fields?: LogFields) => {
    if (LOG_LEVELS.indexOf(lvl) < min) return;
    const ctx = trace.getActiveSpan()?.spanContext();
    const line: LogFields = {
      time: new Date().toISOString(),
      level: lvl,
      msg,
      trace_id: ctx?.traceId ?? null,
      span_id: ctx?.spanId ?? null,
      ...base,
      ...fields,
    };
    if (line.error instanceof Error) {
      line.error = { name: line.error.name, message: line.error.message };
    }
    try {
      sink(safeJson(line));
    } catch {
      // A broken stdout (closed pipe) must never take a turn down with it.
    }
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    child: (fields) => createLogger(level, sink, { ...base, ...fields }),
  };
}
