/**
 * Start the real app on 127.0.0.1 port 0 for a test, with the SQLite store
 * in memory (or a file) and the scripted storyteller at zero delay unless a
 * test injects other parts.
 */
import { loadConfig } from "../../src/config.ts";
import { type App, type AppOptions, createApp } from "../../src/app.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { type RunningServer, serveApp } from "../../src/serve.ts";

/** Parsed response bodies; tests check them field by field, so `any` keeps them short. */
// deno-lint-ignore no-explicit-any
export type Json = any;

/** A server under test. */
export interface TestServer {
  app: App;
  server: RunningServer;
  url: string;
  logs: string[];
  close(): Promise<void>;
}

/** Settings every test starts from. */
export const TEST_ENV: Record<string, string> = {
  DM_PORT: "0",
  DM_SQLITE_PATH: ":memory:",
  DM_SCRIPTED_DELAY_MS: "0",
  DM_LOG_LEVEL: "debug",
  DM_TURN_RATE_PER_SECOND: "1000",
  DM_TURN_BURST: "1000",
  DM_TURN_RATE_PER_USER_PER_SECOND: "1000",
  DM_SHUTDOWN_GRACE_MS: "2000",
};

/** Start a server; `env` overrides {@link TEST_ENV}. */
export async function startTestServer(
  env: Record<string, string> = {},
  options: Omit<AppOptions, "config" | "logger"> & { logger?: Logger } = {},
): Promise<TestServer> {
  const logs: string[] = [];
  const config = loadConfig({ ...TEST_ENV, ...env });
  const app = await createApp({
    ...options,
    config,
    logger: options.logger ?? createLogger(config.DM_LOG_LEVEL, (line) => logs.push(line)),
  });
  const server = await serveApp(app, "127.0.0.1", 0);
  return {
    app,
    server,
    url: server.url,
    logs,
    close: () => server.shutdown(),
  };
}

/** POST JSON and return status, headers and parsed body. */
export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: Json }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

/** GET and parse JSON. */
export async function getJson(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: (text ? JSON.parse(text) : null) as Json,
  };
}

/** Create a character and return its id. */
export async function createCharacter(url: string, headers: Record<string, string> = {}) {
  const res = await postJson(`${url}/characters`, {
    name: "Aria",
    race: "Elf",
    class_name: "Ranger",
    custom_prompt: "A rain-soaked gothic kingdom.",
  }, headers);
  if (res.status !== 201) {
    throw new Error(`create failed: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return res.body.character_id as string;
}
