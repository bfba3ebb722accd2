/**
 * `/metrics` of the real service after real turns over every transport,
 * including a model answer that fails validation and a client that drops
 * mid-turn: every service metric moves, ids never become label values, and
 * promtool accepts the exposition.
 */
import assert from "node:assert/strict";
import { FakeOpenAI } from "./fakes/fake_openai.ts";
import { spawnService } from "./helpers/process.ts";
import { createCharacter, postJson } from "./helpers/server.ts";
import { looksLikeId, parseExposition, promtoolCheck } from "./helpers/prometheus.ts";
import { quietOutcome } from "./helpers/recording_llm.ts";
import { openSse } from "./helpers/sse.ts";
import { WsClient } from "./helpers/ws.ts";

const MOVING = [
  "dm_turns_total",
  "dm_turn_duration_seconds_count",
  "dm_time_to_first_token_seconds_count",
  "dm_stage_duration_seconds_count",
  "dm_llm_tokens_total",
  "dm_client_disconnects_total",
  "dm_outcome_parse_failures_total",
  "dm_subsystem_writes_total",
  "dm_policy_rolls_total",
  "dm_http_requests_total",
];

Deno.test("every metric moves after real turns and the exposition passes promtool", async () => {
  const fake = await FakeOpenAI.start();
  const ok = (narrative: string) => ({
    text: JSON.stringify(quietOutcome(narrative)),
    chunkSize: 5,
  });
  // One reply per model request, in order: intro, wait, garble, listen, linger.
  fake.script(
    ok("You arrive."),
    ok("The torchlight flickers."),
    { text: "{not json at all" },
    ok("Water drips."),
    {
      text: JSON.stringify(quietOutcome("Time passes slowly here.")),
      chunkSize: 2,
      tokenDelayMs: 20,
    },
  );
  const dir = await Deno.makeTempDir();
  const service = await spawnService({
    DM_SQLITE_PATH: `${dir}/dm.sqlite`,
    DM_LLM: "openai",
    OPENAI_API_KEY: "sk-test",
    OPENAI_BASE_URL: fake.url,
    DM_TURN_RATE_PER_SECOND: "100",
    DM_TURN_BURST: "20",
  });
  try {
    const id = await createCharacter(service.url);
    assert.equal(
      (await postJson(`${service.url}/turn`, { character_id: id, user_action: "I wait" })).status,
      200,
    );
    const garbled = await postJson(`${service.url}/turn`, {
      character_id: id,
      user_action: "garble",
    });
    assert.equal(garbled.status, 200);
    assert.equal(garbled.body.intents, null);

    const ws = await WsClient.connect(service.url);
    ws.send({ type: "turn", character_id: id, user_action: "I listen" });
    await ws.turn();
    await ws.close();

    // A client that drops mid-turn: read the first token, then hang up.
    const sse = await openSse(`${service.url}/turn/stream`, {
      body: { character_id: id, user_action: "linger" },
    });
    const turnId = sse.response.headers.get("x-turn-id")!;
    for (let f = await sse.next(); f && !(f.data ?? "").includes('"token"'); f = await sse.next()) {
      // Wait for a token.
    }
    await sse.disconnect();
    // The turn still completes (disconnect policy: continue).
    const replay = await openSse(`${service.url}/turns/${turnId}/events`);
    for (let f = await replay.next(); f && f.data !== "[DONE]"; f = await replay.next()) {
      // Read to the end.
    }

    const res = await fetch(`${service.url}/metrics`);
    const text = await res.text();
    assert.equal(res.status, 200);
    const { samples } = parseExposition(text);
    for (const name of MOVING) {
      const total = samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
      assert.ok(total > 0, `${name} moved (total ${total})`);
    }
    assert.ok(samples.some((s) => s.name === "dm_active_streams" && s.labels.transport === "sse"));
    assert.ok(
      samples.some((s) => s.name === "dm_turns_total" && s.labels.transport === "websocket"),
    );
    for (const s of samples) {
      for (const [label, value] of Object.entries(s.labels)) {
        assert.ok(!looksLikeId(value), `${s.name}{${label}="${value}"} carries an id`);
      }
    }
    const lint = await promtoolCheck(text);
    assert.equal(lint.code, 0, lint.output);
  } finally {
    await service.stop();
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});
