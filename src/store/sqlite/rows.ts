/**
 * Row shapes of the SQLite schema and their mapping to the port's records.
 * Kept apart from the SQL so the mapping is reviewed in one place.
 *
 * @module
 */
import type { SubsystemSummary, TurnEvent } from "../../shared/events.ts";
import type {
  Character,
  CharacterStatus,
  CombatState,
  NarrativeTurn,
  Poi,
  Quest,
  TokenUsage,
  TurnRecord,
  TurnStatus,
} from "../port.ts";

/** The columns of `characters`. */
export interface CharacterRow {
  character_id: string;
  owner_id: string;
  name: string;
  race: string;
  class_name: string;
  custom_prompt: string | null;
  status: CharacterStatus;
  location_id: string | null;
  location_display_name: string | null;
  location_minor: string | null;
  location_poi_id: string | null;
  turn_count: number;
  turns_since_last_quest: number;
  turns_since_last_poi: number;
  created_at: string;
}

/** The columns of `quests`. */
export interface QuestRow {
  quest_id: string;
  title: string;
  summary: string;
  details: string | null;
  poi_id: string | null;
  status: Quest["status"];
  progress: string;
  started_at: string;
  ended_at: string | null;
}

/** The columns of `combat`. */
export interface CombatRow {
  combat_id: string;
  turn: number;
  enemies: string;
  notes: string | null;
  started_at: string;
}

/** The columns of `pois`. */
export interface PoiRow {
  poi_id: string;
  name: string;
  description: string;
  tags: string;
  created_at: string;
}

/** The columns of `turns`. */
export interface TurnRow {
  turn_id: string;
  character_id: string;
  owner_id: string;
  status: TurnStatus;
  user_action: string;
  narrative: string | null;
  intents: string | null;
  subsystem_summary: string | null;
  policy: string | null;
  usage: string | null;
  error_type: string | null;
  created_at: string;
  completed_at: string | null;
}

/** Parse a JSON column that may be NULL. */
export function parseJson<T>(text: string | null): T | null {
  return text === null ? null : JSON.parse(text) as T;
}

/**
 * Serialise a value for a JSON column. Throws instead of storing something
 * `JSON.parse` cannot give back (undefined, functions, symbols).
 */
export function toJson(value: unknown, what: string): string {
  const text = JSON.stringify(value);
  if (typeof text !== "string") throw new Error(`${what} is not JSON-serialisable`);
  return text;
}

/** Same as {@link toJson} but keeps null as SQL NULL. */
export function toJsonOrNull(value: unknown, what: string): string | null {
  return value === null || value === undefined ? null : toJson(value, what);
}

/** Row to `Character`. */
export function toCharacter(row: CharacterRow): Character {
  return {
    character_id: row.character_id,
    owner_id: row.owner_id,
    name: row.name,
    race: row.race,
    class_name: row.class_name,
    custom_prompt: row.custom_prompt,
    status: row.status,
    location: {
      id: row.location_id,
      display_name: row.location_display_name,
      minor: row.location_minor,
      poi_id: row.location_poi_id,
    },
    created_at: row.created_at,
  };
}

/** Row to `Quest`. */
export function toQuest(row: QuestRow): Quest {
  return {
    quest_id: row.quest_id,
    title: row.title,
    summary: row.summary,
    details: parseJson<Record<string, unknown>>(row.details),
    poi_id: row.poi_id,
    status: row.status,
    progress: JSON.parse(row.progress) as string[],
    started_at: row.started_at,
    ended_at: row.ended_at,
  };
}

/** Row to `CombatState`. */
export function toCombat(row: CombatRow): CombatState {
  return {
    combat_id: row.combat_id,
    turn: row.turn,
    enemies: JSON.parse(row.enemies) as CombatState["enemies"],
    notes: row.notes,
    started_at: row.started_at,
  };
}

/** Row to `Poi`. */
export function toPoi(row: PoiRow): Poi {
  return {
    poi_id: row.poi_id,
    name: row.name,
    description: row.description,
    tags: JSON.parse(row.tags) as string[],
    created_at: row.created_at,
  };
}

/** Row to `NarrativeTurn`; the row type is already the record. */
export function toNarrative(row: NarrativeTurn): NarrativeTurn {
  return { user_action: row.user_action, narrative: row.narrative, created_at: row.created_at };
}

/** Row to `TurnRecord`. */
export function toTurnRecord(row: TurnRow): TurnRecord {
  return {
    turn_id: row.turn_id,
    character_id: row.character_id,
    owner_id: row.owner_id,
    status: row.status,
    user_action: row.user_action,
    narrative: row.narrative,
    intents: parseJson<Record<string, unknown>>(row.intents),
    subsystem_summary: parseJson<SubsystemSummary>(row.subsystem_summary),
    policy: parseJson<Record<string, unknown>>(row.policy),
    usage: parseJson<TokenUsage>(row.usage),
    error_type: row.error_type,
    created_at: row.created_at,
    completed_at: row.completed_at,
  };
}

/** Parse a stored event. */
export function toEvent(row: { event: string }): TurnEvent {
  return JSON.parse(row.event) as TurnEvent;
}
