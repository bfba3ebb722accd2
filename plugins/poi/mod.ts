/**
 * Points of interest and the character's location. A new place may be
 * created only on turns the policy gate allows (`poi_cooldown_turns` since
 * the last one, then the `poi` roll); returning to a known place is always
 * allowed and never creates a duplicate.
 *
 * The location intent is applied in the same stage as the POI intent, so a
 * turn that creates a place and walks into it makes one location write.
 * `location_change` reports the location intent in the summary.
 *
 * @module
 */
import { z } from "zod";
import {
  definePlugin,
  type GateDecision,
  type SubsystemResult,
  type TurnContext,
} from "../../src/plugin/api.ts";
import type { Location, Poi, Store } from "../../src/store/port.ts";
import type { ChangeResult } from "../../src/shared/events.ts";
import { dmMetrics } from "../../src/telemetry/metrics.ts";
import { policyForTurn, policyRef } from "../policy/mod.ts";

/** Key of the POI intent in the outcome. */
export const POI_INTENT_KEY = "poi_intent";
/** Key of the location intent in the outcome. */
export const LOCATION_INTENT_KEY = "location_intent";
/** Summary key of the location intent's result. */
export const LOCATION_CHANGE_KEY = "location_change";

/** The POI intent of the outcome (OUTCOME_VERSION 1). */
export const PoiIntentSchema = z.object({
  action: z.enum(["none", "create", "reference"]),
  name: z.string().nullable(),
  description: z.string().nullable(),
  reference_tags: z.array(z.string()).nullable(),
});

/** A POI intent. */
export type PoiIntent = z.output<typeof PoiIntentSchema>;

/** The location intent of the outcome (OUTCOME_VERSION 1). */
export const LocationIntentSchema = z.object({
  action: z.enum(["none", "update_minor", "leave_poi"]),
  location_id: z.string().nullable(),
  location_display_name: z.string().nullable(),
  minor_location: z.string().nullable(),
});

/** A location intent. */
export type LocationIntent = z.output<typeof LocationIntentSchema>;

/** Actions reported in `poi_change`. */
export type PoiChangeAction = "created" | "referenced" | "skipped" | "none";
/** Actions reported in `location_change`. */
export type LocationChangeAction = "updated" | "left_poi" | "skipped" | "none";

/** The POI gate's decision, stored at `ctx.policy.poi`. */
export interface PoiDecision extends GateDecision {
  reason: "cooldown" | null;
  turns_since_last_poi: number;
  cooldown_turns: number;
}

/** Error reported when the model creates a place on a turn the gate did not allow. */
export const POI_NOT_ALLOWED = "new place not allowed this turn";

/** Limits applied to stored POIs. */
export const POI_LIMITS = {
  name: 200,
  description: 2000,
  tags: 20,
  tag: 50,
  locationId: 200,
  displayName: 200,
  minor: 200,
} as const;

/** Places remembered in plugin state for the prompt, newest first. */
const RECENT_PLACES = 8;

/** Plugin state kept per character, so the prompt can name places without a store read. */
export interface PoiPluginState {
  recent: { poi_id: string; name: string }[];
}

function clean(text: string | null | undefined, max: number): string | null {
  const trimmed = (text ?? "").trim();
  if (trimmed === "") return null;
  return trimmed.length <= max ? trimmed : trimmed.slice(0, max);
}

/** Normalise model tags: trimmed, non-empty, ≤50 chars, unique ignoring case, at most 20. */
export function cleanTags(tags: readonly string[] | null): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const tag of tags ?? []) {
    const t = clean(tag, POI_LIMITS.tag);
    if (t === null || seen.has(t.toLowerCase())) continue;
    seen.add(t.toLowerCase());
    out.push(t);
    if (out.length === POI_LIMITS.tags) break;
  }
  return out;
}

/**
 * Find a known place by name, else by one of `tags`, ignoring case. Names
 * win over tags so that "the Old Mill" never resolves to another place that
 * merely carries a `mill` tag.
 */
export function findPoi(
  pois: readonly Poi[],
  name: string | null,
  tags: readonly string[],
): Poi | null {
  const wanted = name?.trim().toLowerCase();
  if (wanted) {
    const byName = pois.find((p) => p.name.trim().toLowerCase() === wanted);
    if (byName) return byName;
  }
  const lowered = new Set(tags.map((t) => t.trim().toLowerCase()).filter((t) => t !== ""));
  if (lowered.size === 0) return null;
  return pois.find((p) => p.tags.some((t) => lowered.has(t.trim().toLowerCase()))) ?? null;
}

/** Decide whether a new place may be created this turn. Rolls `poi`. */
export function decidePoi(
  ctx: TurnContext,
  p: { poi_trigger_prob: number; poi_cooldown_turns: number },
): PoiDecision {
  const since = ctx.context.turns_since_last_poi;
  const base = {
    probability: p.poi_trigger_prob,
    turns_since_last_poi: since,
    cooldown_turns: p.poi_cooldown_turns,
  };
  if (since < p.poi_cooldown_turns) {
    dmMetrics.policyRoll("poi", "ineligible");
    return { ...base, eligible: false, allowed: false, reason: "cooldown" };
  }
  const roll = ctx.rng.roll("poi");
  const allowed = roll < p.poi_trigger_prob;
  dmMetrics.policyRoll("poi", allowed ? "passed" : "failed");
  return { ...base, eligible: true, allowed, roll, reason: null };
}

function readState(ctx: TurnContext): PoiPluginState {
  const raw = ctx.context.plugin_state.poi as Partial<PoiPluginState> | undefined;
  const recent = Array.isArray(raw?.recent)
    ? raw.recent.filter((r) => typeof r?.poi_id === "string" && typeof r?.name === "string")
    : [];
  return { recent };
}

function poiResult(action: PoiChangeAction, error: string | null = null): SubsystemResult {
  dmMetrics.subsystemWrite("poi", action);
  if (action === "none") return { action, success: null, error: null };
  return { action, success: action !== "skipped", error };
}

/** What the POI step decided: its result and the place the character is now at, if it changed. */
interface PoiStep {
  result: SubsystemResult;
  /** The place created or returned to this turn. */
  place: Poi | null;
}

async function applyPoiIntent(
  ctx: TurnContext,
  store: Store,
  intent: PoiIntent | null,
  decision: PoiDecision | null,
): Promise<PoiStep> {
  const none = (result: SubsystemResult): PoiStep => ({ result, place: null });
  switch (intent?.action ?? "none") {
    case "none":
      return none(poiResult("none"));
    case "create": {
      if (!decision?.allowed) return none(poiResult("skipped", POI_NOT_ALLOWED));
      const location = ctx.context.character.location;
      const name = clean(intent?.name, POI_LIMITS.name) ??
        clean(location.display_name, POI_LIMITS.name) ?? "A Notable Place";
      const tags = cleanTags(intent?.reference_tags ?? null);
      // A "new" place that already exists is a return to it: duplicates
      // would split the character's memories of one place in two.
      const existing = findPoi(await store.listPois(ctx.user_id, ctx.character_id), name, []);
      if (existing) return { result: poiResult("referenced"), place: existing };
      const created = await ctx.writer.createPoi({
        name,
        description: clean(intent?.description, POI_LIMITS.description) ??
          "A place worth remembering.",
        tags,
      });
      return { result: poiResult("created"), place: created };
    }
    case "reference": {
      const tags = cleanTags(intent?.reference_tags ?? null);
      const name = clean(intent?.name, POI_LIMITS.name);
      if (name === null && tags.length === 0) {
        return none(poiResult("skipped", "reference needs a name or tags"));
      }
      const found = findPoi(await store.listPois(ctx.user_id, ctx.character_id), name, tags);
      if (!found) return none(poiResult("skipped", "no known place matches the reference"));
      return { result: poiResult("referenced"), place: found };
    }
  }
}

function sameLocation(a: Location, b: Location): boolean {
  return a.id === b.id && a.display_name === b.display_name && a.minor === b.minor &&
    a.poi_id === b.poi_id;
}

/**
 * The character's location after this turn, and the location intent's
 * result. A place created or returned to becomes the current place, unless
 * the location intent says the character is leaving it.
 */
export function nextLocation(
  current: Location,
  intent: LocationIntent | null,
  place: Poi | null,
): { location: Location; change: ChangeResult } {
  const action = intent?.action ?? "none";
  const base: Location = { ...current, poi_id: place?.poi_id ?? current.poi_id };
  if (!intent || action === "none") {
    return { location: base, change: { action: "none", success: null, error: null } };
  }
  const next: Location = { ...base };
  const id = clean(intent.location_id, POI_LIMITS.locationId);
  const moved = id !== null && id !== current.id;
  // Moving to another location leaves whatever place the character was at,
  // unless that place was created or returned to in this very turn.
  if (moved && place === null) next.poi_id = null;
  next.id = id ?? current.id;
  next.display_name = clean(intent.location_display_name, POI_LIMITS.displayName) ??
    (moved ? null : current.display_name);
  next.minor = clean(intent.minor_location, POI_LIMITS.minor) ?? current.minor;
  let change: ChangeResult;
  if (action === "leave_poi" && next.poi_id !== null) {
    next.poi_id = null;
    change = { action: "left_poi", success: true, error: null };
  } else if (!sameLocation(base, next)) {
    change = { action: "updated", success: true, error: null };
  } else if (action === "leave_poi") {
    change = { action: "skipped", success: false, error: "not at a place" };
  } else {
    change = { action: "none", success: null, error: null };
  }
  return { location: next, change };
}

function rememberPlace(state: PoiPluginState, place: Poi): PoiPluginState {
  const recent = [
    { poi_id: place.poi_id, name: place.name },
    ...state.recent.filter((r) => r.poi_id !== place.poi_id),
  ].slice(0, RECENT_PLACES);
  return { recent };
}

/**
 * Apply the POI intent, then the location intent (read from the outcome
 * directly; it has no stage of its own). The location is written even when
 * the POI write fails, and the POI failure is re-thrown afterwards so the
 * host records it.
 */
export async function applyPoi(
  ctx: TurnContext,
  store: Store,
  intent: PoiIntent | null,
  gate: GateDecision | null,
): Promise<SubsystemResult> {
  const intents = ctx.outcome?.intents ?? null;
  if (ctx.outcome !== null && intents === null) {
    ctx.changes[LOCATION_CHANGE_KEY] = { action: "none", success: null, error: null };
    return poiResult("none");
  }
  const decision = gate && "turns_since_last_poi" in gate ? gate as PoiDecision : null;
  let step: PoiStep | null = null;
  let failure: unknown = null;
  try {
    step = await applyPoiIntent(ctx, store, intent, decision);
  } catch (error) {
    dmMetrics.subsystemWrite("poi", "error");
    failure = error;
  }
  const parsed = LocationIntentSchema.nullable().safeParse(intents?.[LOCATION_INTENT_KEY] ?? null);
  const locationIntent = parsed.success ? parsed.data : null;
  const current = ctx.context.character.location;
  const place = step?.place ?? null;
  const { location, change } = nextLocation(current, locationIntent, place);
  try {
    if (!sameLocation(current, location)) await ctx.writer.setLocation(location);
    ctx.changes[LOCATION_CHANGE_KEY] = change;
    if (change.action !== "none") dmMetrics.subsystemWrite("location", change.action);
  } catch (error) {
    dmMetrics.subsystemWrite("location", "error");
    ctx.changes[LOCATION_CHANGE_KEY] = {
      action: change.action === "none" ? "skipped" : change.action,
      success: false,
      error: error instanceof Error ? error.message : String(error),
    };
  }
  if (place) {
    try {
      await ctx.writer.putPluginState("poi", rememberPlace(readState(ctx), place));
    } catch (error) {
      // Only the prompt's list of known places goes stale; the place itself is stored.
      ctx.logger.warn("poi_state_write_failed", { error });
    }
  }
  if (step === null) throw failure;
  return step.result;
}

/** The POI section of the user prompt: where the character is, known places, and the hint. */
export function poiSection(ctx: TurnContext): string {
  const loc = ctx.context.character.location;
  const state = readState(ctx);
  const where = clean(loc.display_name, 80) ?? clean(loc.id, 80) ?? "unknown";
  const id = loc.id && loc.display_name ? ` [${clean(loc.id, 80)}]` : "";
  const lines = [`Location: ${where}${id}${loc.minor ? `, ${clean(loc.minor, 80)}` : ""}`];
  const at = loc.poi_id ? state.recent.find((r) => r.poi_id === loc.poi_id) : undefined;
  if (at) lines.push(`At place: ${clean(at.name, 80)}`);
  if (state.recent.length > 0) {
    lines.push(`Known places: ${state.recent.map((r) => clean(r.name, 60)).join("; ")}`);
  }
  const decision = ctx.policy.poi as GateDecision | undefined;
  // The hint only: numbers and rolls stay operator-side.
  lines.push(`New place: ${decision?.allowed ? "ALLOWED" : "NOT ALLOWED"}`);
  return lines.join("\n");
}

const INSTRUCTIONS = [
  "poi_intent: create (name, description, reference_tags) only when the prompt says New place: ALLOWED",
  "and the hero enters a notable new place; reference (exact name or a tag) when returning to a known place.",
  'location_intent: update_minor whenever the hero moves (location_id like "inn:rusty_tankard",',
  "location_display_name, minor_location); leave_poi when leaving the current place; else none.",
].join(" ");

/** The POI plugin; it also owns `location_intent`. */
export default definePlugin({
  name: "poi",
  version: "1.0.0",
  dependsOn: ["policy"],
  setup(host) {
    const policy = host.use(policyRef);
    host.addSubsystem<PoiIntent>({
      name: "poi",
      intentKey: POI_INTENT_KEY,
      intentSchema: PoiIntentSchema,
      summaryKey: "poi_change",
      instructions: INSTRUCTIONS,
      promptSection: poiSection,
      promptOrder: 200,
      gate: (ctx) => decidePoi(ctx, policyForTurn(policy, ctx)),
      apply: (ctx, intent, decision) => applyPoi(ctx, host.store, intent, decision),
      after: ["combat"],
      before: ["narrative"],
    });
    host.addIntent(LOCATION_INTENT_KEY, LocationIntentSchema);
  },
});
