/**
 * A model with no delay at all, in process: it yields the benchmark's
 * outcome (`bench/lib/outcome.ts`) in 16-character deltas as fast as the
 * consumer reads them, then its usage. For measuring the pipeline alone.
 *
 * @module
 */
import type { LlmChunk, LlmProvider, LlmRequest } from "../../src/llm/provider.ts";
import { DELTA_CHARS, outcomeText } from "./outcome.ts";

/** A zero-delay {@link LlmProvider} streaming `proseDeltas` deltas of prose plus the intents. */
export class ZeroDelayLlm implements LlmProvider {
  readonly system = "bench";
  readonly model = "zero-delay";
  readonly #pieces: string[] = [];

  constructor(proseDeltas = 30) {
    const { text } = outcomeText(proseDeltas);
    for (let i = 0; i < text.length; i += DELTA_CHARS) {
      this.#pieces.push(text.slice(i, i + DELTA_CHARS));
    }
  }

  /** Always ready. */
  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  /** Stream the outcome's deltas, then token usage. */
  async *stream(request: LlmRequest): AsyncGenerator<LlmChunk> {
    for (const text of this.#pieces) {
      if (request.signal.aborted) return;
      yield { type: "delta", text };
    }
    yield { type: "usage", usage: { input_tokens: 1000, output_tokens: this.#pieces.length * 4 } };
  }
}
