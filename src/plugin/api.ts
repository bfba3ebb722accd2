/**
 * The plugin API. A plugin is a module whose default export (or `plugin`
 * export) is a {@link Plugin}. Built-in subsystems use exactly this API, so
 * anything they do a third-party plugin can do too.
 *
 * @example A subsystem in one module
 * ```ts
 * import { z } from "zod";
 * import { definePlugin } from "../src/plugin/api.ts";
 *
 * export default definePlugin({
 *   name: "inventory",
 *   dependsOn: ["narrative"],
 *   setup(host) {
 *     host.addSubsystem({
 *       name: "inventory",
 *       intentKey: "inventory_intent",
 *       intentSchema: z.object({ action: z.enum(["none", "add"]), item: z.string().nullable() }),
 *       promptSection: (ctx) => `Inventory: ${JSON.stringify(ctx.context.plugin_state.inventory ?? [])}`,
 *       apply: async (ctx, intent) => {
 *         if (intent?.action !== "add" || !intent.item) return { action: "none" };
 *         await ctx.writer.putPluginState("inventory", [intent.item]);
 *         return { action: "added" };
 *       },
 *       after: ["poi"],
 *       before: ["narrative"],
 *     });
 *   },
 * });
 * ```
 *
 * @module
 */
import type { z } from "zod";
import type { Span, Tracer } from "@opentelemetry/api";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import type { LlmProvider } from "../llm/provider.ts";
import type { CharacterContext, Poi, Store, TokenUsage, TurnWriter } from "../store/port.ts";
import type { ChangeResult } from "../shared/events.ts";
import type { Roller } from "../turn/rng.ts";
import type { RouteHandler } from "../http/router.ts";
import type { TurnEngine } from "../turn/engine.ts";

/** A plugin module's export. */
export interface Plugin {
  /** Unique name; also the name of its stage span (`stage <name>`). */
  readonly name: string;
  readonly version?: string;
  /** Plugins that must be set up first. A missing one is a start-up error. */
  readonly dependsOn?: readonly string[];
  /** Register stages, subsystems, routes and services. */
  setup(host: PluginHost): void | Promise<void>;
  /** Release resources; called in reverse set-up order on shutdown. */
  close?(): void | Promise<void>;
}

/** Identity helper that gives plugin objects their type. */
export function definePlugin(plugin: Plugin): Plugin {
  return plugin;
}

/** Pipeline phases, in the order a turn runs them. */
export const PHASES = ["prepare", "generate", "parse", "apply", "finish"] as const;
/** A pipeline phase. */
export type Phase = typeof PHASES[number];

/** What happens to the turn when a stage throws. */
export type StageFailurePolicy =
  /** The turn fails with the stage's error and nothing is written. */
  | "fail"
  /** The failure is recorded in the summary and the turn goes on. */
  | "skip";

/** A pipeline stage. It runs inside its own span, `stage <name>`. */
export interface StageDefinition {
  /** Defaults to the plugin name. Stage names are unique. */
  name?: string;
  phase: Phase;
  /** Stage names this stage must run before / after within its phase. */
  before?: readonly string[];
  after?: readonly string[];
  onError: StageFailurePolicy;
  run(ctx: TurnContext): void | Promise<void>;
}

/** Policy gate result, recorded on spans and in the turn record, never shown to players. */
export interface GateDecision {
  eligible: boolean;
  /** Whether the roll passed (false when not eligible). */
  allowed: boolean;
  probability?: number;
  roll?: number;
  [fact: string]: unknown;
}

/** Result of a subsystem's write; `success`/`error` default from the outcome. */
export interface SubsystemResult {
  action: string;
  success?: boolean | null;
  error?: string | null;
}

/**
 * A game subsystem: an intent in the outcome schema, a prompt section, a
 * policy gate and a write. The host turns it into an `apply` stage.
 */
export interface SubsystemDefinition<I = unknown> {
  /** Subsystem name; its stage is named after the plugin unless `stageName` is given. */
  name: string;
  /** Key under `intents` in the outcome (`quest_intent`). */
  intentKey: string;
  /** Zod schema of the intent. It is made nullable by the host. */
  intentSchema: z.ZodType<I>;
  /** Key in `subsystem_summary`; defaults to `<name>_change`. */
  summaryKey?: string;
  /** Static lines added to the system instructions. */
  instructions?: string;
  /** A section of the user prompt, or null to add nothing this turn. */
  promptSection?(ctx: TurnContext): string | null;
  /** Sort key of the prompt section (lower first; the player's action is 1000). */
  promptOrder?: number;
  /** The policy gate, decided before the model is called. */
  gate?(ctx: TurnContext): GateDecision;
  /** Apply the intent. Throw to record a failed write. */
  apply(
    ctx: TurnContext,
    intent: I | null,
    decision: GateDecision | null,
  ): Promise<SubsystemResult>;
  before?: readonly string[];
  after?: readonly string[];
  /** Defaults to `skip`: a failed write is reported and later writes still run. */
  onError?: StageFailurePolicy;
}

/** A typed reference to a service one plugin provides to others. */
export interface ServiceRef<T> {
  readonly id: string;
  /** Phantom field carrying the type; never set. */
  readonly __type?: T;
}

/**
 * Create a typed service reference.
 *
 * @example
 * ```ts
 * export const clockRef = createServiceRef<() => Date>("clock");
 * // provider: host.provide(clockRef, () => new Date());
 * // consumer (dependsOn the provider): const clock = host.use(clockRef);
 * ```
 */
export function createServiceRef<T>(id: string): ServiceRef<T> {
  return { id };
}

/** HTTP methods a plugin route may use. */
export type HttpMethod = "GET" | "POST" | "PUT" | "DELETE" | "PATCH";

/** What a plugin's `setup` receives. */
export interface PluginHost {
  readonly config: Config;
  readonly logger: Logger;
  readonly store: Store;
  readonly llm: LlmProvider;
  readonly tracer: Tracer;
  /** The shared turn engine, for transports. */
  readonly engine: TurnEngine;
  /**
   * Authentication for transports that cannot use the HTTP front door's
   * (the WebSocket's first `auth` message). With `mode: "none"` every
   * caller is the user `local`.
   */
  readonly auth: { mode: "none" | "jwt"; verify(token: string): Promise<string> };
  addStage(stage: StageDefinition): void;
  addSubsystem<I>(subsystem: SubsystemDefinition<I>): void;
  /**
   * Add an intent to the outcome schema without a write of its own (the
   * narrative plugin's `meta`, or a second intent a subsystem applies in its
   * own stage, like `location_intent` in the poi plugin).
   */
  addIntent(key: string, schema: z.ZodType): void;
  /** Add static text to the system instructions. */
  addInstructions(text: string): void;
  /** Add a user-prompt section built each turn. */
  addPromptSection(order: number, build: (ctx: TurnContext) => string | null): void;
  /** Register an HTTP route. `pattern` uses URLPattern syntax (`/turns/:id`). */
  addRoute(method: HttpMethod, pattern: string, handler: RouteHandler): void;
  provide<T>(ref: ServiceRef<T>, value: T): void;
  /** Get a service; the providing plugin must be in `dependsOn`. */
  use<T>(ref: ServiceRef<T>): T;
}

/** How the turn was submitted. */
export type Transport = "http" | "sse" | "websocket";

/** The raw model output and what streaming extracted from it. */
export interface GenerationResult {
  raw: string;
  /** Prose already sent to clients as tokens. */
  streamed: string;
  usage: TokenUsage | null;
}

/** The validated outcome. */
export interface ParsedOutcome {
  narrative: string;
  /** Null when the model output failed validation. */
  intents: Record<string, unknown> | null;
  parse_error: string | null;
}

/** The typed context that flows through the stages of one turn. */
export interface TurnContext {
  readonly turn_id: string;
  readonly character_id: string;
  readonly user_id: string;
  readonly user_action: string;
  /** 1 for the first turn after the intro. */
  readonly turn_number: number;
  readonly transport: Transport;
  readonly signal: AbortSignal;
  /** The character context loaded before the first stage. */
  readonly context: CharacterContext;
  /** Deterministic rolls; see `turn/rng.ts`. */
  readonly rng: Roller;
  readonly logger: Logger;
  /** The turn span. */
  readonly span: Span;
  /** Policy decisions by subsystem name. */
  readonly policy: Record<string, GateDecision | unknown>;
  /** Places recalled by the memory-sparks stage. */
  memory_sparks: Poi[];
  /** Set by the generate phase. */
  generation: GenerationResult | null;
  /** Set by the parse phase. */
  outcome: ParsedOutcome | null;
  /** Writes of this turn. */
  readonly writer: TurnWriter;
  /** Per-subsystem results, keyed by summary key. */
  readonly changes: Record<string, ChangeResult>;
  /** Whether the narrative was written, and why not. */
  narrative_result: { persisted: boolean; error: string | null };
  /** Send prose to clients. */
  emitToken(text: string): void;
  /** The system instructions and prompt, assembled from all plugins. */
  buildPrompt(): { system: string; prompt: string };
  /** The strict JSON schema of the outcome. */
  readonly outcomeJsonSchema: Record<string, unknown>;
  /** The zod schema of the outcome. */
  readonly outcomeSchema: z.ZodType<{ narrative: string; intents: Record<string, unknown> }>;
  /** Plugin-private state for this turn. */
  readonly locals: Map<string, unknown>;
}
