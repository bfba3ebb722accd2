/**
 * Composition root: builds the store, LLM provider, engine, plugin host and
 * HTTP handler from settings. Tests call {@link createApp} with injected
 * parts; `main.ts` calls it with the real ones.
 *
 * @module
 */
import { trace, type Tracer } from "@opentelemetry/api";
import type { Config } from "./config.ts";
import { createLogger, type Logger } from "./log.ts";
import type { LlmProvider } from "./llm/provider.ts";
import { ScriptedStoryteller } from "./llm/scripted.ts";
import { limitConcurrency } from "./llm/limited.ts";
import type { Plugin } from "./plugin/api.ts";
import { PluginError, PluginSet } from "./plugin/host.ts";
import type { Store } from "./store/port.ts";
import { SqliteStore } from "./store/sqlite/mod.ts";
import { JourneyLogStore } from "./store/journey_log/mod.ts";
import { tracedStore } from "./store/traced.ts";
import { Router } from "./http/router.ts";
import { createHandler } from "./http/server.ts";
import {
  createAuthenticator,
  createJwtVerifier,
  LOCAL_USER,
  type TokenVerifier,
} from "./http/auth.ts";
import { registerCoreRoutes } from "./http/core_routes.ts";
import { TurnEngine } from "./turn/engine.ts";
import { BUILTIN_PLUGINS } from "./builtin_plugins.ts";

/** Parts a caller may inject instead of building them from settings. */
export interface AppOptions {
  config: Config;
  store?: Store;
  llm?: LlmProvider;
  logger?: Logger;
  tracer?: Tracer;
  /** Plugins loaded after the built-ins (besides those named in DM_PLUGINS). */
  plugins?: Plugin[];
  /** Replace the built-in plugin list entirely. */
  builtins?: Plugin[];
  /** Token verification for `DM_AUTH=jwt` (tests inject a local JWKS this way). */
  verifyToken?: TokenVerifier;
  /** Extra routes registered before plugins (e.g. `/metrics`). */
  routes?: (router: Router) => void;
}

/** A built application, ready to serve. */
export interface App {
  config: Config;
  store: Store;
  llm: LlmProvider;
  engine: TurnEngine;
  logger: Logger;
  plugins: PluginSet;
  handler: (request: Request, remoteAddr: string) => Promise<Response>;
  /** Drain turns up to the grace deadline, close plugins, then the store. */
  close(): Promise<void>;
}

/**
 * Build the LLM provider named by `DM_LLM`. The openai SDK is imported only
 * when it is used, so offline play starts without loading it.
 */
export async function createLlm(config: Config): Promise<LlmProvider> {
  if (config.DM_LLM !== "openai") {
    return new ScriptedStoryteller({ delayMs: config.DM_SCRIPTED_DELAY_MS });
  }
  const { createOpenAiProvider } = await import("./llm/openai.ts");
  return createOpenAiProvider(config);
}

/**
 * Build the store named by `DM_STORE`. The journey-log adapter keeps turn
 * records, events and idempotency keys in SQLite at `DM_SQLITE_PATH`.
 */
export function createStore(config: Config, tracer?: Tracer): Store {
  if (config.DM_STORE !== "journey-log") return new SqliteStore(config.DM_SQLITE_PATH);
  if (!config.DM_JOURNEY_LOG_URL) throw new Error("DM_JOURNEY_LOG_URL is required");
  return new JourneyLogStore({
    baseUrl: config.DM_JOURNEY_LOG_URL,
    timeoutMs: config.DM_JOURNEY_LOG_TIMEOUT_MS,
    retries: config.DM_JOURNEY_LOG_RETRIES,
    side: new SqliteStore(config.DM_SQLITE_PATH),
    tracer,
  });
}

/** Import plugin modules named in `DM_PLUGINS`; each exports `default` or `plugin`. */
export async function importPlugins(specifiers: readonly string[]): Promise<Plugin[]> {
  const out: Plugin[] = [];
  for (const spec of specifiers) {
    const url = /^[a-z]+:/i.test(spec) ? spec : new URL(spec, `file://${Deno.cwd()}/`).href;
    let mod: Record<string, unknown>;
    try {
      mod = await import(url);
    } catch (e) {
      throw new PluginError(`DM_PLUGINS: cannot load "${spec}": ${(e as Error).message}`);
    }
    const plugin = (mod.default ?? mod.plugin) as Plugin | undefined;
    if (!plugin || typeof plugin.setup !== "function") {
      throw new PluginError(`DM_PLUGINS: "${spec}" exports no plugin (default or \`plugin\`)`);
    }
    out.push(plugin);
  }
  return out;
}

/**
 * Routes that need no bearer token: probes and metrics, the game page, the
 * WebSocket upgrade (it authenticates with its first message) and admin
 * routes (they check `DM_ADMIN_TOKEN` themselves).
 */
export function isPublicPath(pathname: string): boolean {
  return pathname === "/health" || pathname === "/ready" || pathname === "/metrics" ||
    pathname === "/" || pathname.startsWith("/static/") || pathname === "/ws" ||
    pathname.startsWith("/admin/");
}

/** Build the application. */
export async function createApp(options: AppOptions): Promise<App> {
  const { config } = options;
  const logger = options.logger ?? createLogger(config.DM_LOG_LEVEL);
  const tracer = options.tracer ?? trace.getTracer("dungeon-master");
  const store = tracedStore(options.store ?? createStore(config, tracer), tracer);
  const llm = limitConcurrency(
    options.llm ?? await createLlm(config),
    config.DM_MAX_CONCURRENT_LLM,
    config.DM_LLM_QUEUE_TIMEOUT_MS,
  );
  const recovered = await store.recoverInterrupted();
  if (recovered > 0) logger.warn("recovered_interrupted_turns", { count: recovered });

  const engine = new TurnEngine({ config, store, llm, logger, tracer });
  const verify = options.verifyToken ??
    (config.DM_AUTH === "jwt" ? createJwtVerifier(config) : () => Promise.resolve(LOCAL_USER));
  const auth = { mode: config.DM_AUTH, verify };
  const router = new Router();
  registerCoreRoutes(router, { engine, store, llm });
  options.routes?.(router);
  const plugins = new PluginSet();
  const list = [
    ...(options.builtins ?? BUILTIN_PLUGINS),
    ...(options.plugins ?? []),
    ...(await importPlugins(config.DM_PLUGINS)),
  ];
  try {
    await plugins.setup(list, { config, logger, store, llm, tracer, engine, router, auth });
  } catch (e) {
    await store.close();
    throw e;
  }
  engine.usePipeline(plugins.pipeline);
  logger.info("plugins_ready", { plugins: plugins.names });

  const handler = createHandler({
    router,
    logger,
    authenticate: config.DM_AUTH === "jwt" ? createAuthenticator(verify) : undefined,
    publicPaths: isPublicPath,
    corsOrigins: config.DM_CORS_ORIGINS,
  });
  let closed: Promise<void> | null = null;
  return {
    config,
    store,
    llm,
    engine,
    logger,
    plugins,
    handler,
    close() {
      closed ??= (async () => {
        await engine.drain(config.DM_SHUTDOWN_GRACE_MS);
        await plugins.close(logger);
        await store.close();
      })();
      return closed;
    },
  };
}
