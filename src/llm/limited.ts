/**
 * A provider decorator that caps concurrent model calls. Calls past the cap
 * wait in a FIFO queue; one that waits longer than the queue deadline fails
 * with `overloaded`, so a burst degrades into clear errors instead of
 * unbounded upstream load.
 *
 * @example
 * ```ts
 * const llm = limitConcurrency(new ScriptedStoryteller({ delayMs: 0 }), 64, 30_000);
 * ```
 *
 * @module
 */
import { DmError } from "../errors.ts";
import type { LlmChunk, LlmProvider, LlmRequest } from "./provider.ts";

/** Seconds a refused caller is told to wait. */
export const OVERLOADED_RETRY_AFTER_S = 5;

/** Wrap `provider` so at most `max` streams run at once. */
export function limitConcurrency(
  provider: LlmProvider,
  max: number,
  queueTimeoutMs: number,
): LlmProvider {
  let running = 0;
  const queue: Array<() => void> = [];

  const acquire = (signal: AbortSignal): Promise<void> => {
    if (running < max) {
      running++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const grant = () => {
        cleanup();
        running++;
        resolve();
      };
      const fail = (error: unknown) => {
        cleanup();
        const at = queue.indexOf(grant);
        if (at !== -1) queue.splice(at, 1);
        reject(error);
      };
      const timer = setTimeout(() =>
        fail(
          new DmError(
            "overloaded",
            "Too many stories are being told right now; try again shortly.",
            {
              headers: { "Retry-After": String(OVERLOADED_RETRY_AFTER_S) },
            },
          ),
        ), queueTimeoutMs);
      const onAbort = () => fail(signal.reason ?? new DmError("cancelled"));
      const cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      queue.push(grant);
    });
  };

  const release = () => {
    running--;
    queue.shift()?.();
  };

  return {
    system: provider.system,
    model: provider.model,
    ready: () => provider.ready(),
    async *stream(request: LlmRequest): AsyncGenerator<LlmChunk> {
      await acquire(request.signal);
      try {
        yield* provider.stream(request);
      } finally {
        release();
      }
    },
  };
}
