/**
 * Our own zod schemas of the parts of the journey-log HTTP contract
 * (OpenAPI "Journey Log API" 0.1.0) this project uses. They are written from
 * the contract, not generated, and the service's document is never read at
 * run time.
 *
 * Request schemas are strict, as the service is (`extra="forbid"` on every
 * request model): the contract fake in the tests rejects a request our
 * adapter builds wrong. Response schemas check what we read and ignore
 * unknown keys, so a newer service that adds fields does not break us.
 *
 * @module
 */
import { z } from "zod";

/** Health status of a character or an enemy (the service's `Status` enum). */
export const StatusSchema = z.enum(["Healthy", "Wounded", "Dead"]);

/** A timestamp the service returns; it must at least parse as a date. */
export const TimestampSchema = z.string().refine(
  (s) => !Number.isNaN(Date.parse(s)),
  "must be an ISO 8601 timestamp",
);

/** An ISO 8601 timestamp with an offset or `Z`, as we send them. */
const RequestTimestamp = z.iso.datetime({ offset: true });

/** A JSON object with any keys. */
const AnyObject = z.record(z.string(), z.unknown());

// ------------------------------------------------------------------ requests

/** `POST /characters` body. Both location fields are given or neither. */
export const CreateCharacterRequestSchema = z.strictObject({
  name: z.string().min(1).max(64),
  race: z.string().min(1).max(64),
  class: z.string().min(1).max(64),
  adventure_prompt: z.string().min(1),
  location_id: z.string().nullable().optional(),
  location_display_name: z.string().nullable().optional(),
}).refine(
  (b) => (b.location_id == null) === (b.location_display_name == null),
  "location_id and location_display_name go together",
);

/** `POST /characters` body. */
export type CreateCharacterRequest = z.input<typeof CreateCharacterRequestSchema>;

/** `POST /characters/{character_id}/narrative` body. */
export const AppendNarrativeRequestSchema = z.strictObject({
  user_action: z.string().min(1).max(8000),
  ai_response: z.string().min(1).max(32000),
  timestamp: RequestTimestamp.nullable().optional(),
});

/** `POST /characters/{character_id}/narrative` body. */
export type AppendNarrativeRequest = z.input<typeof AppendNarrativeRequestSchema>;

/** `POST /characters/{character_id}/pois` body. */
export const CreatePoiRequestSchema = z.strictObject({
  name: z.string().min(1).max(200),
  description: z.string().min(1).max(2000),
  timestamp: RequestTimestamp.nullable().optional(),
  tags: z.array(z.string().max(50).refine((t) => t.trim() !== "", "must not be blank")).max(20)
    .nullable().optional(),
});

/** `POST /characters/{character_id}/pois` body. */
export type CreatePoiRequest = z.input<typeof CreatePoiRequestSchema>;

const questRewardsShape = {
  items: z.array(z.string()).optional(),
  currency: z.record(z.string(), z.int().min(0)).optional(),
  experience: z.int().min(0).nullable().optional(),
};

const questShape = {
  name: z.string(),
  description: z.string(),
  requirements: z.array(z.string()).optional(),
  completion_state: z.enum(["not_started", "in_progress", "completed"]),
};

/** `PUT /characters/{character_id}/quest` body: a bare `Quest`. */
export const QuestRequestSchema = z.strictObject({
  ...questShape,
  rewards: z.strictObject(questRewardsShape),
  updated_at: RequestTimestamp,
});

/** A quest as we send it. */
export type QuestRequest = z.input<typeof QuestRequestSchema>;

const enemyShape = {
  enemy_id: z.string(),
  name: z.string(),
  status: StatusSchema,
  weapon: z.string().nullable().optional(),
  traits: z.array(z.string()).optional(),
  metadata: AnyObject.nullable().optional(),
};

/** Most enemies one combat may hold. */
export const MAX_ENEMIES = 5;

/** `CombatState` as sent in `PUT /characters/{character_id}/combat`. */
export const CombatStateRequestSchema = z.strictObject({
  combat_id: z.string(),
  started_at: z.string(),
  turn: z.int().min(1).optional(),
  enemies: z.array(z.strictObject(enemyShape)).max(MAX_ENEMIES),
  player_conditions: AnyObject.nullable().optional(),
});

/** `PUT /characters/{character_id}/combat` body; `null` ends combat. */
export const UpdateCombatRequestSchema = z.strictObject({
  combat_state: CombatStateRequestSchema.nullable(),
});

/** `PUT /characters/{character_id}/combat` body. */
export type UpdateCombatRequest = z.input<typeof UpdateCombatRequestSchema>;

// ----------------------------------------------------------------- responses

/** `Location` object, a legacy string, or a legacy free-form object. */
export const LocationSchema = z.union([
  z.object({ id: z.string(), display_name: z.string() }),
  z.string(),
  AnyObject,
]);

/** `PlayerState`. */
export const PlayerStateSchema = z.object({
  identity: z.object({ name: z.string(), race: z.string(), class: z.string() }),
  status: StatusSchema,
  location: LocationSchema,
});

/** `Quest` as returned. */
export const QuestSchema = z.object({
  ...questShape,
  rewards: z.object(questRewardsShape),
  updated_at: TimestampSchema,
});

/** A quest as returned. */
export type JlQuest = z.output<typeof QuestSchema>;

/** `CombatState` as returned. */
export const CombatStateSchema = z.object({
  combat_id: z.string(),
  started_at: z.string(),
  turn: z.int().min(1).optional(),
  enemies: z.array(z.object(enemyShape)),
  player_conditions: AnyObject.nullable().optional(),
});

/** A combat state as returned. */
export type JlCombatState = z.output<typeof CombatStateSchema>;

/** `NarrativeTurn`; note `player_action`/`gm_response`, not the request's names. */
export const NarrativeTurnSchema = z.object({
  turn_id: z.string(),
  player_action: z.string(),
  gm_response: z.string(),
  timestamp: TimestampSchema,
});

/** A narrative turn as returned. */
export type JlNarrativeTurn = z.output<typeof NarrativeTurnSchema>;

/** `PointOfInterest` (the API view of a stored POI). */
export const PoiSchema = z.object({
  id: z.string(),
  name: z.string(),
  description: z.string(),
  created_at: TimestampSchema.nullable().optional(),
  tags: z.array(z.string()).nullable().optional(),
});

/** A POI as returned. */
export type JlPoi = z.output<typeof PoiSchema>;

/** `CharacterDocument`: the fields this project reads. */
export const CharacterDocumentSchema = z.object({
  character_id: z.string(),
  owner_user_id: z.string(),
  adventure_prompt: z.string(),
  player_state: PlayerStateSchema,
  created_at: TimestampSchema,
  updated_at: TimestampSchema,
  active_quest: QuestSchema.nullable().optional(),
  archived_quests: z.array(z.object({ quest: QuestSchema, cleared_at: TimestampSchema }))
    .optional(),
  combat_state: CombatStateSchema.nullable().optional(),
});

/** A character document as returned. */
export type JlCharacter = z.output<typeof CharacterDocumentSchema>;

/** `CreateCharacterResponse` and `GetCharacterResponse`. */
export const CharacterResponseSchema = z.object({ character: CharacterDocumentSchema });

/** `CharacterContextResponse` of `GET /characters/{character_id}/context`. */
export const CharacterContextResponseSchema = z.object({
  character_id: z.string(),
  player_state: PlayerStateSchema,
  quest: QuestSchema.nullable().optional(),
  has_active_quest: z.boolean(),
  combat: z.object({ active: z.boolean(), state: CombatStateSchema.nullable().optional() }),
  narrative: z.object({
    recent_turns: z.array(NarrativeTurnSchema).optional(),
    requested_n: z.int(),
    returned_n: z.int(),
    max_n: z.int(),
  }),
  world: z.object({
    pois_sample: z.array(PoiSchema).optional(),
    pois_cap: z.int(),
    include_pois: z.boolean(),
  }),
  metadata: z.object({
    narrative_max_n: z.int(),
    narrative_requested_n: z.int(),
    pois_cap: z.int(),
    pois_requested: z.boolean(),
  }),
});

/** A context as returned. */
export type JlContext = z.output<typeof CharacterContextResponseSchema>;

/** `AppendNarrativeResponse`. */
export const AppendNarrativeResponseSchema = z.object({
  turn: NarrativeTurnSchema,
  total_turns: z.int(),
});

/** `GetNarrativeResponse`. */
export const GetNarrativeResponseSchema = z.object({
  turns: z.array(NarrativeTurnSchema),
  metadata: z.object({
    requested_n: z.int(),
    returned_count: z.int(),
    total_available: z.int().min(0),
  }),
});

/** `CreatePOIResponse`. */
export const CreatePoiResponseSchema = z.object({ poi: PoiSchema });

/** `GetPOIsResponse` (cursor pages, newest first). */
export const GetPoisResponseSchema = z.object({
  pois: z.array(PoiSchema),
  count: z.int(),
  cursor: z.string().nullable().optional(),
});

/** `GetRandomPOIsResponse`. */
export const GetRandomPoisResponseSchema = z.object({
  pois: z.array(PoiSchema),
  count: z.int(),
  requested_n: z.int(),
  total_available: z.int(),
});

/** `SetQuestResponse`. */
export const SetQuestResponseSchema = z.object({ quest: QuestSchema });

/** `GetQuestResponse`: the active quest or null. */
export const GetQuestResponseSchema = z.object({ quest: QuestSchema.nullable() });

/** `UpdateCombatResponse`. */
export const UpdateCombatResponseSchema = z.object({
  active: z.boolean(),
  state: CombatStateSchema.nullable(),
});

/** Any body we do not read (204 answers, `/health`). */
export const IgnoredBodySchema = z.unknown();

// ------------------------------------------------------------- query limits

/** Query limits of the contract, shared by the adapter and the contract fake. */
export const QUERY_LIMITS = {
  /** `recent_n` of the context: 1..100, default 20. */
  contextRecentN: { min: 1, max: 100 },
  /** `n` of `GET …/narrative`: 1..100, default 10. */
  narrativeN: { min: 1, max: 100 },
  /** `limit` of `GET …/pois`: 1..100, default 10. */
  poisLimit: { min: 1, max: 100 },
  /** `n` of `GET …/pois/random`: 1..20, default 3. */
  randomPoisN: { min: 1, max: 20 },
} as const;
