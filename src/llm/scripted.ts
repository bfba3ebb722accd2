/**
 * The offline scripted storyteller: the default model when no API key is
 * set. It writes a JSON outcome that reacts to the player's action and the
 * scene, and streams it in small chunks like a real model, through the same
 * provider port as the openai provider.
 *
 * @example
 * ```ts
 * const llm = new ScriptedStoryteller({ delayMs: 0 });
 * ```
 *
 * @module
 */
import { DmError } from "../errors.ts";
import type { LlmChunk, LlmProvider, LlmRequest, SceneFacts } from "./provider.ts";

/** Options of the scripted storyteller. */
export interface ScriptedOptions {
  /** Pause between chunks; 0 in tests. */
  delayMs: number;
  /** Characters per streamed chunk. */
  chunkSize?: number;
}

const PLACES = [
  ["The Sunken Chapel", "A half-flooded chapel whose bells still ring beneath the water."],
  ["Ravenhollow Market", "A crooked market where every stall sells a secret."],
  ["The Ashen Stair", "Steps of black stone climbing into a cold, whispering fog."],
  ["Mirewatch Tower", "A leaning watchtower, its lantern lit by no one."],
  ["The Glass Orchard", "Trees of green glass chiming softly in the wind."],
  ["Old Vault of Kesh", "A dwarven vault, its door scored by ancient claws."],
];
const FOES = [
  ["Grave Ghoul", "A hunched ghoul with lantern eyes.", "medium"],
  ["Bandit Cutthroat", "A scarred bandit with a notched blade.", "low"],
  ["Cave Troll", "A troll that smells of wet stone.", "high"],
  ["Shadow Hound", "A hound made of smoke and teeth.", "medium"],
];
const QUESTS = [
  ["The Missing Bellringer", "Find out why the chapel bells ring at night.", "Find the bellringer"],
  ["Ashes of the Stair", "Recover the ember-crown lost on the Ashen Stair.", "Reach the summit"],
  ["A Debt in Ravenhollow", "Repay a merchant who knows your real name.", "Find the merchant"],
];

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

function pick<T>(items: readonly T[], seed: number): T {
  return items[seed % items.length];
}

const WORDS = {
  attack: /\b(attack|fight|strike|stab|slash|shoot|charge|kill|punch|swing)\b/i,
  flee: /\b(flee|run away|retreat|escape|surrender)\b/i,
  move: /\b(go|walk|travel|move|enter|climb|head|explore|open|descend|follow|search)\b/i,
  finish: /\b(complete|finish|deliver|return the|hand over|fulfil|fulfill)\b/i,
  rest: /\b(rest|heal|sleep|bandage|pray)\b/i,
};

// Complete intent objects: strict schemas require every key, as a real model
// in strict mode would send them.
const quest = (
  action: string,
  title: string | null = null,
  summary: string | null = null,
  progress: string | null = null,
) => ({
  action,
  quest_title: title,
  quest_summary: summary,
  quest_details: null,
  progress_update: progress,
});
const combat = (
  action: string,
  enemies: Array<{ name: string; description: string; threat: string }> | null = null,
  notes: string | null = null,
  status: string | null = null,
) => ({ action, enemies, combat_notes: notes, player_status: status });
const poi = (
  action: string,
  name: string | null = null,
  description: string | null = null,
  tags: string[] | null = null,
) => ({
  action,
  name,
  description,
  reference_tags: tags,
});
const location = (action: string, name: string | null = null) => ({
  action,
  location_id: name === null ? null : `place:${name.toLowerCase().replace(/[^a-z]+/g, "_")}`,
  location_display_name: name,
  minor_location: null,
});
const meta = (mood: string, pacing: "slow" | "normal" | "fast") => ({
  player_mood: mood,
  pacing_hint: pacing,
  user_is_wandering: false,
  user_asked_for_guidance: false,
});

/** Build the outcome object for a scene. Exported for tests. */
export function scriptOutcome(scene: SceneFacts): Record<string, unknown> {
  // The place is part of the seed so the same words lead somewhere new as the
  // player travels.
  const seed = hash(`${scene.user_action}|${scene.character_name}|${scene.location ?? ""}`);
  const place = pick(PLACES, seed);
  if (scene.intro) {
    const origin = pick(PLACES, hash(scene.character_name));
    return {
      narrative:
        `${scene.character_name} wakes to the smell of rain at ${origin[0]}. ${origin[1]} ` +
        `Somewhere close, a door creaks open, and the road ahead waits for a first step.`,
      intents: {
        quest_intent: null,
        combat_intent: null,
        poi_intent: poi("create", origin[0], origin[1], ["origin"]),
        location_intent: location("update_minor", origin[0]),
        meta: meta("curious", "slow"),
      },
    };
  }
  const parts: string[] = [];
  const intents: Record<string, unknown> = {
    quest_intent: quest("none"),
    combat_intent: combat("none"),
    poi_intent: poi("none"),
    location_intent: location("none"),
    meta: meta("engaged", "normal"),
  };
  if (scene.in_combat) {
    if (WORDS.flee.test(scene.user_action)) {
      parts.push("You break away from the fight and the enemy loses you among the shadows.");
      intents.combat_intent = combat("end", null, "fled");
    } else if (WORDS.attack.test(scene.user_action) && seed % 3 === 0) {
      parts.push("Your blow lands true; the last foe staggers and falls still.");
      intents.combat_intent = combat("end", null, "victory");
    } else {
      const wounded = seed % 4 === 1;
      parts.push(
        wounded
          ? "Steel rings on steel. A claw rakes your side and you taste blood, but you stand."
          : "You trade blows, neither side giving ground as the dust swirls.",
      );
      intents.combat_intent = combat("continue", null, null, wounded ? "Wounded" : null);
    }
  } else if (WORDS.attack.test(scene.user_action)) {
    const count = 1 + (seed % 3);
    const enemies = Array.from({ length: count }, (_, i) => {
      const f = pick(FOES, seed + i);
      return { name: f[0], description: f[1], threat: f[2] };
    });
    parts.push(
      `As you ready yourself, ${enemies.map((e) => `a ${e.name}`).join(" and ")} ` +
        `${count > 1 ? "lunge" : "lunges"} from the dark. Battle is joined!`,
    );
    intents.combat_intent = combat("start", enemies);
  } else if (WORDS.rest.test(scene.user_action)) {
    parts.push("You rest a while. The ache in your limbs fades and your breath steadies.");
    intents.combat_intent = combat("none", null, null, "Healthy");
  } else if (WORDS.move.test(scene.user_action)) {
    parts.push(`You press on. Before long you come upon ${place[0]}. ${place[1]}`);
    intents.location_intent = location("update_minor", place[0]);
    if (scene.allowed.poi !== false) {
      intents.poi_intent = poi("create", place[0], place[1], ["discovered"]);
    }
  } else {
    parts.push(
      `You ${scene.user_action.length > 60 ? "do as you intended" : "consider your next move"}` +
        `${scene.location ? ` at ${scene.location}` : ""}. The world holds its breath, waiting.`,
    );
  }
  if (scene.sparks.length > 0 && seed % 2 === 0) {
    parts.push(`A memory of ${scene.sparks[0]} surfaces, unbidden.`);
  }
  if (scene.active_quest && WORDS.finish.test(scene.user_action)) {
    parts.push(`With that, "${scene.active_quest}" is done.`);
    intents.quest_intent = quest("complete", scene.active_quest, null, "completed");
  } else if (scene.active_quest && !scene.in_combat) {
    intents.quest_intent = quest(
      "advance",
      scene.active_quest,
      null,
      `Progress made: ${scene.user_action.slice(0, 80)}`,
    );
  } else if (!scene.active_quest && scene.allowed.quest === true) {
    const q = pick(QUESTS, seed);
    parts.push(`A stranger presses a note into your hand: "${q[1]}"`);
    intents.quest_intent = quest("start", q[0], q[1]);
  }
  return { narrative: parts.join(" "), intents };
}

/** The offline storyteller. */
export class ScriptedStoryteller implements LlmProvider {
  readonly system = "scripted";
  readonly model = "scripted-storyteller-1";
  readonly #delayMs: number;
  readonly #chunkSize: number;

  constructor(options: ScriptedOptions) {
    this.#delayMs = options.delayMs;
    this.#chunkSize = options.chunkSize ?? 12;
  }

  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  async *stream(request: LlmRequest): AsyncGenerator<LlmChunk> {
    const text = JSON.stringify(scriptOutcome(request.scene));
    for (let i = 0; i < text.length; i += this.#chunkSize) {
      if (request.signal.aborted) throw new DmError("cancelled", "The turn was cancelled.");
      if (this.#delayMs > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, this.#delayMs);
          function done() {
            clearTimeout(timer);
            request.signal.removeEventListener("abort", done);
            resolve();
          }
          request.signal.addEventListener("abort", done, { once: true });
        });
        if (request.signal.aborted) throw new DmError("cancelled", "The turn was cancelled.");
      }
      yield { type: "delta", text: text.slice(i, i + this.#chunkSize) };
    }
    yield {
      type: "usage",
      usage: {
        input_tokens: Math.ceil((request.system.length + request.prompt.length) / 4),
        output_tokens: Math.ceil(text.length / 4),
      },
    };
  }
}
