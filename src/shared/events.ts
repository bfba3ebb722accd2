/**
 * Turn events: the single definition shared by the server transports and the
 * client library. Every event carries `type`, `turn_id`, `seq` (1, 2, 3, …
 * within a turn) and an ISO-8601 `timestamp`.
 *
 * @module
 */
import type { ErrorType } from "./errors.ts";

/** Per-subsystem write result reported to clients. */
export interface ChangeResult {
  action: string;
  success: boolean | null;
  error: string | null;
}

/** What the apply phase actually did, reported with every completed turn. */
export interface SubsystemSummary {
  quest_change: ChangeResult;
  combat_change: ChangeResult;
  poi_change: ChangeResult;
  narrative_persisted: boolean;
  narrative_error: string | null;
  /** Further changes reported by plugins, keyed `<subsystem>_change`. */
  [change: string]: ChangeResult | boolean | string | null;
}

/** Fields common to every event. */
export interface EventBase {
  turn_id: string;
  seq: number;
  timestamp: string;
}

/** The turn was accepted and is running. */
export interface StartEvent extends EventBase {
  type: "start";
  character_id: string;
}

/** A fragment of narrative prose. Concatenated tokens equal the final narrative. */
export interface TokenEvent extends EventBase {
  type: "token";
  content: string;
}

/** Timing facts of a finished turn. */
export interface TurnTiming {
  total_duration_ms: number;
  time_to_first_token_ms: number | null;
  total_tokens: number;
}

/** The turn finished and its writes are committed. */
export interface CompleteEvent extends EventBase {
  type: "complete";
  narrative: string;
  intents: Record<string, unknown> | null;
  subsystem_summary: SubsystemSummary;
  timing: TurnTiming;
}

/** The turn failed; nothing of it was written. */
export interface ErrorEvent extends EventBase {
  type: "error";
  error_type: ErrorType;
  message: string;
  recoverable: boolean;
}

/** Any event of a turn. */
export type TurnEvent = StartEvent | TokenEvent | CompleteEvent | ErrorEvent;

/** An event that ends a turn. */
export type TerminalEvent = CompleteEvent | ErrorEvent;

/** Whether the event ends its turn. */
export function isTerminal(event: TurnEvent): event is TerminalEvent {
  return event.type === "complete" || event.type === "error";
}
