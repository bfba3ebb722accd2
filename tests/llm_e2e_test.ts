/**
 * Real-model turns end to end: the service runs with DM_LLM=openai against
 * the fake OpenAI server through the real openai SDK, on both APIs.
 */
import assert from "node:assert/strict";
import { FakeOpenAI, type FakeReply } from "./fakes/fake_openai.ts";
import { createCharacter, getJson, postJson, startTestServer } from "./helpers/server.ts";
import { quietOutcome } from "./helpers/recording_llm.ts";
import { openSse } from "./helpers/sse.ts";
import { APOLOGY_NARRATIVE } from "../src/turn/outcome.ts";

const PROSE = 'The crypt door groans. "Who goes there?" a voice asks — 幽霊 🕯️\nStep\\in.';

async function withService(
  api: "responses" | "chat",
  fn: (ctx: { url: string; fake: FakeOpenAI; id: string }) => Promise<void>,
) {
  const fake = await FakeOpenAI.start();
  fake.script({ text: JSON.stringify(quietOutcome("You arrive at the crypt.")) });
  const t = await startTestServer({
    DM_LLM: "openai",
    OPENAI_API_KEY: "sk-test",
    OPENAI_BASE_URL: fake.url,
    DM_LLM_API: api,
    DM_LLM_MAX_RETRIES: "0",
    DM_LLM_TIMEOUT_MS: "300",
  });
  try {
    const id = await createCharacter(t.url);
    await fn({ url: t.url, fake, id });
  } finally {
    await t.close();
    await fake.close();
  }
}

async function snapshot(url: string, id: string) {
  const view = (await getJson(`${url}/characters/${id}`)).body;
  return {
    turn_count: view.turn_count,
    recent: view.recent_turns,
    quest: view.quest,
    combat: view.combat,
    pois: view.pois,
    status: view.status,
  };
}

for (const api of ["responses", "chat"] as const) {
  Deno.test(`${api}: streamed tokens are prose only and add up to the persisted narrative`, async () => {
    await withService(api, async ({ url, fake, id }) => {
      fake.script({ text: JSON.stringify(quietOutcome(PROSE)), chunkSize: 3 });
      const sse = await openSse(`${url}/turn/stream`, {
        body: { character_id: id, user_action: "I knock" },
      });
      assert.equal(sse.response.status, 200);
      const events = await sse.rest();
      const tokens = events.filter((e) => e.type === "token").map((e) =>
        (e as { content: string }).content
      );
      assert.ok(tokens.length > 5, "prose arrives in many tokens");
      for (const token of tokens) assert.doesNotMatch(token, /"narrative"|\{"|"intents"/);
      const complete = events.at(-1)!;
      assert.equal(complete.type, "complete");
      assert.equal(tokens.join(""), PROSE);
      const view = await getJson(`${url}/characters/${id}`);
      assert.equal(view.body.recent_turns.at(-1).narrative, PROSE);
      const record = await getJson(`${url}/turns/${complete.turn_id}`);
      assert.ok(record.body.usage.input_tokens > 0 && record.body.usage.output_tokens > 0);
      const sent = fake.requests.at(-1)!;
      const schema = JSON.stringify(sent.body);
      assert.match(schema, /"strict":true/);
      assert.match(schema, /quest_intent/);
    });
  });

  Deno.test(`${api}: a fenced answer with text before it still parses`, async () => {
    await withService(api, async ({ url, fake, id }) => {
      const outcome = quietOutcome("Dust settles.", {
        combat_intent: {
          action: "none",
          enemies: null,
          combat_notes: null,
          player_status: "Wounded",
        },
      });
      fake.script({ text: "Sure! Here you go:\n```json\n" + JSON.stringify(outcome) + "\n```" });
      const res = await postJson(`${url}/turn`, { character_id: id, user_action: "I wait" });
      assert.equal(res.status, 200);
      assert.equal(res.body.narrative, "Dust settles.");
      assert.notEqual(res.body.intents, null);
      assert.equal((await getJson(`${url}/characters/${id}`)).body.status, "Wounded");
    });
  });

  Deno.test(`${api}: invalid output falls back, writes only the narrative, intents null`, async () => {
    await withService(api, async ({ url, fake, id }) => {
      const cases: Array<[FakeReply, string]> = [
        [{ text: '{"narrative":"Half a sentence and then' }, "Half a sentence and then"],
        [
          { text: JSON.stringify({ narrative: "Wrong shape.", intents: { quest_intent: 42 } }) },
          "Wrong shape.",
        ],
        [
          { text: "The model forgot the JSON and just told the story." },
          "The model forgot the JSON and just told the story.",
        ],
        [{ text: "{{{ ]]" }, APOLOGY_NARRATIVE],
      ];
      for (const [reply, narrative] of cases) {
        fake.script({ ...reply, chunkSize: 4 });
        const sse = await openSse(`${url}/turn/stream`, {
          body: { character_id: id, user_action: "I wait" },
        });
        const events = await sse.rest();
        const complete = events.at(-1) as unknown as {
          type: string;
          narrative: string;
          intents: unknown;
          subsystem_summary: { narrative_persisted: boolean };
        };
        assert.equal(complete.type, "complete", JSON.stringify(reply));
        assert.equal(complete.narrative, narrative);
        assert.equal(complete.intents, null);
        assert.equal(complete.subsystem_summary.narrative_persisted, true);
        const tokens = events.filter((e) => e.type === "token").map((e) =>
          (e as { content: string }).content
        ).join("");
        assert.equal(tokens, narrative, "the tokens still add up to the narrative");
        const view = await getJson(`${url}/characters/${id}`);
        assert.equal(view.body.recent_turns.at(-1).narrative, narrative);
      }
    });
  });

  Deno.test(`${api}: model faults give the documented error and write nothing`, async () => {
    await withService(api, async ({ url, fake, id }) => {
      const faults: Array<[FakeReply, number, string]> = [
        [{ status: 500 }, 502, "llm_error"],
        [{ status: 429 }, 502, "llm_error"],
        [{ status: 401 }, 502, "llm_error"],
        [{ firstTokenDelayMs: 3000 }, 504, "llm_timeout"],
        [
          { text: JSON.stringify(quietOutcome("Never finished.")), cutAfterChunks: 3 },
          502,
          "llm_error",
        ],
        [{ text: "" }, 502, "llm_response_error"],
      ];
      for (const [reply, status, type] of faults) {
        const before = await snapshot(url, id);
        fake.script(reply);
        const res = await postJson(`${url}/turn`, {
          character_id: id,
          user_action: "I open the door",
        });
        assert.equal(res.status, status, `${JSON.stringify(reply)}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.detail.error.type, type);
        assert.deepEqual(await snapshot(url, id), before, `${type}: nothing written`);
        const record = await getJson(`${url}/turns/${res.body.detail.error.turn_id}`);
        assert.equal(record.body.status, "failed");
        assert.equal(record.body.error_type, type);
      }
      const again = await postJson(`${url}/turn`, { character_id: id, user_action: "x" });
      assert.equal(again.status, 200, "the service recovers when the model does");
    });
  });

  Deno.test(`${api}: a fault after tokens were streamed ends the SSE stream with an error event`, async () => {
    await withService(api, async ({ url, fake, id }) => {
      const before = await snapshot(url, id);
      fake.script({
        text: JSON.stringify(quietOutcome("A long tale that breaks off.")),
        chunkSize: 4,
        cutAfterChunks: 8,
      });
      const sse = await openSse(`${url}/turn/stream`, {
        body: { character_id: id, user_action: "I listen" },
      });
      const events = await sse.rest();
      assert.ok(events.some((e) => e.type === "token"));
      const last = events.at(-1) as unknown as {
        type: string;
        error_type: string;
        recoverable: boolean;
      };
      assert.equal(last.type, "error");
      assert.equal(last.error_type, "llm_error");
      assert.equal(events.filter((e) => e.type === "complete" || e.type === "error").length, 1);
      assert.deepEqual(await snapshot(url, id), before);
    });
  });
}
