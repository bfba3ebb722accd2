/**
 * The unit of work of one turn against the journey-log service. The service
 * has no transactions, so every write is sent at once, in the order the
 * engine calls it (quest → combat → POI → narrative), and a failed write
 * throws: the host records it in `subsystem_summary` and the later writes
 * still run. `commit` and `fail` then store the turn record and its events
 * in the side SQLite store.
 *
 * Writes the service already accepted are never undone: a turn that fails
 * after its combat write keeps that combat state in the journey log, and
 * its record says `failed`.
 *
 * @module
 */
import type { TurnEvent } from "../../shared/events.ts";
import type {
  CharacterStatus,
  CombatState,
  Location,
  NewPoi,
  NewQuest,
  Poi,
  Quest,
  TurnOutcomeRecord,
  TurnTransaction,
} from "../port.ts";
import type { JourneyLogClient } from "./client.ts";
import {
  combatBody,
  narrativeBody,
  poiBody,
  QUEST_ALREADY_ACTIVE,
  QUEST_STATE_KEY,
  questBody,
  type QuestRecord,
  toPoi,
  toQuest,
  UNSUPPORTED,
} from "./mapping.ts";
import {
  AppendNarrativeResponseSchema,
  CreatePoiResponseSchema,
  IgnoredBodySchema,
  MAX_ENEMIES,
  SetQuestResponseSchema,
  UpdateCombatResponseSchema,
} from "./schemas.ts";

/** Prefix of side-store plugin-state keys the adapter reserves for itself. */
const RESERVED_PREFIX = "journey-log:";

/** What a transaction needs from its store. */
export interface JourneyLogTurnDeps {
  client: JourneyLogClient;
  owner_id: string;
  character_id: string;
  /** The side store's transaction of the same turn: plugin state, the record, events. */
  side: TurnTransaction;
  /** Timestamp of every write of this turn (narrative, quest, POI). */
  at: string;
  /** The active quest as the turn loaded it; undefined when unknown. */
  quest: Quest | null | undefined;
  /** Reads the active quest when {@link JourneyLogTurnDeps.quest} is unknown. */
  loadQuest: () => Promise<Quest | null>;
}

/** One running turn's writes against the journey-log service. */
export class JourneyLogTurnTransaction implements TurnTransaction {
  readonly #d: JourneyLogTurnDeps;
  readonly #params: { character_id: string };
  #quest: Quest | null | undefined;
  #questStarted = false;
  #narrativeAppended = false;
  #finished = false;

  constructor(deps: JourneyLogTurnDeps) {
    this.#d = deps;
    this.#params = { character_id: deps.character_id };
    this.#quest = deps.quest;
  }

  #open(method: string): void {
    if (this.#finished) throw new Error(`${method}: the turn is already committed or failed`);
  }

  async #activeQuest(): Promise<Quest | null> {
    if (this.#quest === undefined) this.#quest = await this.#d.loadQuest();
    return this.#quest;
  }

  #record(quest: Quest): QuestRecord {
    return {
      quest_id: quest.quest_id,
      details: quest.details,
      poi_id: quest.poi_id,
      progress: [...quest.progress],
    };
  }

  /**
   * `PUT …/quest`. A 409 means the service already has an active quest:
   * the start is refused with {@link QUEST_ALREADY_ACTIVE}, which the host
   * reports as `skipped`. Not retried: a retry of a start that landed would
   * itself answer 409.
   */
  async startQuest(quest: NewQuest): Promise<Quest> {
    this.#open("startQuest");
    if (this.#questStarted) throw new Error("startQuest: a quest was already started this turn");
    const { client, owner_id, character_id, at } = this.#d;
    const reply = await client.call({
      method: "PUT",
      route: "/characters/{character_id}/quest",
      params: this.#params,
      userId: owner_id,
      body: questBody(quest, at),
      success: 200,
      schema: SetQuestResponseSchema,
      answers: [409],
      retry: false,
    });
    if (!reply.ok) throw new Error(QUEST_ALREADY_ACTIVE);
    const started: Quest = {
      ...toQuest(character_id, reply.body.quest, null),
      details: quest.details,
      poi_id: quest.poi_id,
      progress: [],
    };
    this.#quest = started;
    this.#questStarted = true;
    await this.#d.side.putPluginState(QUEST_STATE_KEY, this.#record(started));
    return { ...started, progress: [] };
  }

  /**
   * The service cannot change a quest in place (PUT answers 409 while one
   * is active, and DELETE archives it), so progress notes are kept in the
   * side store with the turn record.
   */
  async advanceQuest(progress: string): Promise<void> {
    this.#open("advanceQuest");
    const quest = await this.#activeQuest();
    if (quest === null) throw new Error("advanceQuest: there is no active quest");
    quest.progress.push(progress);
    await this.#d.side.putPluginState(QUEST_STATE_KEY, this.#record(quest));
  }

  /**
   * `DELETE …/quest`, which archives the quest with its `cleared_at`. The
   * service keeps no ending status, so completed and abandoned quests look
   * the same in its archive; the turn's summary says which it was.
   * Retried: the delete is idempotent.
   */
  async endQuest(status: "completed" | "abandoned"): Promise<void> {
    this.#open("endQuest");
    if (status !== "completed" && status !== "abandoned") {
      throw new Error(`endQuest: invalid status ${String(status)}`);
    }
    const quest = await this.#activeQuest();
    if (quest === null) throw new Error("endQuest: there is no active quest");
    await this.#d.client.call({
      method: "DELETE",
      route: "/characters/{character_id}/quest",
      params: this.#params,
      userId: this.#d.owner_id,
      success: 204,
      schema: IgnoredBodySchema,
      retry: true,
    });
    this.#quest = null;
    await this.#d.side.putPluginState(QUEST_STATE_KEY, null);
  }

  /** `PUT …/combat` with the full state (null ends combat); retried, as a full replace is idempotent. */
  async setCombat(state: CombatState | null): Promise<void> {
    this.#open("setCombat");
    if (state !== null && state.enemies.length > MAX_ENEMIES) {
      throw new Error(`setCombat: ${state.enemies.length} enemies, at most ${MAX_ENEMIES}`);
    }
    await this.#d.client.call({
      method: "PUT",
      route: "/characters/{character_id}/combat",
      params: this.#params,
      userId: this.#d.owner_id,
      body: combatBody(state),
      success: 200,
      schema: UpdateCombatResponseSchema,
      retry: true,
    });
  }

  /** The service has no endpoint that changes the player's status. */
  setStatus(_status: CharacterStatus): Promise<void> {
    return attempt(() => {
      this.#open("setStatus");
      throw new Error(UNSUPPORTED);
    });
  }

  /** `POST …/pois`; never retried, as a second create would store the place twice. */
  async createPoi(poi: NewPoi): Promise<Poi> {
    this.#open("createPoi");
    const reply = await this.#d.client.call({
      method: "POST",
      route: "/characters/{character_id}/pois",
      params: this.#params,
      userId: this.#d.owner_id,
      body: poiBody(poi, this.#d.at),
      success: 201,
      schema: CreatePoiResponseSchema,
      retry: false,
    });
    if (!reply.ok) throw new Error("createPoi: no POI in the answer");
    return toPoi(reply.body.poi);
  }

  /** The service has no endpoint that changes the player's location. */
  setLocation(_location: Location): Promise<void> {
    return attempt(() => {
      this.#open("setLocation");
      throw new Error(UNSUPPORTED);
    });
  }

  /** `POST …/narrative`, once per turn; never retried, as a second append would store the turn twice. */
  async appendNarrative(turn: { user_action: string; narrative: string }): Promise<void> {
    this.#open("appendNarrative");
    if (this.#narrativeAppended) {
      throw new Error("appendNarrative: this turn already appended its narrative");
    }
    const body = narrativeBody(turn, this.#d.at);
    await this.#d.client.call({
      method: "POST",
      route: "/characters/{character_id}/narrative",
      params: this.#params,
      userId: this.#d.owner_id,
      body,
      success: 201,
      schema: AppendNarrativeResponseSchema,
      retry: false,
    });
    this.#narrativeAppended = true;
  }

  /** Plugin state lives in the side store and is committed with the turn record. */
  async putPluginState(plugin: string, value: unknown): Promise<void> {
    this.#open("putPluginState");
    if (typeof plugin === "string" && plugin.startsWith(RESERVED_PREFIX)) {
      throw new Error(`putPluginState: "${plugin}" is reserved by the store`);
    }
    await this.#d.side.putPluginState(plugin, value);
  }

  /** Store the completed turn record and its events (and buffered plugin state) in the side store. */
  async commit(outcome: TurnOutcomeRecord, events: TurnEvent[]): Promise<void> {
    this.#open("commit");
    await this.#d.side.commit(outcome, events);
    this.#finished = true;
  }

  /**
   * Mark the turn failed in the side store. Writes already sent to the
   * service stay; only buffered plugin state is dropped.
   */
  async fail(error_type: string, events: TurnEvent[]): Promise<void> {
    this.#open("fail");
    await this.#d.side.fail(error_type, events);
    this.#finished = true;
  }
}

/** Run `fn` so that whatever it throws comes out as a rejection, like every other writer call. */
function attempt(fn: () => void): Promise<void> {
  try {
    fn();
    return Promise.resolve();
  } catch (error) {
    return Promise.reject(error);
  }
}
