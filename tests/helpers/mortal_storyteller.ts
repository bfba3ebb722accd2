/**
 * The offline scripted storyteller, plus one way to die: an action that
 * mentions "abyss" ends the character (`player_status: "Dead"`), which the
 * scripted storyteller alone never does. Everything else is the real
 * {@link ScriptedStoryteller}, streamed at its real pace. It stands in for
 * an external model that decided the character dies.
 */
import type { LlmChunk, LlmProvider, LlmRequest } from "../../src/llm/provider.ts";
import { ScriptedStoryteller, scriptOutcome } from "../../src/llm/scripted.ts";

/** The closing narrative of a death. */
export const DEATH_NARRATIVE =
  "You step off the edge and fall into the abyss. The darkness closes over you, and your story ends.";

/** Scripted storytelling in which "abyss" is fatal. */
export class MortalStoryteller implements LlmProvider {
  readonly system = "scripted";
  readonly model = "scripted-storyteller-1";
  readonly #inner: ScriptedStoryteller;
  readonly #delayMs: number;

  constructor(options: { delayMs: number }) {
    this.#inner = new ScriptedStoryteller(options);
    this.#delayMs = options.delayMs;
  }

  ready(): Promise<boolean> {
    return this.#inner.ready();
  }

  async *stream(request: LlmRequest): AsyncGenerator<LlmChunk> {
    if (!/\babyss\b/i.test(request.scene.user_action)) {
      yield* this.#inner.stream(request);
      return;
    }
    const outcome = scriptOutcome(request.scene) as { intents: Record<string, unknown> };
    const text = JSON.stringify({
      narrative: DEATH_NARRATIVE,
      intents: {
        ...outcome.intents,
        quest_intent: null,
        combat_intent: {
          action: "none",
          enemies: null,
          combat_notes: null,
          player_status: "Dead",
        },
      },
    });
    for (let i = 0; i < text.length; i += 12) {
      if (this.#delayMs > 0) await new Promise((r) => setTimeout(r, this.#delayMs));
      yield { type: "delta", text: text.slice(i, i + 12) };
    }
    yield { type: "usage", usage: { input_tokens: 100, output_tokens: text.length / 4 } };
  }
}
