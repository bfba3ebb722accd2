/**
 * Mapping between the journey-log service's shapes and the store port's
 * types, kept apart from the HTTP code so the mapping is reviewed in one
 * place. Where the service has no field for something the port carries,
 * the choice made here is documented on the function.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type {
  Character,
  CombatState,
  Location,
  NarrativeTurn,
  NewPoi,
  NewQuest,
  Poi,
  Quest,
} from "../port.ts";
import type {
  AppendNarrativeRequest,
  CreatePoiRequest,
  JlCharacter,
  JlCombatState,
  JlNarrativeTurn,
  JlPoi,
  JlQuest,
  QuestRequest,
  UpdateCombatRequest,
} from "./schemas.ts";

/**
 * Sent as `adventure_prompt` when the player gave no setting: the service
 * requires a non-empty prompt. Read back as "no custom prompt".
 */
export const DEFAULT_ADVENTURE_PROMPT = "A new adventure begins.";

/** Error of writer methods the service has no endpoint for. */
export const UNSUPPORTED = "unsupported by journey-log";

/** Error of a quest start the service refused with 409. */
export const QUEST_ALREADY_ACTIVE = "a quest is already active in the journey log";

/** Reserved side-store plugin-state key holding what the service cannot store about the quest. */
export const QUEST_STATE_KEY = "journey-log:quest";

/** `created_at` of a POI the service returned without one. */
export const UNKNOWN_TIME = new Date(0).toISOString();

/** Longest `ai_response` the service accepts. */
export const MAX_NARRATIVE = 32000;

/**
 * What the side store keeps about the active quest: the service's `Quest`
 * has no place for our details, the quest→POI tie or progress notes.
 */
export interface QuestRecord {
  quest_id: string;
  details: Record<string, unknown> | null;
  poi_id: string | null;
  progress: string[];
}

/** Read a {@link QuestRecord} from plugin state; anything else is null. */
export function toQuestRecord(value: unknown): QuestRecord | null {
  if (typeof value !== "object" || value === null) return null;
  const v = value as Partial<QuestRecord>;
  if (typeof v.quest_id !== "string" || !Array.isArray(v.progress)) return null;
  return {
    quest_id: v.quest_id,
    details: typeof v.details === "object" ? v.details ?? null : null,
    poi_id: typeof v.poi_id === "string" ? v.poi_id : null,
    progress: v.progress.filter((p): p is string => typeof p === "string"),
  };
}

/** Milliseconds of a timestamp the schemas already checked. */
export function ms(timestamp: string): number {
  return Date.parse(timestamp);
}

/** A timestamp in our canonical form (milliseconds, `Z`), whatever precision the service used. */
export function canonicalTime(timestamp: string): string {
  return new Date(ms(timestamp)).toISOString();
}

/** The latest of some timestamps (by time, not by text). */
export function latest(timestamps: readonly string[]): string {
  return timestamps.reduce((a, b) => (ms(b) > ms(a) ? b : a));
}

function text(value: unknown): string | null {
  return typeof value === "string" && value.trim() !== "" ? value : null;
}

/**
 * The service's location: a `Location` object, or a legacy string or
 * object. It has no `minor` place and no current POI.
 */
export function toLocation(location: JlCharacter["player_state"]["location"]): Location {
  if (typeof location === "string") {
    return { id: null, display_name: text(location), minor: null, poi_id: null };
  }
  const loc = location as Record<string, unknown>;
  return { id: text(loc.id), display_name: text(loc.display_name), minor: null, poi_id: null };
}

/**
 * Location fields of `POST /characters`: both or neither (the service's
 * rule), so a lone id or display name stands in for the missing one.
 */
export function locationFields(
  location: Location,
): { location_id?: string; location_display_name?: string } {
  const id = location.id?.trim() || null;
  const name = location.display_name?.trim() || null;
  if (id === null && name === null) return {};
  return { location_id: id ?? name!, location_display_name: name ?? id! };
}

/** A character document as a port `Character`. */
export function toCharacter(doc: JlCharacter): Character {
  const identity = doc.player_state.identity;
  return {
    character_id: doc.character_id,
    owner_id: doc.owner_user_id,
    name: identity.name,
    race: identity.race,
    class_name: identity.class,
    custom_prompt: doc.adventure_prompt === DEFAULT_ADVENTURE_PROMPT ? null : doc.adventure_prompt,
    status: doc.player_state.status,
    location: toLocation(doc.player_state.location),
    created_at: doc.created_at,
  };
}

/**
 * A stable id for a quest, which the service does not give: derived from
 * the character, the quest's name and its `updated_at` (we set that to the
 * start time and never change it), so every read names it the same.
 */
export function questId(character_id: string, quest: JlQuest): string {
  const hex = createHash("sha256")
    .update(`${character_id}\n${quest.name}\n${canonicalTime(quest.updated_at)}`)
    .digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20, 32)
  }`;
}

/** Quest details read from the service's requirements and reward items, for quests we did not start. */
function detailsFrom(quest: JlQuest): Record<string, unknown> | null {
  const objective = (quest.requirements ?? []).join("; ").trim();
  const reward = (quest.rewards.items ?? []).join(", ").trim();
  const out: Record<string, string> = {};
  if (objective) out.objective = objective;
  if (reward) out.reward = reward;
  return Object.keys(out).length > 0 ? out : null;
}

/**
 * The active quest as a port `Quest`. Details, the POI tie and progress
 * come from the side-store record when it belongs to this quest. The
 * service's single quest slot is "active" whatever its `completion_state`
 * (a completed quest still blocks a new one until it is deleted).
 */
export function toQuest(character_id: string, quest: JlQuest, record: QuestRecord | null): Quest {
  const quest_id = questId(character_id, quest);
  const own = record?.quest_id === quest_id ? record : null;
  return {
    quest_id,
    title: quest.name,
    summary: quest.description,
    details: own ? own.details : detailsFrom(quest),
    poi_id: own?.poi_id ?? null,
    status: "active",
    progress: own ? [...own.progress] : [],
    started_at: quest.updated_at,
    ended_at: null,
  };
}

/**
 * The `PUT …/quest` body. The objective and reward of our details go to
 * `requirements` and `rewards.items`, where other readers of the journey
 * log look for them; `updated_at` is the turn's time and stays the start time.
 */
export function questBody(quest: NewQuest, at: string): QuestRequest {
  const objective = text(quest.details?.objective);
  const reward = text(quest.details?.reward);
  return {
    name: quest.title,
    description: quest.summary,
    requirements: objective ? [objective] : [],
    rewards: { items: reward ? [reward] : [], currency: {}, experience: null },
    completion_state: "in_progress",
    updated_at: at,
  };
}

/**
 * A combat state as a port `CombatState`. Enemy descriptions and threats
 * live in each enemy's `metadata`, the fight's notes in `player_conditions.notes`.
 */
export function toCombat(state: JlCombatState): CombatState {
  return {
    combat_id: state.combat_id,
    turn: state.turn ?? 1,
    enemies: state.enemies.map((e) => ({
      enemy_id: e.enemy_id,
      name: e.name,
      description: text(e.metadata?.description),
      threat: text(e.metadata?.threat),
      status: e.status,
    })),
    notes: text(state.player_conditions?.notes),
    started_at: state.started_at,
  };
}

/** The `PUT …/combat` body; null ends combat. */
export function combatBody(state: CombatState | null): UpdateCombatRequest {
  if (state === null) return { combat_state: null };
  return {
    combat_state: {
      combat_id: state.combat_id,
      started_at: state.started_at,
      turn: state.turn,
      enemies: state.enemies.map((e) => ({
        enemy_id: e.enemy_id,
        name: e.name,
        status: e.status,
        weapon: null,
        traits: [],
        metadata: { description: e.description, threat: e.threat },
      })),
      player_conditions: state.notes === null ? null : { notes: state.notes },
    },
  };
}

/** A stored narrative turn as a port `NarrativeTurn`. */
export function toNarrative(turn: JlNarrativeTurn): NarrativeTurn {
  return {
    user_action: turn.player_action,
    narrative: turn.gm_response,
    created_at: turn.timestamp,
  };
}

/** Clip to `max` UTF-16 units without splitting a surrogate pair. */
function clip(value: string, max: number): string {
  if (value.length <= max) return value;
  const cut = value.slice(0, max);
  const last = cut.charCodeAt(cut.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) : cut;
}

/**
 * The `POST …/narrative` body. A narrative longer than the service's
 * 32 000 characters is clipped rather than lost; an empty one cannot be
 * stored at all.
 *
 * @throws Error when the action or the narrative is empty.
 */
export function narrativeBody(
  turn: { user_action: string; narrative: string },
  at: string,
): AppendNarrativeRequest {
  if (turn.user_action.trim() === "") throw new Error("the user action is empty");
  if (turn.narrative.trim() === "") throw new Error("the narrative is empty");
  return {
    user_action: clip(turn.user_action, 8000),
    ai_response: clip(turn.narrative, MAX_NARRATIVE),
    timestamp: at,
  };
}

/** The `POST …/pois` body, at the turn's time; the POI plugin already applied the limits. */
export function poiBody(poi: NewPoi, at: string): CreatePoiRequest {
  return {
    name: poi.name,
    description: poi.description,
    tags: poi.tags.filter((t) => t.trim() !== ""),
    timestamp: at,
  };
}

/** A POI as a port `Poi`. */
export function toPoi(poi: JlPoi): Poi {
  return {
    poi_id: poi.id,
    name: poi.name,
    description: poi.description,
    tags: poi.tags ?? [],
    created_at: poi.created_at ?? UNKNOWN_TIME,
  };
}
