/**
 * The one error catalogue. HTTP statuses, SSE `error` events and WebSocket
 * errors are all derived from this table, so a client can rely on a single
 * list of `error_type` values whatever transport it uses.
 *
 * This module has no dependencies so that the client library can import it.
 *
 * @module
 */

/** Static facts about one error type. */
export interface ErrorSpec {
  /** HTTP status used when the error is answered before a stream starts. */
  readonly status: number;
  /** Whether retrying the same request later can succeed. */
  readonly recoverable: boolean;
  /** Default player-safe message. */
  readonly message: string;
}

/** Every error type the service can produce. */
export const ERROR_CATALOGUE = {
  validation_error: { status: 422, recoverable: false, message: "The request is invalid." },
  unauthorized: { status: 401, recoverable: false, message: "Authentication is required." },
  forbidden: { status: 403, recoverable: false, message: "Not allowed." },
  not_found: { status: 404, recoverable: false, message: "No such route." },
  character_not_found: { status: 404, recoverable: false, message: "Character not found." },
  turn_not_found: { status: 404, recoverable: false, message: "Turn not found." },
  method_not_allowed: { status: 405, recoverable: false, message: "Method not allowed." },
  game_over: {
    status: 409,
    recoverable: false,
    message: "This character is dead; the adventure is over.",
  },
  turn_in_progress: {
    status: 409,
    recoverable: true,
    message: "Another turn is still running for this character.",
  },
  idempotency_key_reused: {
    status: 422,
    recoverable: false,
    message: "This Idempotency-Key was already used with a different request body.",
  },
  request_timeout: {
    status: 408,
    recoverable: true,
    message: "The request body was not received in time.",
  },
  payload_too_large: { status: 413, recoverable: false, message: "The request body is too large." },
  unsupported_media_type: {
    status: 415,
    recoverable: false,
    message: "Send the body as application/json.",
  },
  rate_limited: { status: 429, recoverable: true, message: "Too many requests; slow down." },
  overloaded: { status: 503, recoverable: true, message: "The server is busy; try again soon." },
  not_ready: { status: 503, recoverable: true, message: "The service is not ready." },
  cancelled: { status: 499, recoverable: true, message: "The turn was cancelled." },
  llm_timeout: {
    status: 504,
    recoverable: true,
    message: "The storyteller took too long to answer. Please try again.",
  },
  llm_error: { status: 502, recoverable: false, message: "The storyteller failed." },
  llm_response_error: {
    status: 502,
    recoverable: false,
    message: "The storyteller returned an empty answer.",
  },
  journey_log_timeout: {
    status: 504,
    recoverable: true,
    message: "The journey log timed out. Please try again.",
  },
  journey_log_error: {
    status: 502,
    recoverable: false,
    message: "The journey log could not be reached.",
  },
  interrupted: {
    status: 503,
    recoverable: true,
    message: "The server stopped before this turn finished; nothing was written.",
  },
  internal_error: { status: 500, recoverable: false, message: "An unexpected error occurred." },
} as const satisfies Record<string, ErrorSpec>;

/** A known error type name. */
export type ErrorType = keyof typeof ERROR_CATALOGUE;

/** Whether `value` names an error in the catalogue. */
export function isErrorType(value: unknown): value is ErrorType {
  return typeof value === "string" && Object.hasOwn(ERROR_CATALOGUE, value);
}

/** The JSON body of every HTTP error response. */
export interface ErrorEnvelope {
  detail: {
    error: {
      type: ErrorType;
      message: string;
      request_id: string | null;
      /** Extra machine-readable facts, e.g. `turn_id` for `turn_in_progress`. */
      [extra: string]: unknown;
    };
  };
}
