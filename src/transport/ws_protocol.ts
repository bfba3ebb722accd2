/**
 * The WebSocket protocol of `GET /ws`: the messages a client may send, and
 * the messages the server sends besides the turn events of
 * `shared/events.ts`. Clients can import the types; the server validates
 * client messages with the schemas here, which reuse the `POST /turn` body
 * rules so a turn is validated the same way on every transport.
 *
 * @module
 */
import { z } from "zod";
import { IdempotencyKey, TurnBody, uuid } from "../http/schemas.ts";
import type { ErrorType } from "../shared/errors.ts";
import type { TurnEvent } from "../shared/events.ts";

/** Largest accepted client message, in bytes of UTF-8 (same cap as HTTP bodies). */
export const MAX_WS_MESSAGE_BYTES = 64 * 1024;

/** WebSocket close codes the server uses. */
export const WS_CLOSE = {
  /** Normal closure (answering a client's close). */
  normal: 1000,
  /** The server is shutting down. */
  goingAway: 1001,
  /** A client message was larger than {@link MAX_WS_MESSAGE_BYTES}. */
  messageTooBig: 1009,
  /** An unexpected server error. */
  internalError: 1011,
  /** The client read too slowly; its turn goes on and can be resumed. */
  tryAgainLater: 1013,
  /**
   * Authentication failed: under `DM_AUTH=jwt` the first message was not a
   * valid `{"type":"auth","token":…}`, or none came within the auth deadline.
   */
  unauthorized: 4401,
} as const;

/** `{"type":"turn", …}`: play a turn and stream its events. */
export const WsTurnMessage = TurnBody.extend({
  type: z.literal("turn"),
  idempotency_key: IdempotencyKey.nullish(),
  traceparent: z.string().max(512, "at most 512 characters").nullish(),
});

/** `{"type":"resume", …}`: stream a turn's events after `after_seq`. */
export const WsResumeMessage = z.object({
  type: z.literal("resume"),
  turn_id: uuid.transform((s) => s.toLowerCase()),
  after_seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
});

/**
 * `{"type":"auth","token":…}`: the first message under `DM_AUTH=jwt`
 * (browsers cannot send an Authorization header with a WebSocket). Answered
 * with `{"type":"authenticated","user_id":…}`. Accepted and answered with
 * the user `local` when auth is off, so clients can always send it.
 */
export const WsAuthMessage = z.object({
  type: z.literal("auth"),
  token: z.string().min(1, "must not be empty").max(8192, "at most 8192 characters"),
});

/** `{"type":"ping"}`: answered with `{"type":"pong"}`. */
export const WsPingMessage = z.object({ type: z.literal("ping") });

/** A message a client sends. */
export type WsClientMessage =
  | z.input<typeof WsAuthMessage>
  | z.input<typeof WsTurnMessage>
  | z.input<typeof WsResumeMessage>
  | z.input<typeof WsPingMessage>;

/** Client message types the server knows. */
export const WS_CLIENT_TYPES = ["auth", "turn", "resume", "ping"] as const;

/** Sent after the last event of every turn the socket followed. */
export interface WsDone {
  type: "done";
  turn_id: string;
}

/** The answer to a successful `auth` message. */
export interface WsAuthenticated {
  type: "authenticated";
  user_id: string;
}

/** The answer to a ping. */
export interface WsPong {
  type: "pong";
}

/**
 * A client message that could not be carried out: malformed JSON, an
 * unknown type, failed validation, or an error before a turn started (404,
 * 409, 429, 503 on HTTP). It belongs to no turn, so `turn_id` is null and
 * `seq` is 0; it never ends a turn and the socket stays open. A turn that
 * fails after it started ends with an ordinary turn `error` event instead.
 */
export interface WsRequestError {
  type: "error";
  turn_id: null;
  seq: 0;
  timestamp: string;
  error_type: ErrorType;
  message: string;
  recoverable: boolean;
  /** The `type` of the client message this answers, or null if it had none. */
  in_reply_to: string | null;
  /**
   * Machine-readable facts, as in the HTTP error envelope: `turn_id` of the
   * running turn for `turn_in_progress`, `retry_after_seconds` for
   * `rate_limited` and `overloaded`.
   */
  details: Record<string, unknown>;
}

/** Any message the server sends. */
export type WsServerMessage = TurnEvent | WsDone | WsPong | WsAuthenticated | WsRequestError;
