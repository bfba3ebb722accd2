/**
 * The plugin host: resolves plugin dependencies, runs each plugin's `setup`
 * with a boot deadline, collects stages, subsystems, intents, prompt parts and
 * routes into a frozen {@link Pipeline}, and closes plugins in reverse order.
 *
 * @module
 */
import type { z } from "zod";
import type { Tracer } from "@opentelemetry/api";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import type { LlmProvider } from "../llm/provider.ts";
import type { Store } from "../store/port.ts";
import type { Router } from "../http/router.ts";
import type { TurnEngine } from "../turn/engine.ts";
import {
  type HttpMethod,
  type Phase,
  PHASES,
  type Plugin,
  type PluginHost,
  type ServiceRef,
  type StageDefinition,
  type SubsystemDefinition,
  type TurnContext,
} from "./api.ts";
import { CycleError, stableTopoSort } from "./order.ts";

/** A stage with its owner and resolved name. */
export interface ResolvedStage extends StageDefinition {
  name: string;
  plugin: string;
}

/** A prompt section with its owner. */
export interface PromptSection {
  order: number;
  plugin: string;
  build(ctx: TurnContext): string | null;
}

/** A subsystem with its owner and resolved keys. */
export interface ResolvedSubsystem extends SubsystemDefinition<unknown> {
  plugin: string;
  summaryKey: string;
}

/** Everything plugins contributed, in run order. Frozen after boot. */
export interface Pipeline {
  stages: Record<Phase, ResolvedStage[]>;
  /** Subsystems in apply order; gates run in this order. */
  subsystems: ResolvedSubsystem[];
  instructions: string[];
  sections: PromptSection[];
  intents: Map<string, z.ZodType>;
}

/** Thrown for any plugin start-up problem; the message names the plugins. */
export class PluginError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PluginError";
  }
}

/** What the host hands to plugins. */
export interface HostDeps {
  config: Config;
  logger: Logger;
  store: Store;
  llm: LlmProvider;
  tracer: Tracer;
  engine: TurnEngine;
  router: Router;
  auth: PluginHost["auth"];
  /** Deadline for one plugin's setup (avvio-style boot timeout). */
  setupTimeoutMs?: number;
}

/** Order plugins so each comes after the plugins it depends on. */
export function resolvePluginOrder(plugins: readonly Plugin[]): Plugin[] {
  const names = new Set<string>();
  for (const p of plugins) {
    if (!p || typeof p.name !== "string" || typeof p.setup !== "function") {
      throw new PluginError(`Not a plugin object: ${String(p?.name ?? p)}`);
    }
    if (names.has(p.name)) throw new PluginError(`Plugin "${p.name}" is loaded twice`);
    names.add(p.name);
  }
  for (const p of plugins) {
    for (const dep of p.dependsOn ?? []) {
      if (!names.has(dep)) {
        throw new PluginError(`Plugin "${p.name}" depends on "${dep}", which is not loaded`);
      }
    }
  }
  try {
    return stableTopoSort(plugins.map((p) => ({ name: p.name, after: p.dependsOn ?? [], p })))
      .map((n) => n.p);
  } catch (e) {
    if (e instanceof CycleError) {
      throw new PluginError(`Plugin dependency cycle: ${e.cycle.join(" -> ")}`);
    }
    throw e;
  }
}

function emptyPipeline(): Pipeline {
  return {
    stages: Object.fromEntries(PHASES.map((p) => [p, []])) as unknown as Record<
      Phase,
      ResolvedStage[]
    >,
    subsystems: [],
    instructions: [],
    sections: [],
    intents: new Map(),
  };
}

/** Set-up state of the loaded plugins. */
export class PluginSet {
  readonly pipeline: Pipeline = emptyPipeline();
  #loaded: Plugin[] = [];
  #services = new Map<string, { value: unknown; plugin: string }>();
  #stageNames = new Set<string>();
  #pendingStages: ResolvedStage[] = [];

  /** Set up every plugin in dependency order, then freeze the pipeline. */
  async setup(plugins: readonly Plugin[], deps: HostDeps): Promise<void> {
    const ordered = resolvePluginOrder(plugins);
    const timeout = deps.setupTimeoutMs ?? 10_000;
    for (const plugin of ordered) {
      const host = this.#hostFor(plugin, deps);
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          Promise.resolve(plugin.setup(host)),
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(new PluginError(`Plugin "${plugin.name}" setup exceeded ${timeout} ms`)),
              timeout,
            );
          }),
        ]);
      } catch (e) {
        await this.close(deps.logger);
        if (e instanceof PluginError) throw e;
        throw new PluginError(
          `Plugin "${plugin.name}" failed to set up: ${(e as Error)?.message ?? e}`,
          { cause: e },
        );
      } finally {
        clearTimeout(timer);
      }
      this.#loaded.push(plugin);
      deps.logger.debug("plugin_loaded", { plugin: plugin.name, version: plugin.version ?? null });
    }
    this.#freeze();
  }

  /** Names of the loaded plugins, in set-up order. */
  get names(): string[] {
    return this.#loaded.map((p) => p.name);
  }

  /** Close plugins in reverse set-up order; one failure does not stop the rest. */
  async close(logger: Logger): Promise<void> {
    const loaded = this.#loaded.splice(0).reverse();
    for (const plugin of loaded) {
      try {
        await plugin.close?.();
      } catch (e) {
        logger.error("plugin_close_failed", { plugin: plugin.name, error: e });
      }
    }
  }

  #freeze(): void {
    const byPhase = new Map<Phase, ResolvedStage[]>();
    for (const s of this.#pendingStages) {
      byPhase.set(s.phase, [...(byPhase.get(s.phase) ?? []), s]);
    }
    for (const phase of PHASES) {
      const stages = byPhase.get(phase) ?? [];
      // `before: [x]` is the same constraint as x having `after: [me]`.
      const after = new Map(stages.map((s) => [s.name, [...(s.after ?? [])]]));
      for (const s of stages) {
        for (const b of s.before ?? []) after.get(b)?.push(s.name);
      }
      try {
        this.pipeline.stages[phase] = stableTopoSort(
          stages.map((s) => ({ name: s.name, after: after.get(s.name)!, s })),
        ).map((n) => n.s);
      } catch (e) {
        if (e instanceof CycleError) {
          throw new PluginError(`Stage order cycle in phase ${phase}: ${e.cycle.join(" -> ")}`);
        }
        throw e;
      }
    }
    const applyOrder = this.pipeline.stages.apply.map((s) => s.name);
    this.pipeline.subsystems.sort((a, b) =>
      applyOrder.indexOf(a.plugin) - applyOrder.indexOf(b.plugin)
    );
    this.pipeline.sections.sort((a, b) => a.order - b.order);
    Object.freeze(this.pipeline);
  }

  #addStage(plugin: Plugin, stage: StageDefinition): void {
    const name = stage.name ?? plugin.name;
    if (this.#stageNames.has(name)) {
      throw new PluginError(`Stage "${name}" is registered twice (plugin "${plugin.name}")`);
    }
    if (!PHASES.includes(stage.phase)) {
      throw new PluginError(`Plugin "${plugin.name}": unknown phase "${stage.phase}"`);
    }
    this.#stageNames.add(name);
    this.#pendingStages.push({ ...stage, name, plugin: plugin.name });
  }

  #addIntent(plugin: Plugin, key: string, schema: z.ZodType): void {
    if (!/^[a-z][a-z0-9_]*$/.test(key)) {
      throw new PluginError(`Plugin "${plugin.name}": intent key "${key}" must be snake_case`);
    }
    if (this.pipeline.intents.has(key)) {
      throw new PluginError(`Plugin "${plugin.name}": intent "${key}" is already registered`);
    }
    this.pipeline.intents.set(key, schema);
  }

  #hostFor(plugin: Plugin, deps: HostDeps): PluginHost {
    const logger = deps.logger.child({ plugin: plugin.name });
    const allowed = new Set(plugin.dependsOn ?? []);
    return {
      config: deps.config,
      logger,
      store: deps.store,
      llm: deps.llm,
      tracer: deps.tracer,
      engine: deps.engine,
      auth: deps.auth,
      addStage: (stage) => this.#addStage(plugin, stage),
      addSubsystem: <I>(sub: SubsystemDefinition<I>) => {
        const resolved: ResolvedSubsystem = {
          ...(sub as SubsystemDefinition<unknown>),
          plugin: plugin.name,
          summaryKey: sub.summaryKey ?? `${sub.name}_change`,
        };
        this.#addIntent(plugin, sub.intentKey, sub.intentSchema);
        this.pipeline.subsystems.push(resolved);
        if (sub.promptSection) {
          this.pipeline.sections.push({
            order: sub.promptOrder ?? 500,
            plugin: plugin.name,
            build: (ctx) => sub.promptSection!(ctx),
          });
        }
        if (sub.instructions) this.pipeline.instructions.push(sub.instructions);
        this.#addStage(plugin, {
          name: plugin.name,
          phase: "apply",
          before: sub.before,
          after: sub.after,
          onError: sub.onError ?? "skip",
          run: (ctx) => applySubsystem(resolved, ctx),
        });
      },
      addIntent: (key, schema) => this.#addIntent(plugin, key, schema),
      addInstructions: (text) => {
        this.pipeline.instructions.push(text);
      },
      addPromptSection: (order, build) => {
        this.pipeline.sections.push({ order, plugin: plugin.name, build });
      },
      addRoute: (method: HttpMethod, pattern, handler) => deps.router.add(method, pattern, handler),
      provide: <T>(ref: ServiceRef<T>, value: T) => {
        if (this.#services.has(ref.id)) {
          throw new PluginError(`Service "${ref.id}" is provided twice (plugin "${plugin.name}")`);
        }
        this.#services.set(ref.id, { value, plugin: plugin.name });
      },
      use: <T>(ref: ServiceRef<T>): T => {
        const entry = this.#services.get(ref.id);
        if (!entry) {
          throw new PluginError(
            `Plugin "${plugin.name}" uses service "${ref.id}", which nobody provides`,
          );
        }
        // Encapsulation: a plugin sees only services of plugins it declared.
        if (!allowed.has(entry.plugin)) {
          throw new PluginError(
            `Plugin "${plugin.name}" uses service "${ref.id}" of "${entry.plugin}" without dependsOn`,
          );
        }
        return entry.value as T;
      },
    };
  }
}

async function applySubsystem(sub: ResolvedSubsystem, ctx: TurnContext): Promise<void> {
  const intents = ctx.outcome?.intents ?? null;
  const intent = intents ? (intents[sub.intentKey] ?? null) : null;
  const decision = (ctx.policy[sub.name] ?? null) as Parameters<typeof sub.apply>[2];
  try {
    const result = await sub.apply(ctx, intent, decision);
    ctx.changes[sub.summaryKey] = {
      action: result.action,
      success: result.success !== undefined
        ? result.success
        : (result.action === "none" ? null : result.action !== "skipped"),
      error: result.error ?? null,
    };
  } catch (e) {
    ctx.changes[sub.summaryKey] = {
      action: "skipped",
      success: false,
      error: (e as Error)?.message ?? String(e),
    };
    throw e;
  }
}
