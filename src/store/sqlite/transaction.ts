/**
 * The SQLite unit of work of one turn. Writer calls only validate and buffer;
 * `commit` replays the buffer, the counter update, the turn record and the
 * events in one transaction, so a turn lands completely or not at all — and a
 * process killed before `commit` leaves nothing of the turn but its running
 * record, which crash recovery then marks failed.
 *
 * @module
 */
import type { TurnEvent } from "../../shared/events.ts";
import type {
  CharacterStatus,
  CombatState,
  Location,
  NewPoi,
  NewQuest,
  Poi,
  Quest,
  TurnOutcomeRecord,
  TurnTransaction,
} from "../port.ts";
import type { Db } from "./db.ts";
import { activeQuest, checkEvents, insertEvents, insertPoi, ownedCharacter } from "./queries.ts";
import { toJson, toJsonOrNull, toQuest } from "./rows.ts";

/** Maximum enemies in one combat. */
export const MAX_ENEMIES = 5;

const STATUSES: readonly CharacterStatus[] = ["Healthy", "Wounded", "Dead"];

/** What a transaction needs from its store. */
export interface TurnContext {
  db: Db;
  owner_id: string;
  character_id: string;
  turn_id: string;
  now: () => Date;
}

/** A buffered write; runs inside the commit transaction. */
type Op = () => void;

/** Throw unless a write changed exactly one row; 0 means the state moved under us. */
function one(changes: number, what: string): void {
  if (changes !== 1) throw new Error(`${what}: expected to change 1 row, changed ${changes}`);
}

/**
 * Buffered writer of one running turn. Validation runs against the state
 * loaded when the turn was opened plus the writes already buffered, so rule
 * breaks surface at the call that breaks them, not at commit.
 */
export class SqliteTurnTransaction implements TurnTransaction {
  readonly #ctx: TurnContext;
  readonly #ops: Op[] = [];
  /** The active quest as it will be after the buffered writes. */
  #quest: Quest | null;
  #status: CharacterStatus;
  #questStarted = false;
  #poiCreated = false;
  #narrativeAppended = false;
  #finished = false;

  /**
   * Load the character's state for validation.
   * @throws Error when the character is not owned by the owner or the turn is not running.
   */
  constructor(ctx: TurnContext) {
    this.#ctx = ctx;
    const { db, owner_id, character_id, turn_id } = ctx;
    const loaded = db.read(() => {
      const character = ownedCharacter(db, owner_id, character_id);
      const turn = db.get<{ status: string }>(
        "SELECT status FROM turns WHERE turn_id = ? AND character_id = ? AND owner_id = ?",
        turn_id,
        character_id,
        owner_id,
      );
      return { character, turn, quest: activeQuest(db, character_id) };
    });
    if (loaded.character === undefined) {
      throw new Error(`openTurn: character ${character_id} not found for this owner`);
    }
    if (loaded.turn === undefined) {
      throw new Error(`openTurn: turn ${turn_id} of character ${character_id} not found`);
    }
    if (loaded.turn.status !== "running") {
      throw new Error(`openTurn: turn ${turn_id} is ${loaded.turn.status}, not running`);
    }
    this.#status = loaded.character.status;
    this.#quest = loaded.quest === undefined ? null : toQuest(loaded.quest);
  }

  #open(method: string): void {
    if (this.#finished) {
      throw new Error(`${method}: turn ${this.#ctx.turn_id} is already committed or failed`);
    }
  }

  #iso(): string {
    return this.#ctx.now().toISOString();
  }

  startQuest(quest: NewQuest): Promise<Quest> {
    return attempt(() => {
      this.#open("startQuest");
      if (this.#questStarted) throw new Error("startQuest: a quest was already started this turn");
      if (this.#quest !== null) {
        throw new Error(`startQuest: quest ${this.#quest.quest_id} is still active`);
      }
      const started: Quest = {
        quest_id: crypto.randomUUID(),
        title: quest.title,
        summary: quest.summary,
        details: quest.details,
        poi_id: quest.poi_id,
        status: "active",
        progress: [],
        started_at: this.#iso(),
        ended_at: null,
      };
      // Serialise now: the caller may mutate its object before commit.
      const details = toJsonOrNull(quest.details, "quest details");
      const { db, character_id } = this.#ctx;
      this.#ops.push(() =>
        db.run(
          `INSERT INTO quests (quest_id, character_id, title, summary, details, poi_id, status,
             progress, started_at, ended_at)
           VALUES (?, ?, ?, ?, ?, ?, 'active', '[]', ?, NULL)`,
          started.quest_id,
          character_id,
          started.title,
          started.summary,
          details,
          started.poi_id,
          started.started_at,
        )
      );
      this.#quest = started;
      this.#questStarted = true;
      return { ...started, progress: [] };
    });
  }

  advanceQuest(progress: string): Promise<void> {
    return attempt(() => {
      this.#open("advanceQuest");
      const quest = this.#quest;
      if (quest === null) throw new Error("advanceQuest: there is no active quest");
      const { db } = this.#ctx;
      this.#ops.push(() =>
        one(
          db.run(
            `UPDATE quests SET progress = json_insert(progress, '$[#]', ?)
             WHERE quest_id = ? AND status = 'active'`,
            progress,
            quest.quest_id,
          ),
          `advanceQuest ${quest.quest_id}`,
        )
      );
      quest.progress.push(progress);
    });
  }

  endQuest(status: "completed" | "abandoned"): Promise<void> {
    return attempt(() => {
      this.#open("endQuest");
      if (status !== "completed" && status !== "abandoned") {
        throw new Error(`endQuest: invalid status ${String(status)}`);
      }
      const quest = this.#quest;
      if (quest === null) throw new Error("endQuest: there is no active quest");
      const endedAt = this.#iso();
      const { db } = this.#ctx;
      this.#ops.push(() =>
        one(
          db.run(
            "UPDATE quests SET status = ?, ended_at = ? WHERE quest_id = ? AND status = 'active'",
            status,
            endedAt,
            quest.quest_id,
          ),
          `endQuest ${quest.quest_id}`,
        )
      );
      this.#quest = null;
    });
  }

  setCombat(state: CombatState | null): Promise<void> {
    return attempt(() => {
      this.#open("setCombat");
      const { db, character_id } = this.#ctx;
      if (state === null) {
        this.#ops.push(() => db.run("DELETE FROM combat WHERE character_id = ?", character_id));
        return;
      }
      if (state.enemies.length > MAX_ENEMIES) {
        throw new Error(
          `setCombat: ${state.enemies.length} enemies, at most ${MAX_ENEMIES} are allowed`,
        );
      }
      const enemies = toJson(state.enemies, "combat enemies");
      this.#ops.push(() =>
        db.run(
          `INSERT INTO combat (character_id, combat_id, turn, enemies, notes, started_at)
           VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (character_id) DO UPDATE SET combat_id = excluded.combat_id,
             turn = excluded.turn, enemies = excluded.enemies, notes = excluded.notes,
             started_at = excluded.started_at`,
          character_id,
          state.combat_id,
          state.turn,
          enemies,
          state.notes,
          state.started_at,
        )
      );
    });
  }

  setStatus(status: CharacterStatus): Promise<void> {
    return attempt(() => {
      this.#open("setStatus");
      if (!STATUSES.includes(status)) throw new Error(`setStatus: invalid status ${status}`);
      if (this.#status === "Dead" && status !== "Dead") {
        throw new Error(`setStatus: the character is Dead and cannot become ${status}`);
      }
      const { db, character_id } = this.#ctx;
      this.#ops.push(() =>
        one(
          db.run("UPDATE characters SET status = ? WHERE character_id = ?", status, character_id),
          "setStatus",
        )
      );
      this.#status = status;
    });
  }

  createPoi(poi: NewPoi): Promise<Poi> {
    return attempt(() => {
      this.#open("createPoi");
      const created: Poi = {
        poi_id: crypto.randomUUID(),
        name: poi.name,
        description: poi.description,
        tags: [...poi.tags],
        created_at: this.#iso(),
      };
      const tags = toJson(created.tags, "POI tags");
      const { db, character_id } = this.#ctx;
      this.#ops.push(() => insertPoi(db, character_id, created, tags));
      this.#poiCreated = true;
      return { ...created, tags: [...created.tags] };
    });
  }

  setLocation(location: Location): Promise<void> {
    return attempt(() => {
      this.#open("setLocation");
      const { id, display_name, minor, poi_id } = location;
      const { db, character_id } = this.#ctx;
      this.#ops.push(() =>
        one(
          db.run(
            `UPDATE characters SET location_id = ?, location_display_name = ?, location_minor = ?,
               location_poi_id = ? WHERE character_id = ?`,
            id,
            display_name,
            minor,
            poi_id,
            character_id,
          ),
          "setLocation",
        )
      );
    });
  }

  appendNarrative(turn: { user_action: string; narrative: string }): Promise<void> {
    return attempt(() => {
      this.#open("appendNarrative");
      if (this.#narrativeAppended) {
        throw new Error("appendNarrative: this turn already appended its narrative");
      }
      const createdAt = this.#iso();
      const { user_action, narrative } = turn;
      const { db, character_id } = this.#ctx;
      // The number is taken from turn_count at commit, before the counters
      // move, so it is the number of this turn (the intro is 0).
      this.#ops.push(() =>
        one(
          db.run(
            `INSERT INTO narrative_turns (character_id, turn_number, user_action, narrative,
               created_at)
             SELECT character_id, turn_count + 1, ?, ?, ? FROM characters WHERE character_id = ?`,
            user_action,
            narrative,
            createdAt,
            character_id,
          ),
          "appendNarrative",
        )
      );
      this.#narrativeAppended = true;
    });
  }

  putPluginState(plugin: string, value: unknown): Promise<void> {
    return attempt(() => {
      this.#open("putPluginState");
      if (typeof plugin !== "string" || plugin === "") {
        throw new Error("putPluginState: the plugin name must be a non-empty string");
      }
      const json = toJson(value, `state of plugin ${plugin}`);
      const { db, character_id } = this.#ctx;
      this.#ops.push(() =>
        db.run(
          `INSERT INTO plugin_state (character_id, plugin, value) VALUES (?, ?, ?)
           ON CONFLICT (character_id, plugin) DO UPDATE SET value = excluded.value`,
          character_id,
          plugin,
          json,
        )
      );
    });
  }

  commit(outcome: TurnOutcomeRecord, events: TurnEvent[]): Promise<void> {
    return attempt(() => {
      this.#open("commit");
      const { db, character_id, turn_id } = this.#ctx;
      checkEvents(turn_id, events);
      const intents = toJsonOrNull(outcome.intents, "intents");
      const summary = toJson(outcome.subsystem_summary, "subsystem summary");
      const policy = toJson(outcome.policy, "policy");
      const usage = toJsonOrNull(outcome.usage, "usage");
      const completedAt = this.#iso();
      db.write(() => {
        for (const op of this.#ops) op();
        this.#updateCounters();
        one(
          db.run(
            `UPDATE turns SET status = 'completed', narrative = ?, intents = ?,
               subsystem_summary = ?, policy = ?, usage = ?, completed_at = ?
             WHERE turn_id = ? AND character_id = ? AND status = 'running'`,
            outcome.narrative,
            intents,
            summary,
            policy,
            usage,
            completedAt,
            turn_id,
            character_id,
          ),
          `commit: turn ${turn_id} is no longer running`,
        );
        insertEvents(db, turn_id, events);
      });
      // Only a successful commit finishes the turn: after a failed one the
      // engine must still be able to call fail().
      this.#finished = true;
    });
  }

  /**
   * Counters move by one only on a real turn (one that appended narrative);
   * a quest or POI created in the turn resets its cooldown counter anyway,
   * because the cooldown is about the creation, not about the narration.
   */
  #updateCounters(): void {
    const step = this.#narrativeAppended ? 1 : 0;
    if (step === 0 && !this.#questStarted && !this.#poiCreated) return;
    const { db, character_id } = this.#ctx;
    one(
      db.run(
        `UPDATE characters SET turn_count = turn_count + ?1,
           turns_since_last_quest = CASE WHEN ?2 THEN 0 ELSE turns_since_last_quest + ?1 END,
           turns_since_last_poi = CASE WHEN ?3 THEN 0 ELSE turns_since_last_poi + ?1 END
         WHERE character_id = ?4`,
        step,
        this.#questStarted ? 1 : 0,
        this.#poiCreated ? 1 : 0,
        character_id,
      ),
      "update turn counters",
    );
  }

  fail(error_type: string, events: TurnEvent[]): Promise<void> {
    return attempt(() => {
      this.#open("fail");
      const { db, turn_id } = this.#ctx;
      checkEvents(turn_id, events);
      const completedAt = this.#iso();
      db.write(() => {
        one(
          db.run(
            `UPDATE turns SET status = 'failed', error_type = ?, completed_at = ?
             WHERE turn_id = ? AND status = 'running'`,
            error_type,
            completedAt,
            turn_id,
          ),
          `fail: turn ${turn_id} is no longer running`,
        );
        insertEvents(db, turn_id, events);
      });
      this.#ops.length = 0;
      this.#finished = true;
    });
  }
}

/**
 * Run synchronous work as a promise so callers see one failure channel
 * (rejection) whether a rule break or a database error threw.
 */
export function attempt<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}
