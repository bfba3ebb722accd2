/**
 * The journey-log adapter: a {@link Store} backed by the original
 * journey-log HTTP service (`DM_STORE=journey-log`), for studios that keep
 * their characters there.
 *
 * - Characters, the active quest, combat, POIs and the narrative live in the
 *   service; every call carries the acting user as `X-User-Id`, which is how
 *   the service scopes characters to users.
 * - Turn records, turn event logs, idempotency keys and plugin state live in
 *   a side {@link SqliteStore}, so resume and idempotency work as with the
 *   embedded store. Each character gets a "shadow" row there for the keys.
 * - The service has no transactions: a turn's writes are sent one by one
 *   (see `transaction.ts`); status and location changes have no endpoint.
 * - The cooldown counters are derived from the service's own data on every
 *   load (see {@link JourneyLogStore.loadContext}), so they hold across
 *   restarts and across instances.
 *
 * @example
 * ```ts
 * const store = new JourneyLogStore({
 *   baseUrl: "http://journey-log:8080",
 *   timeoutMs: 5000,
 *   retries: 3,
 *   side: new SqliteStore("./data/dm.sqlite"),
 * });
 * ```
 *
 * @module
 */
import type { Tracer } from "@opentelemetry/api";
import { DmError } from "../../errors.ts";
import type { TurnEvent } from "../../shared/events.ts";
import type {
  BeginTurnResult,
  Character,
  CharacterContext,
  CharacterView,
  Location,
  NewCharacter,
  NewPoi,
  Poi,
  Quest,
  Store,
  TurnRecord,
  TurnStart,
  TurnTransaction,
} from "../port.ts";
import type { SqliteStore } from "../sqlite/mod.ts";
import { INTRO_ACTION } from "../sqlite/queries.ts";
import { JourneyLogClient } from "./client.ts";
import {
  DEFAULT_ADVENTURE_PROMPT,
  latest,
  locationFields,
  ms,
  narrativeBody,
  poiBody,
  QUEST_STATE_KEY,
  type QuestRecord,
  toCharacter,
  toCombat,
  toLocation,
  toNarrative,
  toPoi,
  toQuest,
  toQuestRecord,
} from "./mapping.ts";
import {
  AppendNarrativeResponseSchema,
  CharacterContextResponseSchema,
  CharacterResponseSchema,
  CreatePoiResponseSchema,
  GetNarrativeResponseSchema,
  GetPoisResponseSchema,
  GetQuestResponseSchema,
  GetRandomPoisResponseSchema,
  IgnoredBodySchema,
  type JlCharacter,
  type JlContext,
  QUERY_LIMITS,
} from "./schemas.ts";
import { JourneyLogTurnTransaction } from "./transaction.ts";

export { UNSUPPORTED } from "./mapping.ts";

/** Options of {@link JourneyLogStore}. */
export interface JourneyLogStoreOptions {
  /** Base URL of the service (`DM_JOURNEY_LOG_URL`). */
  baseUrl: string;
  /** Limit of one HTTP attempt (`DM_JOURNEY_LOG_TIMEOUT_MS`). */
  timeoutMs: number;
  /** Extra attempts of reads and idempotent writes (`DM_JOURNEY_LOG_RETRIES`). */
  retries: number;
  /** Holds turn records, events, idempotency keys and plugin state; closed with this store. */
  side: SqliteStore;
  fetch?: typeof fetch;
  /** Waits between attempts; tests record instead of waiting. */
  sleep?: (ms: number) => Promise<void>;
  tracer?: Tracer;
  /** Clock of the turns' write timestamps; tests fix it. */
  now?: () => Date;
}

/** How many narrative turns a context carries (the context's `recent_n`). */
export const RECENT_TURNS = 20;

/** Most POI pages read when listing all places (100 each). */
const MAX_POI_PAGES = 100;

/** Characters whose turn facts are remembered between `loadContext` and `openTurn`. */
const MAX_REMEMBERED = 10_000;

/** What `openTurn` needs from the `loadContext` that preceded it. */
interface TurnFacts {
  /** The latest time among the character's stored timestamps; the turn writes after it. */
  floorMs: number;
  quest: Quest | null;
}

/** The journey-log service as a {@link Store}. */
export class JourneyLogStore implements Store {
  /** Adapter name for spans and logs. */
  readonly kind = "journey-log";
  readonly #client: JourneyLogClient;
  readonly #side: SqliteStore;
  readonly #now: () => Date;
  readonly #facts = new Map<string, TurnFacts>();

  constructor(options: JourneyLogStoreOptions) {
    this.#client = new JourneyLogClient(options);
    this.#side = options.side;
    this.#now = options.now ?? (() => new Date());
  }

  /** Ready when the side store answers and the service's `/health` says 200. */
  async ready(): Promise<boolean> {
    if (!await this.#side.ready()) return false;
    try {
      await this.#client.call({
        method: "GET",
        route: "/health",
        userId: null,
        success: 200,
        schema: IgnoredBodySchema,
        retry: false,
      });
      return true;
    } catch {
      // Any failure of the probe means "not ready", which is what it asks.
      return false;
    }
  }

  /**
   * `POST /characters`, then the intro as the first narrative turn and the
   * origin place as the first POI, both stamped with the character's
   * `created_at` (so neither counts as a played turn or starts a cooldown
   * late). Three calls, not one transaction: if the intro or the POI fails,
   * the character stays in the service without it (the service has no
   * delete) and the caller gets the error.
   *
   * @throws DmError `validation_error` when a field exceeds the service's
   *   limits (name, race and class at most 64 characters) or the same user
   *   already has a character with that name, race and class (409).
   */
  async createCharacter(
    owner_id: string,
    input: NewCharacter,
    intro: { narrative: string; location: Location; origin: NewPoi | null },
  ): Promise<Character> {
    const prompt = input.custom_prompt?.trim() ? input.custom_prompt : DEFAULT_ADVENTURE_PROMPT;
    const reply = await this.#client.call({
      method: "POST",
      route: "/characters",
      userId: owner_id,
      body: {
        name: identityField(input.name, "name"),
        race: identityField(input.race, "race"),
        class: identityField(input.class_name, "class_name"),
        adventure_prompt: prompt,
        ...locationFields(intro.location),
      },
      success: 201,
      schema: CharacterResponseSchema,
      answers: [409],
      retry: false,
    });
    if (!reply.ok) {
      throw new DmError(
        "validation_error",
        "A character with this name, race and class already exists for this user.",
      );
    }
    const doc = reply.body.character;
    const character = toCharacter(doc);
    await this.#side.ensureShadowCharacter(character);
    const params = { character_id: doc.character_id };
    if (intro.narrative.trim() !== "") {
      await this.#client.call({
        method: "POST",
        route: "/characters/{character_id}/narrative",
        params,
        userId: owner_id,
        body: narrativeBody(
          { user_action: INTRO_ACTION, narrative: intro.narrative },
          doc.created_at,
        ),
        success: 201,
        schema: AppendNarrativeResponseSchema,
        retry: false,
      });
    }
    if (intro.origin !== null) {
      await this.#client.call({
        method: "POST",
        route: "/characters/{character_id}/pois",
        params,
        userId: owner_id,
        body: poiBody(intro.origin, doc.created_at),
        success: 201,
        schema: CreatePoiResponseSchema,
        retry: false,
      });
    }
    return character;
  }

  /**
   * Load a turn's context: `GET …/context?recent_n=20&include_pois=false`
   * (404 or 403 there, or a document owned by someone else, is "not
   * found"), then the character document and the newest POI, and — only
   * when the 20 recent turns cannot tell — narrative counts.
   *
   * The service keeps no counters, so they are derived from its data:
   * - `turn_count`: narrative turns after the character's `created_at`
   *   (the intro is stamped exactly `created_at`);
   * - `turns_since_last_quest`: turns after the latest quest start (the
   *   active or any archived quest's `updated_at`, which is the start turn's
   *   time; that turn's own narrative has the same time and does not count);
   * - `turns_since_last_poi`: turns after the newest POI's `created_at`.
   * With no quest or POI yet, the character's `created_at` stands in, so a
   * new character plays the normal cooldown first, as with SQLite.
   */
  async loadContext(owner_id: string, character_id: string): Promise<CharacterContext | null> {
    const params = { character_id };
    const context = await this.#client.call({
      method: "GET",
      route: "/characters/{character_id}/context",
      params,
      query: { recent_n: RECENT_TURNS, include_pois: false },
      userId: owner_id,
      success: 200,
      schema: CharacterContextResponseSchema,
      answers: [403, 404],
      retry: true,
    });
    if (!context.ok) return null;
    const [doc, newestPoi] = await Promise.all([
      this.#document(owner_id, character_id),
      this.#newestPoi(owner_id, character_id),
    ]);
    if (doc === null || doc.owner_user_id !== owner_id) return null;
    const ctx = context.body;
    // Status and location as the context reports them; the document's are the same fields.
    const character: Character = {
      ...toCharacter(doc),
      status: ctx.player_state.status,
      location: toLocation(ctx.player_state.location),
    };
    await this.#side.ensureShadowCharacter(character);
    const side = await this.#side.loadContext(owner_id, character_id);
    const { [QUEST_STATE_KEY]: rawRecord, ...plugin_state } = side?.plugin_state ?? {};
    const record: QuestRecord | null = toQuestRecord(rawRecord);
    const quest = ctx.quest ? toQuest(character_id, ctx.quest, record) : null;
    const turns = ctx.narrative.recent_turns ?? [];

    const created = doc.created_at;
    const questMark = latest([
      created,
      ...(ctx.quest ? [ctx.quest.updated_at] : []),
      ...(doc.archived_quests ?? []).map((a) => a.quest.updated_at),
    ]);
    const poiMark = latest([created, ...(newestPoi?.created_at ? [newestPoi.created_at] : [])]);
    // The marks often coincide (no quest or POI yet): ask once per distinct time.
    const counts = new Map<number, Promise<number>>();
    const count = (since: string) => {
      let n = counts.get(ms(since));
      if (n === undefined) {
        n = this.#countSince(owner_id, character_id, ctx, since);
        counts.set(ms(since), n);
      }
      return n;
    };
    const [turn_count, turns_since_last_quest, turns_since_last_poi] = await Promise.all([
      count(created),
      count(questMark),
      count(poiMark),
    ]);

    this.#remember(owner_id, character_id, {
      floorMs: Math.max(
        ...[created, questMark, poiMark, ...turns.map((t) => t.timestamp)].map(ms),
      ),
      quest,
    });
    return {
      character,
      quest,
      combat: ctx.combat.active && ctx.combat.state ? toCombat(ctx.combat.state) : null,
      recent_turns: turns.map(toNarrative),
      turn_count,
      turns_since_last_quest,
      turns_since_last_poi,
      plugin_state,
    };
  }

  /** `GET /characters/{id}`; null when missing or not the user's. */
  async #document(owner_id: string, character_id: string): Promise<JlCharacter | null> {
    const reply = await this.#client.call({
      method: "GET",
      route: "/characters/{character_id}",
      params: { character_id },
      userId: owner_id,
      success: 200,
      schema: CharacterResponseSchema,
      answers: [403, 404],
      retry: true,
    });
    return reply.ok ? reply.body.character : null;
  }

  /** The newest POI (`GET …/pois?limit=1`, newest first), or null. */
  async #newestPoi(owner_id: string, character_id: string) {
    const reply = await this.#client.call({
      method: "GET",
      route: "/characters/{character_id}/pois",
      params: { character_id },
      query: { limit: 1 },
      userId: owner_id,
      success: 200,
      schema: GetPoisResponseSchema,
      answers: [403, 404],
      retry: true,
    });
    return reply.ok ? reply.body.pois[0] ?? null : null;
  }

  /**
   * Narrative turns strictly after `since`: counted in the context's recent
   * turns when they reach back that far (or are all there are), otherwise
   * asked with `GET …/narrative?since=…&n=1` and its `total_available`.
   */
  async #countSince(
    owner_id: string,
    character_id: string,
    ctx: JlContext,
    since: string,
  ): Promise<number> {
    const turns = ctx.narrative.recent_turns ?? [];
    const sinceMs = ms(since);
    const complete = turns.length < ctx.narrative.requested_n;
    if (complete || (turns.length > 0 && ms(turns[0].timestamp) <= sinceMs)) {
      return turns.filter((t) => ms(t.timestamp) > sinceMs).length;
    }
    const reply = await this.#client.call({
      method: "GET",
      route: "/characters/{character_id}/narrative",
      params: { character_id },
      query: { n: 1, since },
      userId: owner_id,
      success: 200,
      schema: GetNarrativeResponseSchema,
      retry: true,
    });
    if (!reply.ok) return 0;
    return reply.body.metadata.total_available;
  }

  #remember(owner_id: string, character_id: string, facts: TurnFacts): void {
    const key = `${owner_id}\n${character_id}`;
    // Re-insert so the map's order is least recently loaded first.
    this.#facts.delete(key);
    this.#facts.set(key, facts);
    if (this.#facts.size > MAX_REMEMBERED) {
      this.#facts.delete(this.#facts.keys().next().value!);
    }
  }

  async getCharacter(owner_id: string, character_id: string): Promise<CharacterView | null> {
    const context = await this.loadContext(owner_id, character_id);
    if (context === null) return null;
    return { ...context, pois: await this.listPois(owner_id, character_id) };
  }

  /** `GET …/pois/random?n=` (the service samples at most 20); [] when not found. */
  async randomPois(owner_id: string, character_id: string, n: number): Promise<Poi[]> {
    if (!(n > 0)) return [];
    const reply = await this.#client.call({
      method: "GET",
      route: "/characters/{character_id}/pois/random",
      params: { character_id },
      query: { n: Math.min(Math.floor(n), QUERY_LIMITS.randomPoisN.max) || 1 },
      userId: owner_id,
      success: 200,
      schema: GetRandomPoisResponseSchema,
      answers: [403, 404],
      retry: true,
    });
    return reply.ok ? reply.body.pois.map(toPoi) : [];
  }

  /** Every POI, newest first, through the service's cursor pages; [] when not found. */
  async listPois(owner_id: string, character_id: string): Promise<Poi[]> {
    const out: Poi[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_POI_PAGES; page++) {
      const reply = await this.#client.call({
        method: "GET",
        route: "/characters/{character_id}/pois",
        params: { character_id },
        query: { limit: QUERY_LIMITS.poisLimit.max, cursor },
        userId: owner_id,
        success: 200,
        schema: GetPoisResponseSchema,
        answers: [403, 404],
        retry: true,
      });
      if (!reply.ok) return [];
      out.push(...reply.body.pois.map(toPoi));
      if (!reply.body.cursor || reply.body.pois.length === 0) break;
      cursor = reply.body.cursor;
    }
    return out;
  }

  beginTurn(start: TurnStart): Promise<BeginTurnResult> {
    return this.#side.beginTurn(start);
  }

  findIdempotent(
    owner_id: string,
    key: string,
    request_hash: string,
  ): Promise<{ kind: "duplicate"; turn_id: string } | { kind: "key_reused" } | null> {
    return this.#side.findIdempotent(owner_id, key, request_hash);
  }

  /**
   * Open a turn: the side store's unit of work (which checks the turn is
   * running) wrapped by one that sends the writes to the service. Every
   * write of the turn is stamped with one time, after every timestamp the
   * preceding `loadContext` saw, so the derived counters stay exact.
   */
  openTurn(owner_id: string, character_id: string, turn_id: string): TurnTransaction {
    const side = this.#side.openTurn(owner_id, character_id, turn_id);
    const facts = this.#facts.get(`${owner_id}\n${character_id}`);
    const at = new Date(Math.max(this.#now().getTime(), (facts?.floorMs ?? 0) + 1));
    return new JourneyLogTurnTransaction({
      client: this.#client,
      owner_id,
      character_id,
      side,
      at: at.toISOString(),
      quest: facts ? structuredClone(facts.quest) : undefined,
      loadQuest: () => this.#activeQuest(owner_id, character_id),
    });
  }

  /** The active quest with its side-store record (`GET …/quest`). */
  async #activeQuest(owner_id: string, character_id: string): Promise<Quest | null> {
    const reply = await this.#client.call({
      method: "GET",
      route: "/characters/{character_id}/quest",
      params: { character_id },
      userId: owner_id,
      success: 200,
      schema: GetQuestResponseSchema,
      retry: true,
    });
    if (!reply.ok || reply.body.quest === null) return null;
    const side = await this.#side.loadContext(owner_id, character_id);
    const record = toQuestRecord(side?.plugin_state[QUEST_STATE_KEY]);
    return toQuest(character_id, reply.body.quest, record);
  }

  appendEvents(turn_id: string, events: TurnEvent[]): Promise<void> {
    return this.#side.appendEvents(turn_id, events);
  }

  getTurn(turn_id: string): Promise<TurnRecord | null> {
    return this.#side.getTurn(turn_id);
  }

  getEvents(turn_id: string, after_seq: number): Promise<TurnEvent[]> {
    return this.#side.getEvents(turn_id, after_seq);
  }

  /**
   * Fail turns a crash left running, in the side store. Unlike with SQLite,
   * some of their writes may already be in the service.
   */
  recoverInterrupted(): Promise<number> {
    return this.#side.recoverInterrupted();
  }

  close(): Promise<void> {
    return this.#side.close();
  }
}

/**
 * The service's identity fields are 1–64 characters (our API allows longer
 * names), and it answers 500 to whitespace-only ones.
 */
function identityField(value: string, field: string): string {
  const trimmed = value.trim();
  if (trimmed === "" || trimmed.length > 64) {
    throw new DmError(
      "validation_error",
      `${field}: 1-64 characters are allowed when characters are kept in the journey log`,
    );
  }
  return trimmed;
}
