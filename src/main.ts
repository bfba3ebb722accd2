/**
 * Entry point: `deno task start`. Reads settings, starts telemetry, builds
 * the app and serves it until SIGINT/SIGTERM.
 *
 * @module
 */
import { ConfigError, configFromEnv } from "./config.ts";
import { createApp } from "./app.ts";
import { PluginError } from "./plugin/host.ts";
import { serveApp } from "./serve.ts";

async function main(): Promise<number> {
  let config;
  try {
    config = configFromEnv();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      return 2;
    }
    throw e;
  }
  let app;
  try {
    app = await createApp({ config });
  } catch (e) {
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
  app.logger.info("stopped", {});
  return exitCode;
}

Deno.exit(await main());
