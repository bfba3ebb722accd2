/**
 * The live event log of one running turn. Every transport reads the same
 * log: a subscriber starts after any seq and then follows new events until
 * the terminal one, so resumes see no gap and no duplicate.
 *
 * @module
 */
import type { Span } from "@opentelemetry/api";
import { isTerminal, type TurnEvent } from "../shared/events.ts";

/** One turn's events while it runs (and for a while after). */
export class LiveTurn {
  readonly events: TurnEvent[] = [];
  #waiters = new Set<() => void>();
  #done = false;
  readonly abort = new AbortController();
  /** The turn span, for events such as `client_disconnect`. */
  span: Span | null = null;
  /** Number of clients currently attached. */
  subscribers = 0;

  constructor(
    readonly turn_id: string,
    readonly character_id: string,
    readonly owner_id: string,
  ) {}

  /** Whether the terminal event was appended. */
  get done(): boolean {
    return this.#done;
  }

  /** Append the next event and wake subscribers. */
  push(event: TurnEvent): void {
    if (this.#done) return;
    this.events.push(event);
    if (isTerminal(event)) this.#done = true;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  /**
   * Events with seq greater than `afterSeq`, then live ones until the turn
   * ends or `signal` aborts.
   */
  async *follow(afterSeq: number, signal?: AbortSignal): AsyncGenerator<TurnEvent> {
    this.subscribers++;
    try {
      // Seqs are dense from 1 in the live log, so the index is seq - 1.
      let next = Math.max(0, afterSeq);
      while (!signal?.aborted) {
        while (next < this.events.length) {
          yield this.events[next++];
        }
        if (this.#done) return;
        await new Promise<void>((resolve) => {
          const wake = () => {
            signal?.removeEventListener("abort", wake);
            this.#waiters.delete(wake);
            resolve();
          };
          this.#waiters.add(wake);
          signal?.addEventListener("abort", wake, { once: true });
        });
      }
    } finally {
      this.subscribers--;
    }
  }
}
