/**
 * The turn engine: the one data path every transport uses. It accepts a
 * turn, runs the plugin pipeline in the background inside a `turn` span, and
 * appends events to the turn's live log, which transports follow.
 *
 * @module
 */
import { createHash } from "node:crypto";
import {
  type Context,
  context as otelContext,
  type Span,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import type { z } from "zod";
import type { Config } from "../config.ts";
import { DmError, toDmError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { LlmProvider, SceneFacts } from "../llm/provider.ts";
import type { GateDecision, Transport, TurnContext } from "../plugin/api.ts";
import type { Pipeline, ResolvedStage } from "../plugin/host.ts";
import type {
  ChangeResult,
  CompleteEvent,
  ErrorEvent,
  SubsystemSummary,
  TerminalEvent,
  TurnEvent,
} from "../shared/events.ts";
import type {
  Character,
  CharacterContext,
  CharacterView,
  Location,
  NewCharacter,
  Store,
  TurnRecord,
} from "../store/port.ts";
import { dmMetrics } from "../telemetry/metrics.ts";
import { parentContextFromTraceparent } from "../telemetry/propagation.ts";
import { LiveTurn } from "./live.ts";
import { buildOutcomeSchema, type Outcome, parseOutcome, toStrictJsonSchema } from "./outcome.ts";
import { createRoller } from "./rng.ts";
import { TokenBuckets } from "./token_bucket.ts";

/** A request to play a turn, already validated by the transport. */
export interface TurnRequest {
  user_id: string;
  character_id: string;
  user_action: string;
  transport: Transport;
  idempotency_key?: string | null;
  /** The client's W3C traceparent, if any. */
  traceparent?: string | null;
}

/** An accepted (or idempotently re-found) turn. */
export interface TurnHandle {
  turn_id: string;
  character_id: string;
  /** True when an idempotent retry found an existing turn. */
  existing: boolean;
}

/** Engine dependencies, injected so tests use real parts of their choosing. */
export interface EngineDeps {
  config: Config;
  store: Store;
  llm: LlmProvider;
  logger: Logger;
  tracer?: Tracer;
  /** Milliseconds clock for rates and timings. */
  now?: () => number;
}

/** How long a finished turn's live log stays in memory for fast resumes. */
const LIVE_RETENTION_MS = 60_000;
/** How often token events are made durable during a stream. */
const FLUSH_INTERVAL_MS = 250;
/**
 * Longest a flush writes before letting other work run. The SQLite store
 * writes synchronously, and with a hundred turns streaming one flush would
 * otherwise hold the event loop for 5–20 ms, delaying every first token and
 * frame behind it.
 */
const FLUSH_SLICE_MS = 2;

const CORE_INSTRUCTIONS =
  `You are the game master of a text adventure. Narrate vividly in second person, ` +
  `two short paragraphs at most, and react to the player's action. Answer with ONE JSON ` +
  `object matching the schema, with "narrative" first and no text outside the JSON. ` +
  `Propose game changes only through "intents"; set an intent to null or action "none" ` +
  `when nothing changes. Sections marked NOT ALLOWED must not happen this turn.`;

const INTRO_PROMPT = `This is the opening scene of a new adventure. Introduce the character ` +
  `and where they start. Set location_intent to the starting place (action "update_minor") ` +
  `and poi_intent to create that place (action "create"). No quest and no combat.`;

function now(): string {
  return new Date().toISOString();
}

function requestHash(characterId: string, action: string): string {
  return createHash("sha256").update(JSON.stringify([characterId, action])).digest("hex");
}

function noneChange(): ChangeResult {
  return { action: "none", success: null, error: null };
}

/** The shared turn engine. */
export class TurnEngine {
  readonly #deps: EngineDeps;
  readonly #tracer: Tracer;
  readonly #now: () => number;
  readonly #live = new Map<string, LiveTurn>();
  readonly #characterRate: TokenBuckets;
  readonly #userRate: TokenBuckets;
  #pipeline: Pipeline | null = null;
  #outcomeSchema: z.ZodType<Outcome> | null = null;
  #jsonSchema: Record<string, unknown> | null = null;
  #accepting = true;
  #running = new Set<Promise<void>>();
  /** Token events not yet durable, by turn, so a commit takes its own in O(1). */
  #pendingEvents = new Map<string, TurnEvent[]>();
  /** Batches a flush has taken but not all written yet, by turn. */
  readonly #flushing = new Set<Map<string, TurnEvent[]>>();
  #flushTimer: ReturnType<typeof setInterval> | null = null;
  #retention = new Set<ReturnType<typeof setTimeout>>();
  /** Tail of the submissions in flight per (user, idempotency key). */
  readonly #keyLocks = new Map<string, Promise<void>>();

  constructor(deps: EngineDeps) {
    this.#deps = deps;
    this.#tracer = deps.tracer ?? trace.getTracer("dungeon-master");
    this.#now = deps.now ?? (() => performance.now());
    this.#characterRate = new TokenBuckets(
      { rate: deps.config.DM_TURN_RATE_PER_SECOND, burst: deps.config.DM_TURN_BURST },
      this.#now,
    );
    // A player with many characters must not multiply their turn rate.
    this.#userRate = new TokenBuckets(
      {
        rate: deps.config.DM_TURN_RATE_PER_USER_PER_SECOND,
        burst: Math.max(1, Math.ceil(deps.config.DM_TURN_RATE_PER_USER_PER_SECOND)),
      },
      this.#now,
    );
  }

  /** Attach the frozen pipeline once plugins are set up. */
  usePipeline(pipeline: Pipeline): void {
    this.#pipeline = pipeline;
    this.#outcomeSchema = buildOutcomeSchema(pipeline.intents);
    this.#jsonSchema = toStrictJsonSchema(this.#outcomeSchema);
  }

  /** The strict JSON schema sent to the model. */
  get outcomeJsonSchema(): Record<string, unknown> {
    this.#requirePipeline();
    return this.#jsonSchema!;
  }

  /** Turns currently running in this process. */
  get activeTurns(): number {
    return this.#running.size;
  }

  #requirePipeline(): Pipeline {
    if (!this.#pipeline) throw new DmError("not_ready", "The turn pipeline is not set up yet.");
    return this.#pipeline;
  }

  // ---------------------------------------------------------------- characters

  /** Create a character and play its intro scene; nothing is stored if the intro fails. */
  async createCharacter(user_id: string, input: NewCharacter): Promise<{
    character: Character;
    narrative: string;
  }> {
    this.#requirePipeline();
    if (!this.#accepting) throw new DmError("overloaded", "The server is shutting down.");
    const scene: SceneFacts = {
      user_action: "Begins their journey.",
      character_name: input.name,
      location: null,
      in_combat: false,
      active_quest: null,
      allowed: { quest: false, combat: false, poi: true },
      sparks: [],
      intro: true,
    };
    const prompt = [
      input.custom_prompt ? `Adventure setting: ${input.custom_prompt}` : null,
      `Character: ${input.name}, a ${input.race} ${input.class_name}.`,
      INTRO_PROMPT,
    ].filter((s) => s !== null).join("\n\n");
    const span = this.#tracer.startSpan("character intro", {
      attributes: { "dm.transport": "http" },
    });
    const abort = new AbortController();
    const deadline = setTimeout(
      () => abort.abort(new DmError("llm_timeout")),
      this.#deps.config.DM_LLM_TIMEOUT_MS * 2,
    );
    try {
      const raw = await otelContext.with(trace.setSpan(otelContext.active(), span), async () => {
        let text = "";
        for await (
          const chunk of this.#deps.llm.stream({
            system: this.#systemPrompt(),
            prompt,
            schema: { name: "dungeon_master_outcome", json: this.#jsonSchema! },
            scene,
            max_output_tokens: this.#deps.config.DM_LLM_MAX_OUTPUT_TOKENS,
            signal: abort.signal,
          })
        ) {
          if (chunk.type === "delta") text += chunk.text;
        }
        return text;
      });
      if (raw.trim() === "") throw new DmError("llm_response_error");
      const parsed = parseOutcome(raw, "", this.#outcomeSchema!);
      const intents = parsed.intents ?? {};
      const loc = intents.location_intent as
        | { location_id?: string | null; location_display_name?: string | null }
        | null
        | undefined;
      const poi = intents.poi_intent as
        | {
          action?: string;
          name?: string | null;
          description?: string | null;
          reference_tags?: string[] | null;
        }
        | null
        | undefined;
      const location: Location = {
        id: loc?.location_id?.slice(0, 200) ?? null,
        display_name: loc?.location_display_name?.slice(0, 200) ?? null,
        minor: null,
        poi_id: null,
      };
      const origin = poi?.action === "create" && poi.name?.trim()
        ? {
          name: poi.name.trim().slice(0, 200),
          description: (poi.description?.trim() || `Where ${input.name}'s story began.`).slice(
            0,
            2000,
          ),
          tags: (poi.reference_tags ?? []).slice(0, 20).map((t) => t.slice(0, 50)),
        }
        : null;
      const character = await this.#deps.store.createCharacter(user_id, input, {
        narrative: parsed.narrative,
        location,
        origin,
      });
      span.setAttribute("dm.character_id", character.character_id);
      return { character, narrative: parsed.narrative };
    } catch (e) {
      const err = toDmError(e);
      span.recordException(e as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: err.type });
      throw err;
    } finally {
      clearTimeout(deadline);
      span.end();
    }
  }

  /** The public character view; `character_not_found` when missing or not owned. */
  async getCharacter(user_id: string, character_id: string): Promise<CharacterView> {
    const view = await this.#deps.store.getCharacter(user_id, character_id);
    if (!view) throw new DmError("character_not_found", `Character ${character_id} not found`);
    return view;
  }

  // --------------------------------------------------------------------- turns

  /**
   * Accept a turn. Errors found before the turn starts (missing character,
   * game over, a running turn, rate limits, a reused key) are thrown as
   * `DmError`s so transports can answer them as ordinary errors.
   */
  submit(request: TurnRequest): Promise<TurnHandle> {
    const key = request.idempotency_key;
    if (!key) return this.#submit(request);
    // Concurrent retries with one key run one at a time: otherwise each would
    // pass the idempotency lookup before the first had begun its turn and take
    // a rate-limit token, so duplicates could be refused with 429 instead of
    // being handed the turn. beginTurn stays the atomic guard across processes.
    const lockKey = JSON.stringify([request.user_id, key]);
    const previous = this.#keyLocks.get(lockKey) ?? Promise.resolve();
    const mine = previous.then(() => this.#submit(request));
    const tail = mine.then(() => {}, () => {});
    this.#keyLocks.set(lockKey, tail);
    tail.then(() => {
      if (this.#keyLocks.get(lockKey) === tail) this.#keyLocks.delete(lockKey);
    });
    return mine;
  }

  async #submit(request: TurnRequest): Promise<TurnHandle> {
    const pipeline = this.#requirePipeline();
    if (!this.#accepting) throw new DmError("overloaded", "The server is shutting down.");
    const { store, logger } = this.#deps;
    const hash = requestHash(request.character_id, request.user_action);

    // A retry of an accepted turn must find it even when a rate or game-over
    // rule would now refuse a new one, so idempotent duplicates go first.
    const context = await store.loadContext(request.user_id, request.character_id);
    if (!context) {
      throw new DmError("character_not_found", `Character ${request.character_id} not found`);
    }
    const turn_id = crypto.randomUUID();
    const start: TurnEvent = {
      type: "start",
      turn_id,
      seq: 1,
      timestamp: now(),
      character_id: request.character_id,
    };
    if (request.idempotency_key) {
      const seen = await store.findIdempotent(request.user_id, request.idempotency_key, hash);
      if (seen?.kind === "duplicate") {
        return { turn_id: seen.turn_id, character_id: request.character_id, existing: true };
      }
      if (seen?.kind === "key_reused") throw new DmError("idempotency_key_reused");
    }
    if (context.character.status === "Dead") {
      throw new DmError("game_over", "This character is dead; the adventure is over.");
    }
    const wait = Math.max(
      this.#characterRate.take(request.character_id),
      this.#userRate.take(request.user_id),
    );
    if (wait > 0) {
      const seconds = Math.max(1, Math.ceil(wait));
      throw new DmError(
        "rate_limited",
        `Too many turns for this character; retry in ${seconds} s.`,
        {
          headers: { "Retry-After": String(seconds) },
          extra: { retry_after_seconds: Math.round(wait * 10) / 10 },
        },
      );
    }
    const begun = await store.beginTurn({
      turn_id,
      character_id: request.character_id,
      owner_id: request.user_id,
      user_action: request.user_action,
      idempotency: request.idempotency_key
        ? { key: request.idempotency_key, request_hash: hash }
        : null,
      start_event: start,
    });
    switch (begun.kind) {
      case "duplicate":
        return { turn_id: begun.turn_id, character_id: request.character_id, existing: true };
      case "key_reused":
        throw new DmError("idempotency_key_reused");
      case "busy":
        throw new DmError("turn_in_progress", undefined, { extra: { turn_id: begun.turn_id } });
    }
    const live = new LiveTurn(turn_id, request.character_id, request.user_id);
    live.push(start);
    this.#live.set(turn_id, live);
    const run = this.#run(pipeline, live, request, context).catch((e) => {
      logger.error("turn_engine_failure", { turn_id, error: e });
    }).finally(() => {
      this.#running.delete(run);
      const timer = setTimeout(() => {
        this.#retention.delete(timer);
        this.#live.delete(turn_id);
      }, LIVE_RETENTION_MS);
      this.#retention.add(timer);
    });
    this.#running.add(run);
    return { turn_id, character_id: request.character_id, existing: false };
  }

  /**
   * Follow a turn's events after `after_seq`: replayed from memory or the
   * store, then live until the turn ends.
   */
  async follow(
    user_id: string,
    turn_id: string,
    after_seq: number,
    signal?: AbortSignal,
  ): Promise<AsyncIterable<TurnEvent>> {
    const live = this.#live.get(turn_id);
    if (live) {
      if (live.owner_id !== user_id) throw new DmError("turn_not_found");
      return live.follow(after_seq, signal);
    }
    const record = await this.getTurn(user_id, turn_id);
    const events = await this.#deps.store.getEvents(record.turn_id, after_seq);
    return (async function* () {
      for (const e of events) {
        if (signal?.aborted) return;
        yield e;
      }
    })();
  }

  /** The turn record; `turn_not_found` when missing or not owned. */
  async getTurn(user_id: string, turn_id: string): Promise<TurnRecord> {
    const record = await this.#deps.store.getTurn(turn_id);
    if (!record || record.owner_id !== user_id) {
      throw new DmError("turn_not_found", `Turn ${turn_id} not found`);
    }
    return record;
  }

  /** Wait for a turn's terminal event. */
  async result(user_id: string, turn_id: string): Promise<TerminalEvent> {
    let last: TurnEvent | null = null;
    for await (const e of await this.follow(user_id, turn_id, 0)) last = e;
    if (last && (last.type === "complete" || last.type === "error")) return last;
    throw new DmError("internal_error", "The turn ended without a result.");
  }

  /**
   * A client stopped listening. Under `DM_DISCONNECT_POLICY=cancel` the turn
   * is aborted when nobody else is attached.
   */
  clientDisconnected(turn_id: string, transport: Transport): void {
    dmMetrics.clientDisconnect(transport);
    const live = this.#live.get(turn_id);
    if (!live || live.done) return;
    this.#deps.logger.info("client_disconnect", { turn_id, transport });
    live.span?.addEvent("client_disconnect", { "dm.transport": transport });
    if (this.#deps.config.DM_DISCONNECT_POLICY === "cancel" && live.subscribers === 0) {
      live.abort.abort(new DmError("cancelled", "The client disconnected."));
    }
  }

  /** Stop accepting turns and wait for running ones, aborting them at the deadline. */
  async drain(deadlineMs: number): Promise<void> {
    this.#accepting = false;
    const all = Promise.allSettled([...this.#running]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((r) => timer = setTimeout(() => r(true), deadlineMs)),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      for (const live of this.#live.values()) {
        if (!live.done) live.abort.abort(new DmError("cancelled", "The server is shutting down."));
      }
      await all;
    }
    await this.#flush();
    if (this.#flushTimer) clearInterval(this.#flushTimer);
    this.#flushTimer = null;
    for (const timer of this.#retention) clearTimeout(timer);
    this.#retention.clear();
    this.#live.clear();
  }

  // ------------------------------------------------------------------ pipeline

  #systemPrompt(): string {
    return [CORE_INSTRUCTIONS, ...this.#pipeline!.instructions].join("\n");
  }

  #queueForFlush(event: TurnEvent): void {
    const events = this.#pendingEvents.get(event.turn_id);
    if (events) events.push(event);
    else this.#pendingEvents.set(event.turn_id, [event]);
    this.#flushTimer ??= setInterval(() => {
      this.#flush().catch((e) => this.#deps.logger.warn("event_flush_failed", { error: e }));
    }, FLUSH_INTERVAL_MS);
  }

  async #flush(): Promise<void> {
    if (this.#pendingEvents.size === 0) {
      if (this.#running.size === 0 && this.#flushTimer) {
        clearInterval(this.#flushTimer);
        this.#flushTimer = null;
      }
      return;
    }
    const byTurn = this.#pendingEvents;
    this.#pendingEvents = new Map();
    // While this flush yields, a turn may commit: #takePending hands it the
    // events still waiting here, so its commit never leaves a gap.
    this.#flushing.add(byTurn);
    try {
      let sliceStart = performance.now();
      for (const [turn_id, events] of byTurn) {
        await this.#deps.store.appendEvents(turn_id, events);
        if (performance.now() - sliceStart >= FLUSH_SLICE_MS) {
          await new Promise((resolve) => setTimeout(resolve, 0));
          sliceStart = performance.now();
        }
      }
    } finally {
      this.#flushing.delete(byTurn);
    }
  }

  #takePending(turn_id: string): TurnEvent[] {
    // Older events first: those of a flush in progress, then the queued ones.
    // A flush may be writing some of them right now; the store ignores
    // events it already has.
    const mine: TurnEvent[] = [];
    for (const batch of this.#flushing) {
      const events = batch.get(turn_id);
      if (events) {
        mine.push(...events);
        batch.delete(turn_id);
      }
    }
    const queued = this.#pendingEvents.get(turn_id);
    if (queued) {
      this.#pendingEvents.delete(turn_id);
      mine.push(...queued);
    }
    return mine;
  }

  async #run(
    pipeline: Pipeline,
    live: LiveTurn,
    request: TurnRequest,
    context: CharacterContext,
  ): Promise<void> {
    const { store, logger: baseLogger, config } = this.#deps;
    const started = this.#now();
    const parent = parentContextFromTraceparent(request.traceparent ?? null);
    const span = this.#tracer.startSpan("turn", {
      attributes: {
        "dm.turn_id": live.turn_id,
        "dm.character_id": live.character_id,
        "dm.transport": request.transport,
      },
    }, parent);
    live.span = span;
    const turnCtx: Context = trace.setSpan(parent, span);
    const logger = baseLogger.child({ turn_id: live.turn_id, character_id: live.character_id });
    let seq = 1;
    let firstTokenAt: number | null = null;
    let tokenCount = 0;
    const tx = store.openTurn(request.user_id, request.character_id, live.turn_id);
    const policy: Record<string, unknown> = {};
    const changes: Record<string, ChangeResult> = {};
    const outcomeSchema = this.#outcomeSchema!;
    const jsonSchema = this.#jsonSchema!;

    const ctx: TurnContext = {
      turn_id: live.turn_id,
      character_id: live.character_id,
      user_id: request.user_id,
      user_action: request.user_action,
      turn_number: context.turn_count + 1,
      transport: request.transport,
      signal: live.abort.signal,
      context,
      rng: createRoller({
        seed: config.DM_RNG_SEED,
        characterId: live.character_id,
        turnNumber: context.turn_count + 1,
      }),
      logger,
      span,
      policy,
      memory_sparks: [],
      generation: null,
      outcome: null,
      writer: tx,
      changes,
      narrative_result: { persisted: false, error: "narrative stage did not run" },
      emitToken: (text: string) => {
        if (text === "" || live.done) return;
        if (firstTokenAt === null) {
          firstTokenAt = this.#now();
          span.addEvent("first_token");
          dmMetrics.timeToFirstToken((firstTokenAt - started) / 1000);
        }
        tokenCount++;
        const event: TurnEvent = {
          type: "token",
          turn_id: live.turn_id,
          seq: ++seq,
          timestamp: now(),
          content: text,
        };
        live.push(event);
        this.#queueForFlush(event);
      },
      buildPrompt: () => ({
        system: this.#systemPrompt(),
        prompt: pipeline.sections
          .map((s) => {
            try {
              return s.build(ctx);
            } catch (e) {
              logger.warn("prompt_section_failed", { plugin: s.plugin, error: e });
              return null;
            }
          })
          .filter((s): s is string => typeof s === "string" && s.trim() !== "")
          .join("\n\n"),
      }),
      outcomeJsonSchema: jsonSchema,
      outcomeSchema,
      locals: new Map(),
    };

    let terminal: TerminalEvent;
    try {
      await otelContext.with(turnCtx, async () => {
        await this.#runPhase(pipeline.stages.prepare, ctx, turnCtx);
        this.#runGates(pipeline, ctx);
        await this.#runPhase(pipeline.stages.generate, ctx, turnCtx);
        if (!ctx.generation) {
          throw new DmError("internal_error", "No generate stage produced output.");
        }
        await this.#runPhase(pipeline.stages.parse, ctx, turnCtx);
        if (!ctx.outcome) {
          const parsed = parseOutcome(ctx.generation.raw, ctx.generation.streamed, outcomeSchema);
          ctx.outcome = parsed;
        }
        if (live.abort.signal.aborted) throw live.abort.signal.reason;
        await this.#runPhase(pipeline.stages.apply, ctx, turnCtx);
        await this.#runPhase(pipeline.stages.finish, ctx, turnCtx);
        if (live.abort.signal.aborted) throw live.abort.signal.reason;
      });
      const outcome = ctx.outcome!;
      const summary: SubsystemSummary = {
        quest_change: changes.quest_change ?? noneChange(),
        combat_change: changes.combat_change ?? noneChange(),
        poi_change: changes.poi_change ?? noneChange(),
        ...changes,
        narrative_persisted: ctx.narrative_result.persisted,
        narrative_error: ctx.narrative_result.error,
      };
      const usage = ctx.generation!.usage;
      terminal = {
        type: "complete",
        turn_id: live.turn_id,
        seq: ++seq,
        timestamp: now(),
        narrative: outcome.narrative,
        intents: outcome.intents,
        subsystem_summary: summary,
        timing: {
          total_duration_ms: Math.round((this.#now() - started) * 100) / 100,
          time_to_first_token_ms: firstTokenAt === null
            ? null
            : Math.round((firstTokenAt - started) * 100) / 100,
          total_tokens: tokenCount,
        },
      } satisfies CompleteEvent;
      await otelContext.with(turnCtx, () =>
        tx.commit(
          {
            narrative: outcome.narrative,
            intents: outcome.intents,
            subsystem_summary: summary,
            policy,
            usage,
          },
          [...this.#takePending(live.turn_id), terminal],
        ));
      if (usage) {
        dmMetrics.llmTokens("input", usage.input_tokens);
        dmMetrics.llmTokens("output", usage.output_tokens);
      }
    } catch (e) {
      const err = toDmError(e);
      if (err.type === "internal_error") {
        logger.error("turn_failed", { error: e, cause: err.cause });
      } else logger.warn("turn_failed", { error_type: err.type });
      span.recordException(e instanceof Error ? e : new Error(String(e)));
      span.setStatus({ code: SpanStatusCode.ERROR, message: err.type });
      terminal = {
        type: "error",
        turn_id: live.turn_id,
        seq: ++seq,
        timestamp: now(),
        error_type: err.type,
        message: err.type === "internal_error" ? "An unexpected error occurred." : err.message,
        recoverable: err.recoverable,
      } satisfies ErrorEvent;
      try {
        await tx.fail(err.type, [...this.#takePending(live.turn_id), terminal]);
      } catch (failError) {
        logger.error("turn_fail_record_failed", { error: failError });
      }
    }
    live.push(terminal);
    const outcomeLabel = terminal.type === "complete" ? "completed" : terminal.error_type;
    dmMetrics.turnFinished(outcomeLabel, request.transport, (this.#now() - started) / 1000);
    span.setAttribute("dm.outcome", outcomeLabel);
    span.end();
    logger.info("turn_finished", {
      outcome: outcomeLabel,
      duration_ms: Math.round(this.#now() - started),
      tokens: tokenCount,
    });
  }

  #runGates(pipeline: Pipeline, ctx: TurnContext): void {
    for (const sub of pipeline.subsystems) {
      if (!sub.gate) continue;
      let decision: GateDecision;
      try {
        decision = sub.gate(ctx);
      } catch (e) {
        // A broken gate must fail closed: the subsystem is simply not allowed.
        ctx.logger.warn("gate_failed", { subsystem: sub.name, error: e });
        decision = { eligible: false, allowed: false, error: (e as Error)?.message ?? String(e) };
      }
      ctx.policy[sub.name] = decision;
      ctx.span.setAttribute(`dm.policy.${sub.name}.eligible`, decision.eligible);
      ctx.span.setAttribute(`dm.policy.${sub.name}.allowed`, decision.allowed);
    }
  }

  async #runPhase(stages: ResolvedStage[], ctx: TurnContext, turnCtx: Context): Promise<void> {
    for (const stage of stages) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const span = this.#tracer.startSpan(`stage ${stage.name}`, {
        attributes: {
          "dm.stage": stage.name,
          "dm.turn_id": ctx.turn_id,
          "dm.character_id": ctx.character_id,
        },
      }, turnCtx);
      const t0 = this.#now();
      try {
        await otelContext.with(trace.setSpan(turnCtx, span), () => stage.run(ctx));
      } catch (e) {
        span.recordException(e instanceof Error ? e : new Error(String(e)));
        span.setStatus({ code: SpanStatusCode.ERROR, message: (e as Error)?.message });
        if (stage.onError === "fail" || ctx.signal.aborted) throw e;
        ctx.logger.warn("stage_skipped", { stage: stage.name, error: e });
        ctx.changes[`${stage.name}_change`] ??= {
          action: "skipped",
          success: false,
          error: (e as Error)?.message ?? String(e),
        };
      } finally {
        span.end();
        dmMetrics.stage(stage.name, (this.#now() - t0) / 1000);
      }
    }
  }
}

export type { Span };
