/**
 * The offline storyteller must produce outcomes the real schema accepts, or
 * a keyless player would silently lose every game change.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../src/config.ts";
import { createApp } from "../src/app.ts";
import { createLogger } from "../src/log.ts";
import { ScriptedStoryteller, scriptOutcome } from "../src/llm/scripted.ts";
import { NarrativeReader } from "../src/llm/narrative_reader.ts";
import { buildOutcomeSchema } from "../src/turn/outcome.ts";
import type { SceneFacts } from "../src/llm/provider.ts";
import { TEST_ENV } from "./helpers/server.ts";

const ACTIONS = [
  "I look around",
  "I walk to the chapel",
  "I attack the ghoul",
  "I strike again",
  "I flee",
  "I rest",
  "I deliver the letter",
  "I sing a song about the moon and the sea and the long road home to my family",
];

function scenes(): SceneFacts[] {
  const out: SceneFacts[] = [];
  for (const user_action of ACTIONS) {
    for (const in_combat of [false, true]) {
      for (const active_quest of [null, "The Missing Bellringer"]) {
        for (const allowed of [{ quest: true, poi: true }, { quest: false, poi: false }]) {
          out.push({
            user_action,
            character_name: "Aria",
            location: "Ravenhollow",
            in_combat,
            active_quest,
            allowed,
            sparks: ["The Glass Orchard"],
            intro: false,
          });
        }
      }
    }
  }
  out.push({ ...out[0], intro: true });
  return out;
}

Deno.test("every scripted outcome validates against the assembled outcome schema", async () => {
  const app = await createApp({
    config: loadConfig(TEST_ENV),
    logger: createLogger("error", () => {}),
  });
  try {
    const schema = buildOutcomeSchema(app.plugins.pipeline.intents);
    for (const scene of scenes()) {
      const outcome = scriptOutcome(scene);
      const parsed = schema.safeParse(outcome);
      assert.ok(
        parsed.success,
        `${JSON.stringify(scene)}: ${JSON.stringify(parsed.error?.issues[0])}`,
      );
      assert.ok((outcome.narrative as string).length > 0);
    }
  } finally {
    await app.close();
  }
});

Deno.test("it reacts: attacks start combat, moves reveal places, quests only when allowed", () => {
  const base = scenes()[0];
  const attack = scriptOutcome({ ...base, user_action: "I attack the troll" });
  assert.equal(
    (attack.intents as Record<string, { action: string }>).combat_intent.action,
    "start",
  );
  const move = scriptOutcome({ ...base, user_action: "I walk north", allowed: { poi: true } });
  assert.equal((move.intents as Record<string, { action: string }>).poi_intent.action, "create");
  const noQuest = scriptOutcome({ ...base, allowed: { quest: false } });
  assert.equal((noQuest.intents as Record<string, { action: string }>).quest_intent.action, "none");
  const quest = scriptOutcome({ ...base, allowed: { quest: true } });
  assert.equal((quest.intents as Record<string, { action: string }>).quest_intent.action, "start");
});

Deno.test("it streams the JSON in chunks whose narrative reads back exactly", async () => {
  const llm = new ScriptedStoryteller({ delayMs: 0, chunkSize: 5 });
  const scene = scenes()[2];
  const reader = new NarrativeReader();
  let raw = "";
  let chunks = 0;
  let usage = false;
  for await (
    const c of llm.stream({
      system: "s",
      prompt: "p",
      schema: { name: "x", json: {} },
      scene,
      max_output_tokens: 100,
      signal: new AbortController().signal,
    })
  ) {
    if (c.type === "usage") usage = true;
    else {
      chunks++;
      raw += c.text;
      reader.push(c.text);
    }
  }
  assert.ok(chunks > 10);
  assert.ok(usage);
  assert.equal(reader.narrative, JSON.parse(raw).narrative);
});

Deno.test("an aborted signal cancels the stream", async () => {
  const llm = new ScriptedStoryteller({ delayMs: 1000 });
  const abort = new AbortController();
  const stream = llm.stream({
    system: "s",
    prompt: "p",
    schema: { name: "x", json: {} },
    scene: scenes()[0],
    max_output_tokens: 100,
    signal: abort.signal,
  });
  const next = stream[Symbol.asyncIterator]().next();
  abort.abort();
  await assert.rejects(next, (e: Error) => (e as { type?: string }).type === "cancelled");
});
