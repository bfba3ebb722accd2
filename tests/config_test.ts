/** Settings validation. */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../src/config.ts";

Deno.test("defaults", () => {
  const c = loadConfig({});
  assert.equal(c.DM_HOST, "127.0.0.1");
  assert.equal(c.DM_PORT, 8080);
  assert.equal(c.DM_STORE, "sqlite");
  assert.equal(c.DM_SQLITE_PATH, "./data/dm.sqlite");
  assert.equal(c.DM_LLM, "scripted");
  assert.equal(c.DM_LOG_LEVEL, "info");
  assert.deepEqual(c.DM_PLUGINS, []);
  assert.equal(c.DM_SCRIPTED_DELAY_MS, 20);
});

Deno.test("DM_LLM defaults to openai when a key is set", () => {
  assert.equal(loadConfig({ OPENAI_API_KEY: "sk-test" }).DM_LLM, "openai");
  assert.equal(loadConfig({ OPENAI_API_KEY: "sk-test", DM_LLM: "scripted" }).DM_LLM, "scripted");
});

Deno.test("bad values name the variable and what is allowed", () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ DM_PORT: "eighty" }, /DM_PORT: allowed: an integer from 0 to 65535/],
    [{ DM_PORT: "70000" }, /DM_PORT/],
    [{ DM_STORE: "postgres" }, /DM_STORE: allowed: sqlite or journey-log/],
    [{ DM_LLM: "claude" }, /DM_LLM: allowed: openai or scripted/],
    [{ DM_LOG_LEVEL: "loud" }, /DM_LOG_LEVEL: allowed: debug, info, warn or error/],
    [{ DM_QUEST_TRIGGER_PROB: "1.5" }, /DM_QUEST_TRIGGER_PROB: allowed: a number from 0 to 1/],
    [{ DM_MEMORY_SPARK_COUNT: "21" }, /DM_MEMORY_SPARK_COUNT: allowed: an integer from 1 to 20/],
    [{ DM_LLM: "openai" }, /OPENAI_API_KEY/],
    [{ DM_STORE: "journey-log" }, /DM_JOURNEY_LOG_URL/],
  ];
  for (const [env, pattern] of cases) {
    assert.throws(
      () => loadConfig(env),
      (e: Error) => e instanceof ConfigError && pattern.test(e.message),
      JSON.stringify(env),
    );
  }
});

Deno.test("DM_PLUGINS is a comma separated list", () => {
  assert.deepEqual(loadConfig({ DM_PLUGINS: " ./a.ts, npm:b ,," }).DM_PLUGINS, ["./a.ts", "npm:b"]);
});

Deno.test("the service refuses to start on a bad setting", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "src/main.ts"],
    env: { DM_PORT: "not-a-port", DM_SQLITE_PATH: ":memory:" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(new TextDecoder().decode(out.stderr), /DM_PORT: allowed: an integer/);
});
