/**
 * The JSON shapes of the HTTP API as the client sees them, and the client's
 * options. Turn events come from `shared/events.ts`, the one definition the
 * server uses too.
 *
 * @module
 */
import type { TurnEvent } from "../shared/events.ts";

/** `POST /characters` body. */
export interface NewCharacterInput {
  name: string;
  race: string;
  class_name: string;
  /** The setting or tone of the adventure, in the player's words. */
  custom_prompt?: string | null;
}

/** `POST /characters` answer: the new id and the opening scene. */
export interface CreatedCharacter {
  character_id: string;
  narrative: string;
}

/** Where a character is. */
export interface CharacterLocation {
  id: string | null;
  display_name: string | null;
  minor: string | null;
  poi_id: string | null;
}

/** The active quest. */
export interface CharacterQuest {
  quest_id: string;
  title: string;
  summary: string;
  details: Record<string, unknown> | null;
  poi_id: string | null;
  status: "active" | "completed" | "abandoned";
  progress: string[];
  started_at: string;
  ended_at: string | null;
}

/** An enemy in the current fight. */
export interface CharacterEnemy {
  enemy_id: string;
  name: string;
  description: string | null;
  threat: string | null;
  status: "Healthy" | "Wounded" | "Dead";
}

/** The current fight. */
export interface CharacterCombat {
  combat_id: string;
  turn: number;
  enemies: CharacterEnemy[];
  notes: string | null;
  started_at: string;
}

/** A discovered place. */
export interface CharacterPoi {
  poi_id: string;
  name: string;
  description: string;
  tags: string[];
  created_at: string;
}

/** One played exchange. */
export interface CharacterTurn {
  user_action: string;
  narrative: string;
  created_at: string;
}

/** `GET /characters/{id}`. */
export interface CharacterSheet {
  character_id: string;
  name: string;
  race: string;
  class_name: string;
  custom_prompt: string | null;
  status: "Healthy" | "Wounded" | "Dead";
  location: CharacterLocation;
  quest: CharacterQuest | null;
  combat: CharacterCombat | null;
  /** Discovered places, newest first. */
  pois: CharacterPoi[];
  /** Most recent last. */
  recent_turns: CharacterTurn[];
  turn_count: number;
  /** Plugin-owned state, keyed by plugin name. */
  extensions: Record<string, unknown>;
  created_at: string;
}

/** `GET /turns/{id}`. */
export interface TurnRecordView {
  turn_id: string;
  character_id: string;
  status: "running" | "completed" | "failed";
  user_action: string;
  narrative: string | null;
  intents: Record<string, unknown> | null;
  subsystem_summary: Record<string, unknown> | null;
  usage: { input_tokens: number; output_tokens: number } | null;
  error_type: string | null;
  created_at: string;
  completed_at: string | null;
}

/** The streaming transports. */
export type Transport = "sse" | "websocket";

/** The connection of a running turn, reported to `onConnection`. */
export type ConnectionState =
  | { state: "connecting"; transport: Transport; attempt: number }
  | { state: "streaming"; transport: Transport; turnId: string | null }
  | {
    state: "reconnecting";
    transport: Transport;
    /** 1 for the first reconnect after progress was last made. */
    attempt: number;
    delayMs: number;
    /** Why the previous connection ended. */
    reason: string;
  }
  | { state: "closed"; transport: Transport };

/** Options of `playTurn` and `followTurn`. */
export interface PlayOptions {
  /** Defaults to `"sse"`. */
  transport?: Transport;
  /** Aborting stops following (the turn itself goes on on the server). */
  signal?: AbortSignal;
  /**
   * Sent with the submission so the client's own retries never play the
   * turn twice. Defaults to a fresh `crypto.randomUUID()`.
   */
  idempotencyKey?: string;
  /** Called when the connection changes, e.g. to show "reconnecting…". */
  onConnection?: (state: ConnectionState) => void;
}

/** Options of `followTurn`. */
export interface FollowOptions extends Omit<PlayOptions, "idempotencyKey"> {
  /** Resume after this seq (0 replays the whole turn). */
  afterSeq?: number;
}

/** The events of one turn, with its id once known. */
export interface TurnStream extends AsyncIterable<TurnEvent> {
  /** The turn id, known after the server accepted the turn. */
  readonly turnId: string | null;
  /** The idempotency key the submission carries. */
  readonly idempotencyKey: string | null;
  /** The last seq yielded. */
  readonly lastSeq: number;
}
