/**
 * A test model whose stream the test steps through: each chunk waits for a
 * permit the test hands out with {@link GatedLlm.release}, so a test can
 * stop a turn at any point (after start, between two tokens, before the
 * outcome) and wait on conditions instead of time. It stands in for an
 * external model, not for any of our modules.
 */
import { DmError } from "../../src/errors.ts";
import type { LlmChunk, LlmProvider, LlmRequest } from "../../src/llm/provider.ts";
import { quietOutcome } from "./recording_llm.ts";

/**
 * The raw outcome text of `narrative` cut so that each piece of `pieces`
 * arrives as its own chunk: `{"narrative":"` first, then one chunk per
 * piece (one token event each), then the closing intents. Pieces must not
 * need JSON escaping.
 */
export function outcomeChunks(pieces: string[]): string[] {
  const narrative = pieces.join("");
  const text = JSON.stringify(quietOutcome(narrative));
  const head = '{"narrative":"';
  if (!text.startsWith(head + narrative + '"')) throw new Error("pieces need escaping");
  return [head, ...pieces, text.slice(head.length + narrative.length)];
}

/** A model that streams scripted chunks one permit at a time. */
export class GatedLlm implements LlmProvider {
  readonly system = "test";
  readonly model = "gated-model";
  readonly requests: LlmRequest[] = [];
  #permits = 0;
  #unlimited = false;
  #wake = new Set<() => void>();
  #chunksSent = 0;
  #chunkWaiters: { n: number; resolve: () => void }[] = [];
  /** Resolves when a turn's request signal aborts (client gone under the cancel policy). */
  readonly aborted: Promise<void>;
  #onAbort!: () => void;

  /** `chunks` gives the chunks of the n-th turn (intro scenes are answered at once). */
  constructor(private chunks: (index: number) => string[]) {
    this.aborted = new Promise((resolve) => this.#onAbort = resolve);
  }

  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  /** Let `n` more chunks through. */
  release(n = 1): void {
    this.#permits += n;
    this.#notify();
  }

  /** Let every chunk through from now on. */
  open(): void {
    this.#unlimited = true;
    this.#notify();
  }

  /** Resolves once `n` chunks (over all turns) have been handed to the engine. */
  chunksSent(n: number): Promise<void> {
    if (this.#chunksSent >= n) return Promise.resolve();
    return new Promise((resolve) => this.#chunkWaiters.push({ n, resolve }));
  }

  #notify(): void {
    const wake = [...this.#wake];
    this.#wake.clear();
    for (const w of wake) w();
  }

  async #permit(signal: AbortSignal): Promise<void> {
    while (!this.#unlimited && this.#permits === 0) {
      if (signal.aborted) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener("abort", done);
          this.#wake.delete(done);
          resolve();
        };
        this.#wake.add(done);
        signal.addEventListener("abort", done, { once: true });
      });
    }
    if (!this.#unlimited) this.#permits--;
  }

  async *stream(request: LlmRequest): AsyncGenerator<LlmChunk> {
    if (request.scene.intro) {
      yield { type: "delta", text: JSON.stringify(quietOutcome("You wake at the crossroads.")) };
      return;
    }
    const index = this.requests.length;
    this.requests.push(request);
    request.signal.addEventListener("abort", () => this.#onAbort(), { once: true });
    for (const text of this.chunks(index)) {
      await this.#permit(request.signal);
      if (request.signal.aborted) throw new DmError("cancelled", "The turn was cancelled.");
      yield { type: "delta", text };
      this.#chunksSent++;
      for (const w of this.#chunkWaiters.filter((w) => this.#chunksSent >= w.n)) {
        this.#chunkWaiters.splice(this.#chunkWaiters.indexOf(w), 1);
        w.resolve();
      }
    }
    yield { type: "usage", usage: { input_tokens: 10, output_tokens: 20 } };
  }
}
