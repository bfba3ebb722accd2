/**
 * The store port: everything the turn engine and plugins need from a journey
 * log, whatever holds it (embedded SQLite, or the external journey-log
 * service). Adapters live beside this file.
 *
 * @module
 */
import type { SubsystemSummary, TurnEvent } from "../shared/events.ts";

/** Character health states. `Dead` is final. */
export type CharacterStatus = "Healthy" | "Wounded" | "Dead";

/** Where a character is. */
export interface Location {
  /** Stable id such as `inn:rusty_tankard`, or null when unknown. */
  id: string | null;
  display_name: string | null;
  /** A place inside the location ("the cellar"). */
  minor: string | null;
  /** The POI the character is currently at, if any. */
  poi_id: string | null;
}

/** Fields given when a character is created. */
export interface NewCharacter {
  name: string;
  race: string;
  class_name: string;
  custom_prompt: string | null;
}

/** A stored character. */
export interface Character extends NewCharacter {
  character_id: string;
  owner_id: string;
  status: CharacterStatus;
  location: Location;
  created_at: string;
}

/** A quest as given to the store. */
export interface NewQuest {
  title: string;
  summary: string;
  details: Record<string, unknown> | null;
  /** A POI this quest was tied to by the quest→POI reference roll. */
  poi_id: string | null;
}

/** A stored quest. */
export interface Quest extends NewQuest {
  quest_id: string;
  status: "active" | "completed" | "abandoned";
  progress: string[];
  started_at: string;
  ended_at: string | null;
}

/** An enemy in combat. */
export interface Enemy {
  enemy_id: string;
  name: string;
  description: string | null;
  threat: string | null;
  status: "Healthy" | "Wounded" | "Dead";
}

/** Combat state; at most 5 enemies. */
export interface CombatState {
  combat_id: string;
  turn: number;
  enemies: Enemy[];
  notes: string | null;
  started_at: string;
}

/** A point of interest as given to the store. */
export interface NewPoi {
  name: string;
  description: string;
  tags: string[];
}

/** A stored point of interest. */
export interface Poi extends NewPoi {
  poi_id: string;
  created_at: string;
}

/** One narrative exchange of the journey log. */
export interface NarrativeTurn {
  user_action: string;
  narrative: string;
  created_at: string;
}

/** Everything a turn needs to know about its character, loaded once per turn. */
export interface CharacterContext {
  character: Character;
  quest: Quest | null;
  combat: CombatState | null;
  /** Most recent last. */
  recent_turns: NarrativeTurn[];
  /** Number of narrative turns played so far (the intro excluded). */
  turn_count: number;
  turns_since_last_quest: number;
  turns_since_last_poi: number;
  /** Plugin-owned state, keyed by plugin name. */
  plugin_state: Record<string, unknown>;
}

/** The public view of a character (`GET /characters/{id}`). */
export interface CharacterView extends CharacterContext {
  /** Discovered places, newest first. */
  pois: Poi[];
}

/** Turn lifecycle states. */
export type TurnStatus = "running" | "completed" | "failed";

/** Token usage reported by the model. */
export interface TokenUsage {
  input_tokens: number;
  output_tokens: number;
}

/** A stored turn record. */
export interface TurnRecord {
  turn_id: string;
  character_id: string;
  owner_id: string;
  status: TurnStatus;
  user_action: string;
  narrative: string | null;
  intents: Record<string, unknown> | null;
  subsystem_summary: SubsystemSummary | null;
  /** Policy decisions: operator-facing only, never shown to players. */
  policy: Record<string, unknown> | null;
  usage: TokenUsage | null;
  error_type: string | null;
  created_at: string;
  completed_at: string | null;
}

/** A request to start a turn. */
export interface TurnStart {
  turn_id: string;
  character_id: string;
  owner_id: string;
  user_action: string;
  /** Idempotency key and a hash of the request it came with. */
  idempotency: { key: string; request_hash: string } | null;
  start_event: TurnEvent;
}

/** Result of trying to start a turn. */
export type BeginTurnResult =
  | { kind: "started" }
  /** The idempotency key was seen before with the same request. */
  | { kind: "duplicate"; turn_id: string }
  /** The idempotency key was seen before with a different request. */
  | { kind: "key_reused" }
  /** Another turn of this character is still running. */
  | { kind: "busy"; turn_id: string };

/**
 * The writes of one turn. Adapters decide how they land: the SQLite adapter
 * buffers them and commits them with the turn record in one transaction; the
 * journey-log adapter sends each at once, because that service has no
 * transactions. Every method throws on failure.
 */
export interface TurnWriter {
  startQuest(quest: NewQuest): Promise<Quest>;
  advanceQuest(progress: string): Promise<void>;
  endQuest(status: "completed" | "abandoned"): Promise<void>;
  /** Replace the combat state; null ends combat. */
  setCombat(state: CombatState | null): Promise<void>;
  setStatus(status: CharacterStatus): Promise<void>;
  createPoi(poi: NewPoi): Promise<Poi>;
  setLocation(location: Location): Promise<void>;
  appendNarrative(turn: { user_action: string; narrative: string }): Promise<void>;
  /** Replace one plugin's state for this character. */
  putPluginState(plugin: string, value: unknown): Promise<void>;
}

/** How a turn ends, stored with its record. */
export interface TurnOutcomeRecord {
  narrative: string;
  intents: Record<string, unknown> | null;
  subsystem_summary: SubsystemSummary;
  policy: Record<string, unknown>;
  usage: TokenUsage | null;
}

/** An open unit of work for one turn. */
export interface TurnTransaction extends TurnWriter {
  /** Commit the writes with the completed turn record and its remaining events. */
  commit(outcome: TurnOutcomeRecord, events: TurnEvent[]): Promise<void>;
  /** Drop buffered writes and mark the turn failed with its remaining events. */
  fail(error_type: string, events: TurnEvent[]): Promise<void>;
}

/** The state store used by the engine. */
export interface Store {
  /** Adapter name, used in spans and logs (`sqlite`, `journey-log`). */
  readonly kind: string;
  ready(): Promise<boolean>;
  /** Create a character with its intro turn and origin POI. */
  createCharacter(
    owner_id: string,
    input: NewCharacter,
    intro: { narrative: string; location: Location; origin: NewPoi | null },
  ): Promise<Character>;
  /** Load the context for a turn; null when missing or not owned by `owner_id`. */
  loadContext(owner_id: string, character_id: string): Promise<CharacterContext | null>;
  /** The public character view; null when missing or not owned. */
  getCharacter(owner_id: string, character_id: string): Promise<CharacterView | null>;
  /** Up to `n` random POIs of the character. */
  randomPois(owner_id: string, character_id: string, n: number): Promise<Poi[]>;
  /** All POIs of the character, newest first. */
  listPois(owner_id: string, character_id: string): Promise<Poi[]>;
  /** Record a running turn (and its idempotency key) unless a rule forbids it. */
  beginTurn(start: TurnStart): Promise<BeginTurnResult>;
  /**
   * Look up an idempotency key of `owner_id` seen within the last 24 h:
   * `duplicate` when it came with the same `request_hash`, `key_reused` when
   * with another, null when unknown or expired. Read-only.
   */
  findIdempotent(
    owner_id: string,
    key: string,
    request_hash: string,
  ): Promise<{ kind: "duplicate"; turn_id: string } | { kind: "key_reused" } | null>;
  /** Open the unit of work for a running turn. */
  openTurn(owner_id: string, character_id: string, turn_id: string): TurnTransaction;
  /** Persist events of a running turn (used to keep the log durable during long streams). */
  appendEvents(turn_id: string, events: TurnEvent[]): Promise<void>;
  getTurn(turn_id: string): Promise<TurnRecord | null>;
  /** Events of a turn with seq greater than `after_seq`, in order. */
  getEvents(turn_id: string, after_seq: number): Promise<TurnEvent[]>;
  /** Mark turns left `running` by a crash as failed; returns how many. */
  recoverInterrupted(): Promise<number>;
  close(): Promise<void>;
}
