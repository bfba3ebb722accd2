/**
 * The outcome schema, assembled from every plugin's intent schema, and the
 * parsing rules that turn raw model text into a validated outcome.
 *
 * @module
 */
import { z } from "zod";
import { extractJsonObject } from "../llm/narrative_reader.ts";

/** Version of the outcome contract (internal; never sent to the model). */
export const OUTCOME_VERSION = 1;

/** Fixed line used when the model produced nothing usable. */
export const APOLOGY_NARRATIVE =
  "The storyteller pauses, lost in thought, and the moment passes. Try again in a different way.";

/** A validated outcome. */
export type Outcome = { narrative: string; intents: Record<string, unknown> };

/**
 * Build the outcome schema: `narrative` first (so prose streams first), then
 * `intents` with every registered intent as a nullable key.
 */
export function buildOutcomeSchema(intents: ReadonlyMap<string, z.ZodType>): z.ZodType<Outcome> {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, schema] of intents) shape[key] = schema.nullable().default(null);
  return z.object({
    narrative: z.string().trim().min(1, "narrative must not be empty"),
    intents: z.object(shape),
  }) as unknown as z.ZodType<Outcome>;
}

// Keywords OpenAI's strict structured outputs reject; zod emits them for
// defaults and string lengths, which we enforce ourselves after parsing.
const UNSUPPORTED = new Set(["$schema", "default", "minLength", "maxLength"]);

function strip(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(strip);
  if (node === null || typeof node !== "object") return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (!UNSUPPORTED.has(k)) out[k] = strip(v);
  }
  return out;
}

/** The strict JSON schema sent to the model, generated from the zod schema. */
export function toStrictJsonSchema(schema: z.ZodType): Record<string, unknown> {
  return strip(z.toJSONSchema(schema, { target: "draft-2020-12" })) as Record<string, unknown>;
}

/** Result of parsing model output. */
export interface ParseResult {
  narrative: string;
  intents: Record<string, unknown> | null;
  /** Why validation failed, or null. */
  parse_error: string | null;
}

/** Whether text reads like prose rather than broken JSON or noise. */
export function isPlausibleProse(text: string): boolean {
  const t = text.trim();
  if (t.length < 2 || /^[\[{`"]/.test(t)) return false;
  const letters = (t.match(/\p{L}/gu) ?? []).length;
  return letters / t.length > 0.5;
}

/**
 * Parse raw model output. On failure the narrative falls back to the prose
 * already streamed, else to the raw text when it is plausible prose, else to
 * a fixed apology line; intents become null.
 */
export function parseOutcome(
  raw: string,
  streamed: string,
  schema: z.ZodType<Outcome>,
): ParseResult {
  const fallback = (reason: string): ParseResult => ({
    narrative: streamed.trim() !== ""
      ? streamed
      : isPlausibleProse(raw)
      ? raw.trim()
      : APOLOGY_NARRATIVE,
    intents: null,
    parse_error: reason,
  });
  const json = extractJsonObject(raw);
  if (json === null) return fallback("no JSON object in model output");
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (e) {
    return fallback(`invalid JSON: ${(e as Error).message}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    return fallback(`schema mismatch at ${first?.path.join(".") || "(root)"}: ${first?.message}`);
  }
  return { narrative: parsed.data.narrative, intents: parsed.data.intents, parse_error: null };
}
