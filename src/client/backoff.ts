/**
 * Reconnect timing: exponential backoff with jitter, and an abortable sleep.
 *
 * @example
 * ```ts
 * const policy = { maxAttempts: 8, baseDelayMs: 250, maxDelayMs: 5000 };
 * await sleep(backoffDelay(3, policy), signal); // about 1 s, jittered
 * ```
 *
 * @module
 */

/** How a dropped connection is retried. */
export interface RetryPolicy {
  /** Reconnect attempts in a row without progress before giving up. */
  maxAttempts: number;
  /** Delay before the first reconnect. */
  baseDelayMs: number;
  /** Ceiling of a single delay. */
  maxDelayMs: number;
}

/** The defaults: 8 attempts, 250 ms doubling up to 5 s (about 20 s in all). */
export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 8, baseDelayMs: 250, maxDelayMs: 5000 };

/**
 * The delay before attempt `attempt` (1-based): base·2^(attempt-1), capped,
 * then spread over its upper half so many clients cut by the same outage do
 * not reconnect in lockstep.
 */
export function backoffDelay(
  attempt: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number {
  const exp = policy.baseDelayMs * 2 ** Math.max(0, attempt - 1);
  const capped = Math.min(policy.maxDelayMs, exp);
  return Math.round(capped / 2 + random() * (capped / 2));
}

/** Wait `ms`, or reject with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
