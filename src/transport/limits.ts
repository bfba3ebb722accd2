/**
 * Open-stream limits shared by every streaming transport. SSE responses and
 * WebSocket connections draw from one pool, so a flood on one transport
 * cannot starve the process through the other:
 *
 * - at most `DM_MAX_STREAMS` in the process (past it `503 overloaded`),
 * - at most `DM_MAX_STREAMS_PER_USER` per user and `DM_MAX_STREAMS_PER_IP`
 *   per client address (past either `429 rate_limited`),
 *
 * each refusal with `Retry-After`.
 *
 * @module
 */
import type { Config } from "../config.ts";
import { DmError } from "../errors.ts";
import { dmMetrics } from "../telemetry/metrics.ts";

/** Seconds a refused client is asked to wait before trying again. */
export const STREAM_RETRY_AFTER_S = 1;

/** Gives back one stream slot; calling it more than once is harmless. */
export type ReleaseStream = () => void;

/** The caps of a {@link StreamLimiter}. */
export interface StreamCaps {
  /** Open streams in the process. */
  max: number;
  /** Open streams of one user. */
  perUser: number;
  /** Open streams from one client address. */
  perIp: number;
}

/** Who opens a stream. */
export interface StreamOwner {
  user_id: string;
  /** The client address (`RequestInfo.remoteAddr`). */
  ip: string;
}

function refused(type: "overloaded" | "rate_limited", message: string): DmError {
  return new DmError(type, `${message}; retry in ${STREAM_RETRY_AFTER_S} s.`, {
    headers: { "Retry-After": String(STREAM_RETRY_AFTER_S) },
    extra: { retry_after_seconds: STREAM_RETRY_AFTER_S },
  });
}

function bump(counts: Map<string, number>, key: string, delta: number): void {
  const n = (counts.get(key) ?? 0) + delta;
  if (n <= 0) counts.delete(key);
  else counts.set(key, n);
}

/** Counting limits on open streams. */
export class StreamLimiter {
  #open = 0;
  readonly #byUser = new Map<string, number>();
  readonly #byIp = new Map<string, number>();

  constructor(readonly caps: StreamCaps) {}

  /** Streams currently open. */
  get open(): number {
    return this.#open;
  }

  /**
   * Take a slot for a stream of `transport`, recording it in
   * `dm_active_streams`, or throw `overloaded` / `rate_limited`.
   */
  acquire(transport: string, owner: StreamOwner): ReleaseStream {
    if (this.#open >= this.caps.max) throw refused("overloaded", "Too many open streams");
    if ((this.#byUser.get(owner.user_id) ?? 0) >= this.caps.perUser) {
      throw refused("rate_limited", `At most ${this.caps.perUser} open streams per user`);
    }
    if ((this.#byIp.get(owner.ip) ?? 0) >= this.caps.perIp) {
      throw refused("rate_limited", `At most ${this.caps.perIp} open streams per address`);
    }
    this.#open++;
    bump(this.#byUser, owner.user_id, 1);
    bump(this.#byIp, owner.ip, 1);
    dmMetrics.streamOpened(transport);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open--;
      bump(this.#byUser, owner.user_id, -1);
      bump(this.#byIp, owner.ip, -1);
      dmMetrics.streamClosed(transport);
    };
  }
}

// One pool per engine: the engine is the one object both transport plugins
// are handed (host.engine), and there is exactly one per app, so keying on it
// gives each app (and each test server) its own pool without a global count.
const pools = new WeakMap<object, StreamLimiter>();

/**
 * The limiter shared by all transports of the app that owns `engine`.
 *
 * @example
 * ```ts
 * const limiter = sharedStreamLimiter(host.engine, host.config);
 * const release = limiter.acquire("sse", { user_id: info.userId, ip: info.remoteAddr });
 * ```
 */
export function sharedStreamLimiter(
  engine: object,
  config: Pick<Config, "DM_MAX_STREAMS" | "DM_MAX_STREAMS_PER_USER" | "DM_MAX_STREAMS_PER_IP">,
): StreamLimiter {
  let pool = pools.get(engine);
  if (!pool) {
    pool = new StreamLimiter({
      max: config.DM_MAX_STREAMS,
      perUser: config.DM_MAX_STREAMS_PER_USER,
      perIp: config.DM_MAX_STREAMS_PER_IP,
    });
    pools.set(engine, pool);
  }
  return pool;
}
