/**
 * A subsystem added from one module through DM_PLUGINS changes the outcome
 * schema, the prompt and the writes, with no edit to core.
 */
import assert from "node:assert/strict";
import { createCharacter, getJson, postJson, startTestServer } from "./helpers/server.ts";
import { quietOutcome, RecordingLlm } from "./helpers/recording_llm.ts";

Deno.test("the inventory plugin extends schema, prompt and writes", async () => {
  const llm = new RecordingLlm((req, i) => {
    if (req.scene.intro) return quietOutcome("You arrive.");
    return quietOutcome(`Turn ${i}.`, {
      inventory_intent: i === 1
        ? { action: "add", item: "lantern" }
        : i === 2
        ? { action: "drop", item: "sword" }
        : { action: "none", item: null },
    });
  });
  const t = await startTestServer({ DM_PLUGINS: "./tests/plugins/inventory.ts" }, { llm });
  try {
    const id = await createCharacter(t.url);
    const schema = JSON.stringify(llm.requests[0].schema.json);
    assert.match(schema, /inventory_intent/);
    assert.match(llm.requests[0].system, /inventory_intent to add or drop/);

    const first = await postJson(`${t.url}/turn`, {
      character_id: id,
      user_action: "I pick up the lantern",
    });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body.subsystem_summary.inventory_change, {
      action: "added",
      success: true,
      error: null,
    });
    assert.deepEqual(first.body.intents.inventory_intent, { action: "add", item: "lantern" });
    assert.match(llm.requests[1].prompt, /INVENTORY: \(empty\)/);

    const second = await postJson(`${t.url}/turn`, {
      character_id: id,
      user_action: "I drop my sword",
    });
    assert.equal(second.status, 200);
    assert.match(llm.requests[2].prompt, /INVENTORY: lantern/);
    assert.equal(second.body.subsystem_summary.inventory_change.action, "skipped");
    assert.equal(second.body.subsystem_summary.inventory_change.success, false);

    const view = await getJson(`${t.url}/characters/${id}`);
    assert.deepEqual(view.body.extensions.inventory, ["lantern"]);
    const order = t.app.plugins.pipeline.stages.apply.map((s) => s.name);
    assert.deepEqual(order, ["quest", "combat", "poi", "inventory", "narrative"]);
  } finally {
    await t.close();
  }
});

Deno.test("without the plugin the schema has no inventory intent", async () => {
  const llm = new RecordingLlm(() => quietOutcome("You arrive."));
  const t = await startTestServer({}, { llm });
  try {
    await createCharacter(t.url);
    assert.doesNotMatch(JSON.stringify(llm.requests[0].schema.json), /inventory_intent/);
  } finally {
    await t.close();
  }
});
