/**
 * The reconnecting turn stream shared by both transports. A transport
 * supplies one connection attempt at a time; this loop validates and
 * de-duplicates events by `seq`, resumes after drops with backoff, and ends
 * after the turn's `complete` or `error` event.
 *
 * @module
 */
import type { TurnEvent } from "../shared/events.ts";
import { backoffDelay, sleep } from "./backoff.ts";
import type { ClientContext } from "./context.ts";
import { DmClientError, networkError } from "./errors.ts";
import type { ConnectionState, Transport, TurnStream } from "./types.ts";

/** What a connection attempt needs to know about the turn so far. */
export interface TurnProgress {
  /** Set once the server accepted the turn; later attempts resume it. */
  turnId: string | null;
  /** The last seq delivered to the caller. */
  lastSeq: number;
  /** Present when this stream submits a new turn. */
  submit: { characterId: string; action: string; idempotencyKey: string } | null;
}

/**
 * One connection: yields the raw messages (parsed JSON) it receives that may
 * be turn events, and returns only when the server marks the end of the
 * stream (SSE `[DONE]`, WebSocket `done`). It throws a {@link DmClientError}
 * for answers the server gave, anything else for a broken connection
 * (including a stream that ends without the end mark).
 */
export type ConnectAttempt = (
  ctx: ClientContext,
  progress: TurnProgress,
  signal: AbortSignal,
) => AsyncGenerator<unknown>;

/** A connection ended before the turn did. */
export class DroppedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DroppedError";
  }
}

const EVENT_TYPES = new Set(["start", "token", "complete", "error"]);

/** Check the shape of a server message; null if it is not a turn event. */
export function asTurnEvent(value: unknown): TurnEvent | null {
  if (typeof value !== "object" || value === null) return null;
  const v = value as Record<string, unknown>;
  if (typeof v.type !== "string" || !EVENT_TYPES.has(v.type)) return null;
  if (typeof v.turn_id !== "string" || !Number.isSafeInteger(v.seq) || (v.seq as number) < 1) {
    return null;
  }
  switch (v.type) {
    case "token":
      return typeof v.content === "string" ? value as TurnEvent : null;
    case "complete":
      return typeof v.narrative === "string" ? value as TurnEvent : null;
    case "error":
      return typeof v.error_type === "string" ? value as TurnEvent : null;
    default:
      return value as TurnEvent;
  }
}

/** Errors the server may clear up by itself; retried like a dropped connection. */
function retryableAnswer(error: DmClientError): boolean {
  return error.type === "overloaded" || error.type === "not_ready";
}

/** The {@link TurnStream} of one turn. Iterate it once. */
export class ReconnectingTurnStream implements TurnStream {
  readonly #ctx: ClientContext;
  readonly #transport: Transport;
  readonly #connect: ConnectAttempt;
  readonly #progress: TurnProgress;
  readonly #signal: AbortSignal | undefined;
  readonly #onConnection: ((state: ConnectionState) => void) | undefined;
  #iterated = false;

  constructor(options: {
    ctx: ClientContext;
    transport: Transport;
    connect: ConnectAttempt;
    progress: TurnProgress;
    signal?: AbortSignal;
    onConnection?: (state: ConnectionState) => void;
  }) {
    this.#ctx = options.ctx;
    this.#transport = options.transport;
    this.#connect = options.connect;
    this.#progress = options.progress;
    this.#signal = options.signal;
    this.#onConnection = options.onConnection;
  }

  get turnId(): string | null {
    return this.#progress.turnId;
  }

  get idempotencyKey(): string | null {
    return this.#progress.submit?.idempotencyKey ?? null;
  }

  get lastSeq(): number {
    return this.#progress.lastSeq;
  }

  [Symbol.asyncIterator](): AsyncIterator<TurnEvent> {
    if (this.#iterated) throw new Error("A TurnStream can be iterated only once.");
    this.#iterated = true;
    return this.#run();
  }

  #report(state: ConnectionState): void {
    try {
      this.#onConnection?.(state);
    } catch {
      // A failing UI callback must not break the stream.
    }
  }

  async *#run(): AsyncGenerator<TurnEvent> {
    const progress = this.#progress;
    const transport = this.#transport;
    const policy = this.#ctx.retry;
    // Attempts in a row without a new event; progress resets it.
    let failures = 0;
    let lastAnswer: DmClientError | null = null;
    try {
      while (true) {
        this.#signal?.throwIfAborted();
        const attempt = new AbortController();
        const stop = () => attempt.abort(this.#signal?.reason);
        this.#signal?.addEventListener("abort", stop, { once: true });
        this.#report({ state: "connecting", transport, attempt: failures });
        let streaming = false;
        let reason: string;
        let retryAfterMs = 0;
        try {
          for await (const raw of this.#connect(this.#ctx, progress, attempt.signal)) {
            const event = asTurnEvent(raw);
            if (event === null) {
              throw new DmClientError({
                type: "internal_error",
                message: "The server sent a message that is not a turn event.",
                details: { received: raw },
              });
            }
            if (progress.turnId !== null && event.turn_id !== progress.turnId) continue;
            if (event.seq <= progress.lastSeq) continue;
            if (event.seq !== progress.lastSeq + 1) {
              throw new DroppedError(`missed events ${progress.lastSeq + 1}-${event.seq - 1}`);
            }
            progress.turnId ??= event.turn_id;
            progress.lastSeq = event.seq;
            failures = 0;
            if (!streaming) {
              streaming = true;
              this.#report({ state: "streaming", transport, turnId: progress.turnId });
            }
            yield event;
            if (event.type === "complete" || event.type === "error") return;
          }
          // The server said the stream is over ([DONE] or done) without a
          // new terminal event: a follow that started past the turn's end.
          return;
        } catch (e) {
          if (this.#signal?.aborted) throw this.#signal.reason;
          if (e instanceof DmClientError) {
            if (!retryableAnswer(e)) throw e;
            retryAfterMs = (e.retryAfterSeconds ?? 0) * 1000;
            lastAnswer = e;
          } else {
            lastAnswer = null;
          }
          reason = e instanceof Error ? e.message : String(e);
        } finally {
          this.#signal?.removeEventListener("abort", stop);
          attempt.abort();
        }
        failures++;
        if (failures > policy.maxAttempts) {
          // A busy server's own answer says more than "gave up".
          if (lastAnswer) throw lastAnswer;
          throw networkError(
            `Gave up after ${policy.maxAttempts} reconnect attempts: ${reason}`,
          );
        }
        const delayMs = Math.max(retryAfterMs, backoffDelay(failures, policy));
        this.#report({ state: "reconnecting", transport, attempt: failures, delayMs, reason });
        await sleep(delayMs, this.#signal);
      }
    } finally {
      this.#report({ state: "closed", transport });
    }
  }
}
