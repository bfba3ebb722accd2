/**
 * Typed client errors. Every failure the client reports is a
 * {@link DmClientError} whose `type` is an error type from the server's
 * catalogue (`shared/errors.ts`), or `network_error` when the server could
 * not be reached at all.
 *
 * @example
 * ```ts
 * try {
 *   for await (const event of client.playTurn(id, "look around")) render(event);
 * } catch (e) {
 *   if (e instanceof DmClientError && e.type === "rate_limited") wait(e.retryAfterSeconds);
 * }
 * ```
 *
 * @module
 */
import { ERROR_CATALOGUE, type ErrorType, isErrorType } from "../shared/errors.ts";
import type { ErrorEvent } from "../shared/events.ts";

/**
 * An error type: one of the server catalogue, or `network_error`, which only
 * the client produces (no answer from the server, after its own retries).
 */
export type DmClientErrorType = ErrorType | "network_error";

/** Fields of a {@link DmClientError}. */
export interface DmClientErrorInit {
  type: DmClientErrorType;
  message?: string;
  /** HTTP status; the catalogue's status for stream errors; 0 for network errors. */
  status?: number;
  recoverable?: boolean;
  retryAfterSeconds?: number | null;
  turnId?: string | null;
  requestId?: string | null;
  /** Extra machine-readable facts from the server. */
  details?: Record<string, unknown>;
  cause?: unknown;
}

/** A typed failure of the dungeon-master service or of reaching it. */
export class DmClientError extends Error {
  /** The catalogue error type, or `network_error`. */
  readonly type: DmClientErrorType;
  /** HTTP status (the catalogue's for stream errors, 0 for network errors). */
  readonly status: number;
  /** Whether trying the same thing again later can succeed. */
  readonly recoverable: boolean;
  /** How long the server asked to wait (`Retry-After`), if it did. */
  readonly retryAfterSeconds: number | null;
  /** The turn concerned: the failed turn, or the running one for `turn_in_progress`. */
  readonly turnId: string | null;
  /** The server's request id, for support. */
  readonly requestId: string | null;
  /** Extra facts the server sent with the error. */
  readonly details: Record<string, unknown>;

  constructor(init: DmClientErrorInit) {
    const spec = init.type === "network_error" ? null : ERROR_CATALOGUE[init.type];
    super(
      init.message ?? spec?.message ?? "The server could not be reached.",
      init.cause === undefined ? undefined : { cause: init.cause },
    );
    this.name = "DmClientError";
    this.type = init.type;
    this.status = init.status ?? spec?.status ?? 0;
    this.recoverable = init.recoverable ?? spec?.recoverable ?? true;
    this.retryAfterSeconds = init.retryAfterSeconds ?? null;
    this.turnId = init.turnId ?? null;
    this.requestId = init.requestId ?? null;
    this.details = init.details ?? {};
  }

  /**
   * The error a turn's `error` event describes, for callers that prefer to
   * throw it.
   *
   * @example
   * ```ts
   * if (event.type === "error") throw DmClientError.fromEvent(event);
   * ```
   */
  static fromEvent(event: ErrorEvent): DmClientError {
    const type = isErrorType(event.error_type) ? event.error_type : "internal_error";
    return new DmClientError({
      type,
      message: event.message,
      recoverable: event.recoverable,
      turnId: event.turn_id,
    });
  }
}

/** A network failure (no usable answer from the server). */
export function networkError(message: string, cause?: unknown): DmClientError {
  return new DmClientError({ type: "network_error", message, status: 0, recoverable: true, cause });
}

/** Seconds from a `Retry-After` header: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value === null) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.max(0, Math.ceil((date - now) / 1000));
}

/** A catalogue type for a status that came without the error envelope (e.g. from a proxy). */
function typeForStatus(status: number): ErrorType {
  switch (status) {
    case 400:
    case 422:
      return "validation_error";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 405:
      return "method_not_allowed";
    case 408:
      return "request_timeout";
    case 413:
      return "payload_too_large";
    case 415:
      return "unsupported_media_type";
    case 429:
      return "rate_limited";
    case 502:
    case 503:
    case 504:
      // A gateway in front of the service is down or busy: try again.
      return "overloaded";
    default:
      return "internal_error";
  }
}

function numberOrNull(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/**
 * Build the error an HTTP error response describes: the documented envelope
 * `{"detail":{"error":{type, message, request_id, …}}}` when present,
 * otherwise a type chosen from the status. Reads (and so consumes) the body.
 */
export async function errorFromResponse(response: Response): Promise<DmClientError> {
  let body: unknown = null;
  try {
    const text = await response.text();
    body = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: a proxy's error page. The status decides.
  }
  const error = (body as { detail?: { error?: Record<string, unknown> } } | null)?.detail?.error;
  const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
  const requestId = response.headers.get("x-request-id");
  if (error && isErrorType(error.type)) {
    const { type, message, request_id, ...details } = error;
    return new DmClientError({
      type,
      message: typeof message === "string" ? message : undefined,
      status: response.status,
      retryAfterSeconds: retryAfter ?? numberOrNull(details.retry_after_seconds),
      turnId: typeof details.turn_id === "string" ? details.turn_id : null,
      requestId: typeof request_id === "string" ? request_id : requestId,
      details,
    });
  }
  const type = typeForStatus(response.status);
  return new DmClientError({
    type,
    message: `${ERROR_CATALOGUE[type].message} (HTTP ${response.status})`,
    status: response.status,
    retryAfterSeconds: retryAfter,
    requestId,
  });
}

/**
 * The error of a WebSocket request-level error message (`turn_id: null`,
 * `seq: 0`): a message that could not be carried out, before any turn ran.
 */
export function errorFromWsRequestError(message: Record<string, unknown>): DmClientError {
  const type = isErrorType(message.error_type) ? message.error_type : "internal_error";
  const details = typeof message.details === "object" && message.details !== null
    ? message.details as Record<string, unknown>
    : {};
  return new DmClientError({
    type,
    message: typeof message.message === "string" ? message.message : undefined,
    recoverable: typeof message.recoverable === "boolean" ? message.recoverable : undefined,
    retryAfterSeconds: numberOrNull(details.retry_after_seconds),
    turnId: typeof details.turn_id === "string" ? details.turn_id : null,
    details,
  });
}
