/**
 * Judging answers: the error envelope and catalogue, the headers every
 * answer carries, counts per family, and snapshots of the whole SQLite
 * database to prove the fuzz stored nothing.
 */
import { DatabaseSync } from "node:sqlite";
import { ERROR_CATALOGUE, isErrorType } from "../../src/shared/errors.ts";
import type { Expectation } from "./oracle.ts";

/** An answer from fetch or raw TCP, reduced to what the checks need. */
export interface Answer {
  /** Null when the connection closed without an answer. */
  status: number | null;
  header(name: string): string | null;
  body: string;
  method: string;
}

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const STACK_FRAME = /\bat .+:\d+:\d+|file:\/\/|node_modules|\/src\/|\/plugins\//;

/** Problems with an answer under an expectation (empty when it is right). */
export function checkAnswer(a: Answer, expect: Expectation): string[] {
  const problems: string[] = [];
  if (a.status === null) {
    if (expect.kind !== "protocol") problems.push("the connection closed without an answer");
    return problems;
  }
  if (a.status >= 500) problems.push(`answered ${a.status}`);
  if (expect.kind === "upgrade" && a.status === 101) return problems;
  const requestId = a.header("x-request-id");
  if (requestId === null) {
    // Not from the app: Deno's HTTP parser refused the request.
    if (expect.kind !== "protocol") problems.push(`answered ${a.status} without X-Request-Id`);
    else if (a.status < 400 || a.status >= 500) problems.push(`parser answered ${a.status}`);
    return problems;
  }
  if (!SAFE_REQUEST_ID.test(requestId)) {
    problems.push(`unsafe X-Request-Id ${JSON.stringify(requestId)}`);
  }
  for (
    const [k, v] of [
      ["x-content-type-options", "nosniff"],
      ["referrer-policy", "no-referrer"],
    ]
  ) {
    if (a.header(k) !== v) problems.push(`${k} is ${JSON.stringify(a.header(k))}`);
  }
  if (expect.kind === "ok") {
    if (a.status !== expect.status) {
      problems.push(`answered ${a.status}, expected ${expect.status}: ${a.body.slice(0, 200)}`);
    }
    return problems;
  }
  if (a.status < 400 || a.status >= 500) {
    problems.push(`answered ${a.status}, expected a 4xx: ${a.body.slice(0, 200)}`);
    return problems;
  }
  if (a.status === 405 && !a.header("allow")) problems.push("405 without Allow");
  if (a.status === 401 && !a.header("www-authenticate")) {
    problems.push("401 without WWW-Authenticate");
  }
  if ((a.status === 429 || a.status === 503) && !a.header("retry-after")) {
    problems.push(`${a.status} without Retry-After`);
  }
  if (a.method === "HEAD") return problems;
  if (!/^application\/json\b/.test(a.header("content-type") ?? "")) {
    problems.push(`Content-Type ${JSON.stringify(a.header("content-type"))}`);
  }
  let error: Record<string, unknown>;
  try {
    error = JSON.parse(a.body).detail.error;
    if (typeof error !== "object" || error === null) throw new Error("no detail.error");
  } catch {
    problems.push(`not the error envelope: ${JSON.stringify(a.body.slice(0, 200))}`);
    return problems;
  }
  const type = error.type;
  if (!isErrorType(type)) {
    problems.push(`type ${JSON.stringify(type)} is not in the catalogue`);
    return problems;
  }
  if (ERROR_CATALOGUE[type].status !== a.status) {
    problems.push(
      `type ${type} with status ${a.status} (catalogue: ${ERROR_CATALOGUE[type].status})`,
    );
  }
  if (expect.types !== null && !expect.types.includes(type)) {
    problems.push(`type ${type}, expected ${expect.types.join(" or ")} (${error.message})`);
  }
  if (typeof error.message !== "string" || error.message === "") problems.push("no message");
  else if (STACK_FRAME.test(error.message)) {
    problems.push(`message leaks internals: ${error.message}`);
  }
  if (error.request_id !== requestId) {
    problems.push(`request_id ${error.request_id} ≠ X-Request-Id ${requestId}`);
  }
  return problems;
}

/** Counts of requests and messages per family and outcome. */
export class Tally {
  readonly #counts = new Map<string, Map<string, number>>();

  add(family: string, outcome: string): void {
    let m = this.#counts.get(family);
    if (!m) this.#counts.set(family, m = new Map());
    m.set(outcome, (m.get(outcome) ?? 0) + 1);
  }

  /** Total of a family, or of all families with a prefix. */
  total(prefix = ""): number {
    let n = 0;
    for (const [family, m] of this.#counts) {
      if (family.startsWith(prefix)) { for (const v of m.values()) n += v; }
    }
    return n;
  }

  /** A table for the test output. */
  render(title: string): string {
    const rows = [...this.#counts].sort(([a], [b]) => a.localeCompare(b)).map(([family, m]) => {
      const n = [...m.values()].reduce((x, y) => x + y, 0);
      const outcomes = [...m].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}×${v}`);
      return `  ${family.padEnd(36)} ${String(n).padStart(5)}  ${outcomes.join(" ")}`;
    });
    return `${title}\n${rows.join("\n")}\n  ${"total".padEnd(36)} ${
      String(this.total()).padStart(5)
    }`;
  }
}

/** Every row of every table, as sorted JSON lines per table. */
export type DbSnapshot = Record<string, string[]>;

/** Read the whole database at `path` through a second, read-only connection. */
export function snapshotDb(path: string): DbSnapshot {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const tables = db.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    ).all() as { name: string }[];
    const out: DbSnapshot = {};
    for (const { name } of tables) {
      out[name] = db.prepare(`SELECT * FROM "${name.replace(/"/g, '""')}"`).all()
        .map((row) => JSON.stringify(row, (_k, v) => (v instanceof Uint8Array ? Array.from(v) : v)))
        .sort();
    }
    return out;
  } finally {
    db.close();
  }
}

/** Differences between two snapshots, one line per changed table. */
export function diffDb(before: DbSnapshot, after: DbSnapshot): string[] {
  const out: string[] = [];
  for (const table of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const a = new Set(before[table] ?? []);
    const b = new Set(after[table] ?? []);
    const added = [...b].filter((r) => !a.has(r));
    const removed = [...a].filter((r) => !b.has(r));
    if (added.length || removed.length) {
      out.push(
        `${table}: +${added.length} -${removed.length}` +
          (added[0] ? ` e.g. +${added[0].slice(0, 300)}` : "") +
          (removed[0] ? ` e.g. -${removed[0].slice(0, 300)}` : ""),
      );
    }
  }
  return out;
}
