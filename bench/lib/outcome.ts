/**
 * The model output every benchmark streams: a valid outcome JSON whose
 * `narrative` is cut so that each streamed delta carries prose.
 *
 * The text is split into {@link DELTA_CHARS}-character deltas (the fake
 * model's chunk size). The opening `{"narrative":"` is 14 characters, so the
 * first delta already holds 2 characters of prose and every later delta up to
 * `proseDeltas` is prose only; the model's time to first token is therefore
 * exactly its first-delta delay. After the prose come the intents (every
 * built-in intent, all "none"), as a real model in strict mode sends them;
 * those trailing deltas carry no prose.
 *
 * @module
 */

/** Characters per streamed delta (about 4 BPE tokens of English). */
export const DELTA_CHARS = 16;

const PREFIX = '{"narrative":"';

/** Every built-in intent, as a strict-mode model writes them when nothing changes. */
export const NONE_INTENTS = {
  quest_intent: {
    action: "none",
    quest_title: null,
    quest_summary: null,
    quest_details: null,
    progress_update: null,
  },
  combat_intent: { action: "none", enemies: null, combat_notes: null, player_status: null },
  poi_intent: { action: "none", name: null, description: null, reference_tags: null },
  location_intent: {
    action: "none",
    location_id: null,
    location_display_name: null,
    minor_location: null,
  },
  meta: {
    player_mood: "curious",
    pacing_hint: "normal",
    user_is_wandering: false,
    user_asked_for_guidance: false,
  },
} as const;

const WORDS = [
  "rain",
  "lantern",
  "stone",
  "whisper",
  "the",
  "a",
  "old",
  "door",
  "creaks",
  "you",
  "step",
  "into",
  "cold",
  "mist",
  "and",
  "shadows",
];

/** Prose of exactly `length` characters, letters and spaces only (no JSON escapes). */
export function prose(length: number): string {
  let out = "";
  for (let i = 0; out.length < length; i++) out += WORDS[i % WORDS.length] + " ";
  return out.slice(0, length);
}

/** The shape of one streamed outcome. */
export interface OutcomeText {
  /** The whole completion text. */
  text: string;
  /** The narrative inside it. */
  narrative: string;
  /** Deltas that carry prose (the first one included). */
  proseDeltas: number;
  /** All deltas of the completion. */
  totalDeltas: number;
}

/** Build an outcome whose prose fills exactly `proseDeltas` deltas (at least 1). */
export function outcomeText(proseDeltas: number): OutcomeText {
  const n = Math.max(1, Math.floor(proseDeltas));
  const narrative = prose(DELTA_CHARS - PREFIX.length + DELTA_CHARS * (n - 1));
  const text = `${PREFIX}${narrative}","intents":${JSON.stringify(NONE_INTENTS)}}`;
  return { text, narrative, proseDeltas: n, totalDeltas: Math.ceil(text.length / DELTA_CHARS) };
}
