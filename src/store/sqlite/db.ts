/**
 * A thin wrapper around `node:sqlite` shared by the store and its turn
 * transactions: connection setup, a prepared-statement cache and
 * transaction helpers.
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { migrate } from "./migrations.ts";

/** Whether `path` names an on-disk database (as opposed to an in-memory or temporary one). */
export function isFilePath(path: string): boolean {
  return path !== ":memory:" && path !== "" && !path.startsWith("file:");
}

/** One open, migrated connection. */
export class Db {
  /** The underlying connection. */
  readonly raw: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();

  /** Open (creating parent directories for file paths), configure and migrate. */
  constructor(path: string) {
    const onDisk = isFilePath(path);
    if (onDisk) mkdirSync(dirname(path), { recursive: true });
    this.raw = new DatabaseSync(path);
    try {
      // busy_timeout first: switching to WAL itself may have to wait for
      // another process holding the file.
      this.raw.exec("PRAGMA busy_timeout = 5000");
      if (onDisk) this.raw.exec("PRAGMA journal_mode = WAL");
      this.raw.exec("PRAGMA foreign_keys = ON");
      // NORMAL is durable across application crashes in WAL mode; only an OS
      // crash or power loss can lose the last commits, which we accept.
      this.raw.exec("PRAGMA synchronous = NORMAL");
      migrate(this.raw);
    } catch (error) {
      this.raw.close();
      throw error;
    }
  }

  /** A cached prepared statement; preparing costs more than running for our small queries. */
  stmt(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.raw.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /** First row of `sql`, typed by the caller (the SQL decides the shape). */
  get<T>(sql: string, ...params: SQLInputValue[]): T | undefined {
    return this.stmt(sql).get(...params) as T | undefined;
  }

  /** All rows of `sql`, typed by the caller. */
  all<T>(sql: string, ...params: SQLInputValue[]): T[] {
    return this.stmt(sql).all(...params) as unknown as T[];
  }

  /** Run a write; returns the number of changed rows. */
  run(sql: string, ...params: SQLInputValue[]): number {
    return Number(this.stmt(sql).run(...params).changes);
  }

  /**
   * Run `fn` in a write transaction. BEGIN IMMEDIATE takes the write lock up
   * front, so two connections can never both read "no running turn" and then
   * both insert one; a deferred transaction would fail at the upgrade instead
   * of waiting for busy_timeout.
   */
  write<T>(fn: () => T): T {
    return this.#transaction("BEGIN IMMEDIATE", fn);
  }

  /** Run `fn` in a read transaction so multi-table reads see one snapshot. */
  read<T>(fn: () => T): T {
    return this.#transaction("BEGIN", fn);
  }

  #transaction<T>(begin: string, fn: () => T): T {
    if (this.raw.isTransaction) {
      // Everything here is synchronous, so this only happens through a bug
      // such as a nested helper call; nesting would silently merge units of work.
      throw new Error("nested SQLite transaction");
    }
    this.stmt(begin).run();
    let result: T;
    try {
      result = fn();
    } catch (error) {
      if (this.raw.isTransaction) this.stmt("ROLLBACK").run();
      throw error;
    }
    try {
      this.stmt("COMMIT").run();
    } catch (error) {
      if (this.raw.isTransaction) this.stmt("ROLLBACK").run();
      throw error;
    }
    return result;
  }

  /** Close the connection; later calls are no-ops. */
  close(): void {
    if (!this.raw.isOpen) return;
    this.#statements.clear();
    this.raw.close();
  }
}
