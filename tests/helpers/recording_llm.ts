/**
 * A test model: an `LlmProvider` whose output each test scripts with a
 * function of the request, and which records every request it got. It is a
 * stand-in for an external model, not for any of our modules.
 */
import type { LlmChunk, LlmProvider, LlmRequest } from "../../src/llm/provider.ts";

/** What the scripted model answers: an outcome object or raw text. */
export type ScriptedAnswer = Record<string, unknown> | string;

/** A recording, scriptable model. */
export class RecordingLlm implements LlmProvider {
  readonly system = "test";
  readonly model = "test-model";
  readonly requests: LlmRequest[] = [];

  constructor(
    private answer: (request: LlmRequest, index: number) => ScriptedAnswer,
    private chunkSize = 7,
  ) {}

  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  async *stream(request: LlmRequest): AsyncGenerator<LlmChunk> {
    this.requests.push(request);
    const a = this.answer(request, this.requests.length - 1);
    const text = typeof a === "string" ? a : JSON.stringify(a);
    for (let i = 0; i < text.length; i += this.chunkSize) {
      await Promise.resolve();
      yield { type: "delta", text: text.slice(i, i + this.chunkSize) };
    }
    yield { type: "usage", usage: { input_tokens: 10, output_tokens: 20 } };
  }
}

/** An outcome with every built-in intent set to "none". */
export function quietOutcome(narrative: string, intents: Record<string, unknown> = {}) {
  return {
    narrative,
    intents: {
      quest_intent: null,
      combat_intent: null,
      poi_intent: null,
      location_intent: null,
      meta: null,
      ...intents,
    },
  };
}
