/**
 * SQL shared by the store and its turn transactions. Statements are plain
 * strings so the statement cache in `Db` can key on them.
 *
 * @module
 */
import type { TurnEvent } from "../../shared/events.ts";
import type { Poi } from "../port.ts";
import type { CharacterRow, CombatRow, PoiRow, QuestRow } from "./rows.ts";
import type { Db } from "./db.ts";

/** Character columns, in `CharacterRow` order. */
export const CHARACTER_COLUMNS = `character_id, owner_id, name, race, class_name, custom_prompt,
  status, location_id, location_display_name, location_minor, location_poi_id, turn_count,
  turns_since_last_quest, turns_since_last_poi, created_at`;

/** The user action stored with the intro narrative. */
export const INTRO_ACTION = "Begins their journey.";

/** How many narrative turns a context carries. */
export const RECENT_TURNS = 20;

/** A character owned by `owner`, or undefined. */
export function ownedCharacter(db: Db, owner_id: string, character_id: string) {
  return db.get<CharacterRow>(
    `SELECT ${CHARACTER_COLUMNS} FROM characters WHERE character_id = ? AND owner_id = ?`,
    character_id,
    owner_id,
  );
}

/** The active quest of a character, or undefined. */
export function activeQuest(db: Db, character_id: string) {
  return db.get<QuestRow>(
    `SELECT quest_id, title, summary, details, poi_id, status, progress, started_at, ended_at
     FROM quests WHERE character_id = ? AND status = 'active'`,
    character_id,
  );
}

/** The combat row of a character, or undefined. */
export function combatOf(db: Db, character_id: string) {
  return db.get<CombatRow>(
    "SELECT combat_id, turn, enemies, notes, started_at FROM combat WHERE character_id = ?",
    character_id,
  );
}

/** POIs of a character, newest first (rowid breaks ties between equal timestamps). */
export function poisNewestFirst(db: Db, character_id: string) {
  return db.all<PoiRow>(
    `SELECT poi_id, name, description, tags, created_at FROM pois WHERE character_id = ?
     ORDER BY created_at DESC, rowid DESC`,
    character_id,
  );
}

/** Insert a POI whose id and timestamp were already assigned. */
export function insertPoi(db: Db, character_id: string, poi: Poi, tagsJson: string): void {
  db.run(
    `INSERT INTO pois (poi_id, character_id, name, description, tags, created_at)
     VALUES (?, ?, ?, ?, ?, ?)`,
    poi.poi_id,
    character_id,
    poi.name,
    poi.description,
    tagsJson,
    poi.created_at,
  );
}

/** Check that events belong to `turn_id` before any is written. */
export function checkEvents(turn_id: string, events: readonly TurnEvent[]): void {
  for (const event of events) {
    if (event.turn_id !== turn_id) {
      throw new Error(`event seq ${event.seq} belongs to turn ${event.turn_id}, not ${turn_id}`);
    }
    if (!Number.isSafeInteger(event.seq) || event.seq < 0) {
      throw new Error(`event of turn ${turn_id} has an invalid seq ${event.seq}`);
    }
  }
}

/**
 * Insert events, ignoring ones already stored: the periodic flush during a
 * stream and the final commit may both carry the same seq.
 * Call inside a transaction; call {@link checkEvents} first.
 */
export function insertEvents(db: Db, turn_id: string, events: readonly TurnEvent[]): void {
  for (const event of events) {
    db.run(
      "INSERT OR IGNORE INTO turn_events (turn_id, seq, event) VALUES (?, ?, ?)",
      turn_id,
      event.seq,
      JSON.stringify(event),
    );
  }
}
