/**
 * The embedded journey log: a {@link Store} on one SQLite file (or
 * `:memory:`), through `node:sqlite`. Every call is synchronous under the hood,
 * so each one is atomic within the process; write transactions use
 * BEGIN IMMEDIATE so they also serialise against other processes on the file.
 *
 * @example
 * ```ts
 * const store = new SqliteStore("./data/dm.sqlite");
 * await store.recoverInterrupted();
 * ```
 *
 * @module
 */
import { DmError } from "../../errors.ts";
import type { ErrorEvent, TurnEvent } from "../../shared/events.ts";
import type {
  BeginTurnResult,
  Character,
  CharacterContext,
  CharacterView,
  Location,
  NewCharacter,
  NewPoi,
  Poi,
  Store,
  TurnRecord,
  TurnStart,
  TurnTransaction,
} from "../port.ts";
import { Db } from "./db.ts";
import {
  activeQuest,
  checkEvents,
  combatOf,
  insertEvents,
  insertPoi,
  INTRO_ACTION,
  ownedCharacter,
  poisNewestFirst,
  RECENT_TURNS,
} from "./queries.ts";
import {
  type CharacterRow,
  type PoiRow,
  toCharacter,
  toCombat,
  toEvent,
  toJson,
  toNarrative,
  toPoi,
  toQuest,
  toTurnRecord,
  type TurnRow,
} from "./rows.ts";
import { attempt, SqliteTurnTransaction } from "./transaction.ts";

export { LATEST_VERSION, MIGRATIONS } from "./migrations.ts";

/** How long an idempotency key is remembered. */
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

/** How often expired idempotency keys are swept, at most. */
const SWEEP_INTERVAL_MS = 60 * 60 * 1000;

/** Message of the error event written for turns a crash interrupted. */
export const INTERRUPTED_MESSAGE =
  "The server stopped before this turn finished; nothing was written.";

/** Options of {@link SqliteStore}. */
export interface SqliteStoreOptions {
  /** Clock for every stored timestamp and the idempotency window; tests fix it. */
  now?: () => Date;
}

/** The embedded SQLite journey log. */
export class SqliteStore implements Store {
  /** Adapter name for spans and logs. */
  readonly kind = "sqlite";
  readonly #db: Db;
  readonly #now: () => Date;
  #lastSweep = Number.NEGATIVE_INFINITY;

  /**
   * Open (and create or migrate) the database at `path`; `:memory:` gives a
   * private in-memory database. Parent directories of a file path are created.
   */
  constructor(path: string, options: SqliteStoreOptions = {}) {
    this.#db = new Db(path);
    this.#now = options.now ?? (() => new Date());
  }

  #iso(): string {
    return this.#now().toISOString();
  }

  ready(): Promise<boolean> {
    try {
      return Promise.resolve(this.#db.get<{ ok: number }>("SELECT 1 AS ok")?.ok === 1);
    } catch {
      // A closed or broken database is "not ready", which is what the probe asks.
      return Promise.resolve(false);
    }
  }

  createCharacter(
    owner_id: string,
    input: NewCharacter,
    intro: { narrative: string; location: Location; origin: NewPoi | null },
  ): Promise<Character> {
    return attempt(() => {
      const db = this.#db;
      const createdAt = this.#iso();
      const row: CharacterRow = {
        character_id: crypto.randomUUID(),
        owner_id,
        name: input.name,
        race: input.race,
        class_name: input.class_name,
        custom_prompt: input.custom_prompt,
        status: "Healthy",
        location_id: intro.location.id,
        location_display_name: intro.location.display_name,
        location_minor: intro.location.minor,
        location_poi_id: intro.location.poi_id,
        turn_count: 0,
        // Both cooldown counters start at 0, as if a quest and a POI had just
        // happened: a new character plays the normal cooldown before its first
        // quest or new POI, so the opening turns stay about the intro scene.
        turns_since_last_quest: 0,
        turns_since_last_poi: 0,
        created_at: createdAt,
      };
      const origin: Poi | null = intro.origin === null ? null : {
        poi_id: crypto.randomUUID(),
        name: intro.origin.name,
        description: intro.origin.description,
        tags: [...intro.origin.tags],
        created_at: createdAt,
      };
      db.write(() => {
        db.run(
          `INSERT INTO characters (character_id, owner_id, name, race, class_name, custom_prompt,
             status, location_id, location_display_name, location_minor, location_poi_id,
             turn_count, turns_since_last_quest, turns_since_last_poi, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          row.character_id,
          row.owner_id,
          row.name,
          row.race,
          row.class_name,
          row.custom_prompt,
          row.status,
          row.location_id,
          row.location_display_name,
          row.location_minor,
          row.location_poi_id,
          row.turn_count,
          row.turns_since_last_quest,
          row.turns_since_last_poi,
          row.created_at,
        );
        // Turn 0 is the intro; it is context for the narrator but not a
        // played turn, so turn_count stays 0.
        db.run(
          `INSERT INTO narrative_turns (character_id, turn_number, user_action, narrative,
             created_at) VALUES (?, 0, ?, ?, ?)`,
          row.character_id,
          INTRO_ACTION,
          intro.narrative,
          createdAt,
        );
        if (origin !== null) {
          insertPoi(db, row.character_id, origin, toJson(origin.tags, "POI tags"));
        }
      });
      return toCharacter(row);
    });
  }

  /**
   * Register a character that another store holds (the journey-log adapter
   * keeps its turn records, events and idempotency keys here, and those rows
   * reference `characters`). Inserts a row with the given identity and zero
   * counters; a character id already known is left as it is, so a row can
   * never change owner.
   */
  ensureShadowCharacter(character: Character): Promise<void> {
    return attempt(() => {
      const c = character;
      this.#db.write(() =>
        this.#db.run(
          `INSERT INTO characters (character_id, owner_id, name, race, class_name, custom_prompt,
             status, location_id, location_display_name, location_minor, location_poi_id,
             turn_count, turns_since_last_quest, turns_since_last_poi, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, ?)
           ON CONFLICT (character_id) DO NOTHING`,
          c.character_id,
          c.owner_id,
          c.name,
          c.race,
          c.class_name,
          c.custom_prompt,
          c.status,
          c.location.id,
          c.location.display_name,
          c.location.minor,
          c.location.poi_id,
          c.created_at,
        )
      );
    });
  }

  /** Context of an owned character; call inside a read transaction. */
  #context(owner_id: string, character_id: string): CharacterContext | null {
    const db = this.#db;
    const row = ownedCharacter(db, owner_id, character_id);
    if (row === undefined) return null;
    const quest = activeQuest(db, character_id);
    const combat = combatOf(db, character_id);
    const recent = db.all<{ user_action: string; narrative: string; created_at: string }>(
      `SELECT user_action, narrative, created_at FROM (
         SELECT turn_number, user_action, narrative, created_at FROM narrative_turns
         WHERE character_id = ? ORDER BY turn_number DESC LIMIT ?
       ) ORDER BY turn_number ASC`,
      character_id,
      RECENT_TURNS,
    );
    const plugins = db.all<{ plugin: string; value: string }>(
      "SELECT plugin, value FROM plugin_state WHERE character_id = ? ORDER BY plugin",
      character_id,
    );
    return {
      character: toCharacter(row),
      quest: quest === undefined ? null : toQuest(quest),
      combat: combat === undefined ? null : toCombat(combat),
      recent_turns: recent.map(toNarrative),
      turn_count: row.turn_count,
      turns_since_last_quest: row.turns_since_last_quest,
      turns_since_last_poi: row.turns_since_last_poi,
      // fromEntries defines own properties, so a plugin named "__proto__"
      // cannot reach the prototype.
      plugin_state: Object.fromEntries(plugins.map((p) => [p.plugin, JSON.parse(p.value)])),
    };
  }

  loadContext(owner_id: string, character_id: string): Promise<CharacterContext | null> {
    return attempt(() => this.#db.read(() => this.#context(owner_id, character_id)));
  }

  getCharacter(owner_id: string, character_id: string): Promise<CharacterView | null> {
    return attempt(() =>
      this.#db.read(() => {
        const context = this.#context(owner_id, character_id);
        if (context === null) return null;
        return { ...context, pois: poisNewestFirst(this.#db, character_id).map(toPoi) };
      })
    );
  }

  randomPois(owner_id: string, character_id: string, n: number): Promise<Poi[]> {
    return attempt(() => {
      if (!(n > 0)) return [];
      return this.#db.all<PoiRow>(
        `SELECT p.poi_id, p.name, p.description, p.tags, p.created_at
         FROM pois p JOIN characters c ON c.character_id = p.character_id
         WHERE p.character_id = ? AND c.owner_id = ? ORDER BY random() LIMIT ?`,
        character_id,
        owner_id,
        Math.floor(n),
      ).map(toPoi);
    });
  }

  listPois(owner_id: string, character_id: string): Promise<Poi[]> {
    return attempt(() =>
      this.#db.read(() => {
        if (ownedCharacter(this.#db, owner_id, character_id) === undefined) return [];
        return poisNewestFirst(this.#db, character_id).map(toPoi);
      })
    );
  }

  /**
   * Start a turn, in one write transaction: idempotency first (a retry of a
   * request must find its turn even after the character moved on), then the
   * one-running-turn rule.
   *
   * @throws DmError `character_not_found` when the character is missing or not owned,
   *   `game_over` when it is dead (a turn could have killed it since the caller loaded it).
   */
  beginTurn(start: TurnStart): Promise<BeginTurnResult> {
    return attempt(() => {
      checkEvents(start.turn_id, [start.start_event]);
      const db = this.#db;
      const nowMs = this.#now().getTime();
      const createdAt = new Date(nowMs).toISOString();
      const cutoff = new Date(nowMs - IDEMPOTENCY_TTL_MS).toISOString();
      return db.write((): BeginTurnResult => {
        if (nowMs - this.#lastSweep >= SWEEP_INTERVAL_MS) {
          db.run("DELETE FROM idempotency WHERE created_at <= ?", cutoff);
          this.#lastSweep = nowMs;
        }
        const idem = start.idempotency;
        if (idem !== null) {
          const seen = this.#lookupKey(start.owner_id, idem.key, idem.request_hash, cutoff);
          if (seen !== null) return seen;
          // An expired row would block the insert below through the primary key.
          db.run(
            "DELETE FROM idempotency WHERE owner_id = ? AND key = ? AND created_at <= ?",
            start.owner_id,
            idem.key,
            cutoff,
          );
        }
        const character = db.get<{ status: string }>(
          "SELECT status FROM characters WHERE character_id = ? AND owner_id = ?",
          start.character_id,
          start.owner_id,
        );
        if (character === undefined) throw new DmError("character_not_found");
        const running = db.get<{ turn_id: string }>(
          "SELECT turn_id FROM turns WHERE character_id = ? AND status = 'running'",
          start.character_id,
        );
        if (running !== undefined) return { kind: "busy", turn_id: running.turn_id };
        if (character.status === "Dead") throw new DmError("game_over");
        db.run(
          `INSERT INTO turns (turn_id, character_id, owner_id, status, user_action,
             idempotency_key, request_hash, created_at)
           VALUES (?, ?, ?, 'running', ?, ?, ?, ?)`,
          start.turn_id,
          start.character_id,
          start.owner_id,
          start.user_action,
          idem?.key ?? null,
          idem?.request_hash ?? null,
          createdAt,
        );
        insertEvents(db, start.turn_id, [start.start_event]);
        if (idem !== null) {
          db.run(
            `INSERT INTO idempotency (owner_id, key, request_hash, turn_id, created_at)
             VALUES (?, ?, ?, ?, ?)`,
            start.owner_id,
            idem.key,
            idem.request_hash,
            start.turn_id,
            createdAt,
          );
        }
        return { kind: "started" };
      });
    });
  }

  /** An idempotency key seen after `cutoff`, judged against `request_hash`. */
  #lookupKey(
    owner_id: string,
    key: string,
    request_hash: string,
    cutoff: string,
  ): { kind: "duplicate"; turn_id: string } | { kind: "key_reused" } | null {
    const seen = this.#db.get<{ request_hash: string; turn_id: string }>(
      `SELECT request_hash, turn_id FROM idempotency
       WHERE owner_id = ? AND key = ? AND created_at > ?`,
      owner_id,
      key,
      cutoff,
    );
    if (seen === undefined) return null;
    return seen.request_hash === request_hash
      ? { kind: "duplicate", turn_id: seen.turn_id }
      : { kind: "key_reused" };
  }

  findIdempotent(
    owner_id: string,
    key: string,
    request_hash: string,
  ): Promise<{ kind: "duplicate"; turn_id: string } | { kind: "key_reused" } | null> {
    return attempt(() => {
      const cutoff = new Date(this.#now().getTime() - IDEMPOTENCY_TTL_MS).toISOString();
      return this.#lookupKey(owner_id, key, request_hash, cutoff);
    });
  }

  /**
   * Open the buffered unit of work of a running turn.
   * @throws Error when the character is not the owner's or the turn is not running.
   */
  openTurn(owner_id: string, character_id: string, turn_id: string): TurnTransaction {
    return new SqliteTurnTransaction({
      db: this.#db,
      owner_id,
      character_id,
      turn_id,
      now: this.#now,
    });
  }

  appendEvents(turn_id: string, events: TurnEvent[]): Promise<void> {
    return attempt(() => {
      if (events.length === 0) return;
      checkEvents(turn_id, events);
      this.#db.write(() => insertEvents(this.#db, turn_id, events));
    });
  }

  getTurn(turn_id: string): Promise<TurnRecord | null> {
    return attempt(() => {
      const row = this.#db.get<TurnRow>(
        `SELECT turn_id, character_id, owner_id, status, user_action, narrative, intents,
           subsystem_summary, policy, usage, error_type, created_at, completed_at
         FROM turns WHERE turn_id = ?`,
        turn_id,
      );
      return row === undefined ? null : toTurnRecord(row);
    });
  }

  getEvents(turn_id: string, after_seq: number): Promise<TurnEvent[]> {
    return attempt(() =>
      this.#db.all<{ event: string }>(
        "SELECT event FROM turn_events WHERE turn_id = ? AND seq > ? ORDER BY seq",
        turn_id,
        after_seq,
      ).map(toEvent)
    );
  }

  /**
   * Fail every turn still `running`. Call once at startup, before serving:
   * with one process per database file, a running turn at that point can only
   * be one a crash interrupted.
   */
  recoverInterrupted(): Promise<number> {
    return attempt(() => {
      const db = this.#db;
      const timestamp = this.#iso();
      return db.write(() => {
        const running = db.all<{ turn_id: string; last_seq: number }>(
          `SELECT t.turn_id,
             (SELECT COALESCE(MAX(e.seq), 0) FROM turn_events e WHERE e.turn_id = t.turn_id)
               AS last_seq
           FROM turns t WHERE t.status = 'running' ORDER BY t.created_at`,
        );
        for (const turn of running) {
          db.run(
            `UPDATE turns SET status = 'failed', error_type = 'interrupted', completed_at = ?
             WHERE turn_id = ?`,
            timestamp,
            turn.turn_id,
          );
          const event: ErrorEvent = {
            type: "error",
            turn_id: turn.turn_id,
            seq: turn.last_seq + 1,
            timestamp,
            error_type: "interrupted",
            message: INTERRUPTED_MESSAGE,
            // Nothing of the turn was written, so sending it again can succeed.
            recoverable: true,
          };
          insertEvents(db, turn.turn_id, [event]);
        }
        return running.length;
      });
    });
  }

  close(): Promise<void> {
    return attempt(() => this.#db.close());
  }
}
