/**
 * Test doubles for unit tests of the rule plugins: a recording in-memory
 * `TurnWriter` (a double of the store port), a roller with fixed values, a
 * hand-built `TurnContext`, and a `PluginHost` that only collects what
 * plugins register. None of them replace modules of this service.
 *
 * @module
 */
import { trace } from "@opentelemetry/api";
import { z } from "zod";
import { type Config, loadConfig } from "../../src/config.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import type { LlmProvider } from "../../src/llm/provider.ts";
import type {
  GateDecision,
  HttpMethod,
  Plugin,
  PluginHost,
  ServiceRef,
  StageDefinition,
  SubsystemDefinition,
  TurnContext,
} from "../../src/plugin/api.ts";
import type { RouteHandler } from "../../src/http/router.ts";
import type { ChangeResult } from "../../src/shared/events.ts";
import type {
  Character,
  CharacterContext,
  CharacterStatus,
  CombatState,
  Location,
  NewPoi,
  NewQuest,
  Poi,
  Quest,
  Store,
  TurnWriter,
} from "../../src/store/port.ts";
import type { TurnEngine } from "../../src/turn/engine.ts";
import type { Roller } from "../../src/turn/rng.ts";

/** One recorded writer call. */
export interface WriteCall {
  method: keyof TurnWriter;
  args: unknown[];
}

/** An in-memory TurnWriter that records every call and can be told to fail. */
export class RecordingWriter implements TurnWriter {
  readonly calls: WriteCall[] = [];
  /** Methods that throw instead of recording. */
  readonly failing = new Set<keyof TurnWriter>();
  #ids = 0;

  #record(method: keyof TurnWriter, args: unknown[]): void {
    if (this.failing.has(method)) throw new Error(`${method} failed (test)`);
    this.calls.push({ method, args });
  }

  /** Calls of one method, in order. */
  of(method: keyof TurnWriter): unknown[][] {
    return this.calls.filter((c) => c.method === method).map((c) => c.args);
  }

  startQuest(quest: NewQuest): Promise<Quest> {
    this.#record("startQuest", [quest]);
    return Promise.resolve({
      ...quest,
      quest_id: `q-${++this.#ids}`,
      status: "active",
      progress: [],
      started_at: "2024-01-01T00:00:00.000Z",
      ended_at: null,
    });
  }
  advanceQuest(progress: string): Promise<void> {
    this.#record("advanceQuest", [progress]);
    return Promise.resolve();
  }
  endQuest(status: "completed" | "abandoned"): Promise<void> {
    this.#record("endQuest", [status]);
    return Promise.resolve();
  }
  setCombat(state: CombatState | null): Promise<void> {
    this.#record("setCombat", [state]);
    return Promise.resolve();
  }
  setStatus(status: CharacterStatus): Promise<void> {
    this.#record("setStatus", [status]);
    return Promise.resolve();
  }
  createPoi(poi: NewPoi): Promise<Poi> {
    this.#record("createPoi", [poi]);
    return Promise.resolve({
      ...poi,
      poi_id: `p-new-${++this.#ids}`,
      created_at: "2024-01-01T00:00:00.000Z",
    });
  }
  setLocation(location: Location): Promise<void> {
    this.#record("setLocation", [location]);
    return Promise.resolve();
  }
  appendNarrative(turn: { user_action: string; narrative: string }): Promise<void> {
    this.#record("appendNarrative", [turn]);
    return Promise.resolve();
  }
  putPluginState(plugin: string, value: unknown): Promise<void> {
    this.#record("putPluginState", [plugin, value]);
    return Promise.resolve();
  }
}

/**
 * A roller returning fixed values by roll name (`fallback` for the rest).
 * `pick` maps its roll onto the items the way the real roller does.
 */
export class FixedRoller implements Roller {
  /** Names rolled, in order. */
  readonly rolled: string[] = [];
  constructor(readonly values: Record<string, number> = {}, readonly fallback = 0.999) {}
  roll(name: string): number {
    this.rolled.push(name);
    return this.values[name] ?? this.fallback;
  }
  pick<T>(name: string, items: readonly T[]): T | undefined {
    if (items.length === 0) return undefined;
    return items[Math.min(items.length - 1, Math.floor(this.roll(name) * items.length))];
  }
}

/** A POI with defaults. */
export function poi(overrides: Partial<Poi> & { name: string }): Poi {
  return {
    poi_id: `p-${overrides.name.toLowerCase().replace(/\W+/g, "-")}`,
    description: `About ${overrides.name}.`,
    tags: [],
    created_at: "2024-01-01T00:00:00.000Z",
    ...overrides,
  };
}

/** An active quest with defaults. */
export function activeQuest(overrides: Partial<Quest> = {}): Quest {
  return {
    quest_id: "q-active",
    title: "Find the lost bell",
    summary: "The chapel bell vanished overnight.",
    details: null,
    poi_id: null,
    status: "active",
    progress: [],
    started_at: "2024-01-01T00:00:00.000Z",
    ended_at: null,
    ...overrides,
  };
}

/** A character context with defaults: healthy, no quest, no combat, long past both cooldowns. */
export function characterContext(
  overrides: Partial<Omit<CharacterContext, "character">> & { character?: Partial<Character> } = {},
): CharacterContext {
  const { character, ...rest } = overrides;
  return {
    character: {
      character_id: "c-1",
      owner_id: "u-1",
      name: "Ada",
      race: "Human",
      class_name: "Ranger",
      custom_prompt: null,
      status: "Healthy",
      location: { id: "town:elm", display_name: "Elmstead", minor: "the square", poi_id: null },
      created_at: "2024-01-01T00:00:00.000Z",
      ...character,
    },
    quest: null,
    combat: null,
    recent_turns: [],
    turn_count: 10,
    turns_since_last_quest: 10,
    turns_since_last_poi: 10,
    plugin_state: {},
    ...rest,
  };
}

/** Options of {@link fakeTurnContext}. */
export interface FakeTurnOptions {
  context?: CharacterContext;
  roller?: Roller;
  /** The parsed intents; null simulates an invalid model output. */
  intents?: Record<string, unknown> | null;
  memory_sparks?: Poi[];
  policy?: Record<string, GateDecision | unknown>;
  logger?: Logger;
}

/** A hand-built turn context with its recording writer. */
export function fakeTurnContext(
  options: FakeTurnOptions = {},
): TurnContext & { writer: RecordingWriter } {
  const context = options.context ?? characterContext();
  const writer = new RecordingWriter();
  const intents = options.intents === undefined ? {} : options.intents;
  return {
    turn_id: "t-1",
    character_id: context.character.character_id,
    user_id: context.character.owner_id,
    user_action: "look around",
    turn_number: context.turn_count + 1,
    transport: "http",
    signal: new AbortController().signal,
    context,
    rng: options.roller ?? new FixedRoller(),
    logger: options.logger ?? createLogger("error", () => {}),
    span: trace.getTracer("test").startSpan("turn"),
    policy: options.policy ?? {},
    memory_sparks: options.memory_sparks ?? [],
    generation: null,
    outcome: { narrative: "Something happens.", intents, parse_error: intents ? null : "test" },
    writer,
    changes: {} as Record<string, ChangeResult>,
    narrative_result: { persisted: false, error: null },
    emitToken: () => {},
    buildPrompt: () => ({ system: "", prompt: "" }),
    outcomeJsonSchema: {},
    outcomeSchema: z.object({ narrative: z.string(), intents: z.record(z.string(), z.unknown()) }),
    locals: new Map(),
  };
}

/** The read side of the store used by the rule plugins, over fixed POIs. */
export class FakePoiStore implements Pick<Store, "randomPois" | "listPois"> {
  readonly randomCalls: { owner_id: string; character_id: string; n: number }[] = [];
  listCalls = 0;
  failRandom = false;
  constructor(public pois: Poi[] = []) {}
  randomPois(owner_id: string, character_id: string, n: number): Promise<Poi[]> {
    this.randomCalls.push({ owner_id, character_id, n });
    if (this.failRandom) return Promise.reject(new Error("store unavailable (test)"));
    return Promise.resolve(this.pois.slice(0, n));
  }
  listPois(_owner_id: string, _character_id: string): Promise<Poi[]> {
    this.listCalls++;
    return Promise.resolve([...this.pois]);
  }
}

/** A route registered by a plugin. */
export interface RecordedRoute {
  method: HttpMethod;
  pattern: string;
  handler: RouteHandler;
}

/** A PluginHost that collects registrations so tests can drive them directly. */
export class CollectingHost implements PluginHost {
  readonly config: Config;
  readonly logger: Logger;
  readonly store: Store;
  readonly llm: LlmProvider;
  readonly tracer = trace.getTracer("test");
  readonly auth = { mode: "none" as const, verify: () => Promise.resolve("local") };
  readonly stages: StageDefinition[] = [];
  // deno-lint-ignore no-explicit-any -- subsystems of different intent types share one list.
  readonly subsystems: SubsystemDefinition<any>[] = [];
  readonly intents = new Map<string, z.ZodType>();
  readonly instructions: string[] = [];
  readonly sections: { order: number; build: (ctx: TurnContext) => string | null }[] = [];
  readonly routes: RecordedRoute[] = [];
  readonly services = new Map<string, unknown>();
  /** Log lines written through `logger`, parsed. */
  readonly lines: Record<string, unknown>[] = [];

  constructor(env: Record<string, string> = {}, readonly poiStore = new FakePoiStore()) {
    this.config = loadConfig({ DM_LLM: "scripted", ...env });
    this.logger = createLogger("debug", (line) => this.lines.push(JSON.parse(line)));
    // Only the POI reads are used by the rule plugins; any other store call fails the test.
    this.store = new Proxy(poiStore as unknown as Store, {
      get: (target, prop) =>
        prop in target
          ? (target as unknown as Record<PropertyKey, unknown>)[prop as string]
          : () => {
            throw new Error(`store.${String(prop)} is not part of this test double`);
          },
    });
    this.llm = {
      system: "none",
      model: "none",
      ready: () => Promise.resolve(true),
      stream: () => {
        throw new Error("the rule plugins never call the model");
      },
    };
  }

  get engine(): TurnEngine {
    throw new Error("the rule plugins never use the engine");
  }

  addStage(stage: StageDefinition): void {
    this.stages.push(stage);
  }
  addSubsystem<I>(subsystem: SubsystemDefinition<I>): void {
    this.subsystems.push(subsystem);
    this.intents.set(subsystem.intentKey, subsystem.intentSchema);
  }
  addIntent(key: string, schema: z.ZodType): void {
    this.intents.set(key, schema);
  }
  addInstructions(text: string): void {
    this.instructions.push(text);
  }
  addPromptSection(order: number, build: (ctx: TurnContext) => string | null): void {
    this.sections.push({ order, build });
  }
  addRoute(method: HttpMethod, pattern: string, handler: RouteHandler): void {
    this.routes.push({ method, pattern, handler });
  }
  provide<T>(ref: ServiceRef<T>, value: T): void {
    this.services.set(ref.id, value);
  }
  use<T>(ref: ServiceRef<T>): T {
    if (!this.services.has(ref.id)) throw new Error(`service ${ref.id} not provided`);
    return this.services.get(ref.id) as T;
  }

  /** Set up plugins in the given order on this host. */
  async load(...plugins: Plugin[]): Promise<this> {
    for (const p of plugins) await p.setup(this);
    return this;
  }

  /** The subsystem registered under `name`. */
  // deno-lint-ignore no-explicit-any -- callers pick the intent type of the subsystem they test.
  subsystem<I = any>(name: string): SubsystemDefinition<I> {
    const found = this.subsystems.find((s) => s.name === name);
    if (!found) throw new Error(`no subsystem ${name}`);
    return found;
  }

  /** The route registered for `method` and `pattern`, if any. */
  route(method: HttpMethod, pattern: string): RecordedRoute | undefined {
    return this.routes.find((r) => r.method === method && r.pattern === pattern);
  }
}

/**
 * Run a subsystem's gate and apply the way the engine does: the decision is
 * stored under the subsystem's name and its result under the summary key.
 */
export async function runSubsystem<I>(
  sub: SubsystemDefinition<I>,
  ctx: TurnContext,
  intentKey = sub.intentKey,
): Promise<ChangeResult> {
  if (sub.gate) ctx.policy[sub.name] = sub.gate(ctx);
  const intents = ctx.outcome?.intents ?? null;
  const intent = (intents?.[intentKey] ?? null) as I | null;
  const result = await sub.apply(
    ctx,
    intent,
    (ctx.policy[sub.name] ?? null) as GateDecision | null,
  );
  const change: ChangeResult = {
    action: result.action,
    success: result.success ?? null,
    error: result.error ?? null,
  };
  ctx.changes[sub.summaryKey ?? `${sub.name}_change`] = change;
  return change;
}
