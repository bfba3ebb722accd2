/**
 * Entry point: `deno task start`. Reads settings, starts telemetry, builds
 * the app and serves it until SIGINT/SIGTERM, then drains turns, flushes
 * spans and exits 0.
 *
 * @module
 */
import { ConfigError, configFromEnv } from "./config.ts";
import { createApp } from "./app.ts";
import { createLogger } from "./log.ts";
import { PluginError } from "./plugin/host.ts";
import { serveApp } from "./serve.ts";
import { startTelemetry } from "./telemetry/sdk.ts";

async function main(): Promise<number> {
  let config, telemetry;
  try {
    config = configFromEnv();
    // Telemetry first: the engine and plugins take their tracer when built.
    telemetry = await startTelemetry(Deno.env.toObject(), {
      logger: createLogger(config.DM_LOG_LEVEL),
      metricsEnabled: config.DM_METRICS_ENABLED,
    });
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      return 2;
    }
    throw e;
  }
  let app;
  try {
    app = await createApp({
      config,
      routes: (router) => {
        if (telemetry.metricsEnabled) {
          router.add("GET", "/metrics", () => telemetry.metricsResponse());
        }
      },
    });
  } catch (e) {
    await telemetry.shutdown();
    if (e instanceof PluginError || e instanceof ConfigError) {
      console.error(`Start-up failed: ${e.message}`);
      return 2;
    }
    throw e;
  }
  const server = await serveApp(app, config.DM_HOST, config.DM_PORT);
  app.logger.info("listening", { url: server.url, store: app.store.kind, llm: app.llm.system });
  let exitCode = 0;
  const stop = () => {
    app.logger.info("shutting_down", { active_turns: app.engine.activeTurns });
    server.shutdown().catch((e) => {
      app.logger.error("shutdown_failed", { error: e });
      exitCode = 1;
    });
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  await server.shutdown();
  await telemetry.shutdown();
  app.logger.info("stopped", {});
  return exitCode;
}

Deno.exit(await main());
