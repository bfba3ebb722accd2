/**
 * The server-side error class. Every failure the service reports carries an
 * `ErrorType` from the catalogue in `shared/errors.ts`.
 *
 * @module
 */
import { ERROR_CATALOGUE, type ErrorEnvelope, type ErrorType } from "./shared/errors.ts";

export {
  ERROR_CATALOGUE,
  type ErrorEnvelope,
  type ErrorType,
  isErrorType,
} from "./shared/errors.ts";

/**
 * An error with a catalogue type.
 *
 * @example
 * ```ts
 * throw new DmError("character_not_found", `Character ${id} not found`);
 * ```
 */
export class DmError extends Error {
  /** The catalogue entry. */
  readonly type: ErrorType;
  /** Extra fields added to the error envelope (never secrets). */
  readonly extra: Record<string, unknown>;
  /** Extra HTTP headers, e.g. `Retry-After`. */
  readonly headers: Record<string, string>;

  constructor(
    type: ErrorType,
    message?: string,
    options?: {
      cause?: unknown;
      extra?: Record<string, unknown>;
      headers?: Record<string, string>;
    },
  ) {
    super(message ?? ERROR_CATALOGUE[type].message, { cause: options?.cause });
    this.name = "DmError";
    this.type = type;
    this.extra = options?.extra ?? {};
    this.headers = options?.headers ?? {};
  }

  /** HTTP status from the catalogue. */
  get status(): number {
    return ERROR_CATALOGUE[this.type].status;
  }

  /** Whether a retry can succeed. */
  get recoverable(): boolean {
    return ERROR_CATALOGUE[this.type].recoverable;
  }
}

/** Turn anything thrown into a DmError; unknown errors become `internal_error`. */
export function toDmError(error: unknown): DmError {
  if (error instanceof DmError) return error;
  return new DmError("internal_error", undefined, { cause: error });
}

/** Build the documented error envelope. */
export function envelope(error: DmError, requestId: string | null): ErrorEnvelope {
  return {
    detail: {
      error: { ...error.extra, type: error.type, message: error.message, request_id: requestId },
    },
  };
}
