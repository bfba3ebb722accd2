import assert from "node:assert/strict";
import policyPlugin from "../plugins/policy/mod.ts";
import questPlugin, {
  QUEST_NOT_ALLOWED,
  type QuestDecision,
  type QuestIntent,
  QuestIntentSchema,
} from "../plugins/quest/mod.ts";
import type { NewQuest } from "../src/store/port.ts";
import { createRoller } from "../src/turn/rng.ts";
import {
  activeQuest,
  characterContext,
  CollectingHost,
  fakeTurnContext,
  FixedRoller,
  poi,
  runSubsystem,
} from "./helpers/fake_turn_context.ts";

function intent(action: QuestIntent["action"], extra: Partial<QuestIntent> = {}): QuestIntent {
  return {
    action,
    quest_title: null,
    quest_summary: null,
    quest_details: null,
    progress_update: null,
    ...extra,
  };
}

async function questSubsystem(env: Record<string, string> = {}) {
  const host = await new CollectingHost(env).load(policyPlugin, questPlugin);
  return { host, sub: host.subsystem<QuestIntent>("quest") };
}

Deno.test("the quest intent schema is strict-mode shaped: every key present, optional ones nullable", () => {
  const full = intent("start", {
    quest_title: "T",
    quest_summary: "S",
    quest_details: { objective: "o", reward: null, difficulty: null },
  });
  assert.ok(QuestIntentSchema.safeParse(full).success);
  const { progress_update: _, ...missingKey } = full;
  assert.ok(!QuestIntentSchema.safeParse(missingKey).success, "keys are required");
  assert.ok(!QuestIntentSchema.safeParse({ ...full, action: "offer" }).success);
  assert.ok(!QuestIntentSchema.safeParse({ ...full, quest_details: { objective: "o" } }).success);
});

Deno.test("quest gate", async (t) => {
  const { sub } = await questSubsystem({
    DM_QUEST_TRIGGER_PROB: "0.3",
    DM_QUEST_COOLDOWN_TURNS: "5",
  });
  await t.step("an active quest makes it ineligible without rolling", () => {
    const roller = new FixedRoller({ quest: 0 });
    const ctx = fakeTurnContext({ context: characterContext({ quest: activeQuest() }), roller });
    const d = sub.gate!(ctx) as QuestDecision;
    assert.equal(d.eligible, false);
    assert.equal(d.allowed, false);
    assert.equal(d.reason, "active_quest");
    assert.deepEqual(roller.rolled, []);
  });
  await t.step("the cooldown makes it ineligible below the threshold", () => {
    const roller = new FixedRoller({ quest: 0 });
    const ctx = fakeTurnContext({
      context: characterContext({ turns_since_last_quest: 4 }),
      roller,
    });
    const d = sub.gate!(ctx) as QuestDecision;
    assert.equal(d.eligible, false);
    assert.equal(d.reason, "cooldown");
    assert.deepEqual(roller.rolled, []);
  });
  await t.step("at the threshold it is eligible and rolls", () => {
    const roller = new FixedRoller({ quest: 0.29 });
    const ctx = fakeTurnContext({
      context: characterContext({ turns_since_last_quest: 5 }),
      roller,
    });
    const d = sub.gate!(ctx) as QuestDecision;
    assert.equal(d.eligible, true);
    assert.equal(d.allowed, true);
    assert.equal(d.roll, 0.29);
    assert.equal(d.probability, 0.3);
    assert.deepEqual(roller.rolled, ["quest"]);
  });
  await t.step("a roll at the probability fails", () => {
    const ctx = fakeTurnContext({ roller: new FixedRoller({ quest: 0.3 }) });
    const d = sub.gate!(ctx) as QuestDecision;
    assert.equal(d.eligible, true);
    assert.equal(d.allowed, false);
  });
  await t.step("a completed quest in the context does not block", () => {
    const ctx = fakeTurnContext({
      context: characterContext({ quest: activeQuest({ status: "completed" }) }),
      roller: new FixedRoller({ quest: 0 }),
    });
    assert.equal(sub.gate!(ctx).allowed, true);
  });
});

Deno.test("quest→POI reference", async (t) => {
  const { sub } = await questSubsystem({ DM_QUEST_POI_REFERENCE_PROB: "0.1" });
  const sparks = [poi({ name: "Old Mill" }), poi({ name: "Crow Hill" }), poi({ name: "Fen Gate" })];
  await t.step("is not rolled without sparks", () => {
    const roller = new FixedRoller({ quest: 0, quest_poi_reference: 0 });
    const d = sub.gate!(fakeTurnContext({ roller })) as QuestDecision;
    assert.equal(d.allowed, true);
    assert.equal(d.poi_reference, null);
    assert.deepEqual(roller.rolled, ["quest"]);
  });
  await t.step("is not rolled when the quest roll failed", () => {
    const roller = new FixedRoller({ quest: 0.9, quest_poi_reference: 0 });
    const d = sub.gate!(fakeTurnContext({ roller, memory_sparks: sparks })) as QuestDecision;
    assert.equal(d.poi_reference, null);
    assert.deepEqual(roller.rolled, ["quest"]);
  });
  await t.step("a failed reference roll ties nothing", () => {
    const roller = new FixedRoller({ quest: 0, quest_poi_reference: 0.1 });
    const d = sub.gate!(fakeTurnContext({ roller, memory_sparks: sparks })) as QuestDecision;
    assert.equal(d.poi_reference, null);
    assert.equal(d.poi_reference_roll, 0.1);
  });
  await t.step("a passed reference roll picks one spark with quest_poi_pick", () => {
    const roller = new FixedRoller({ quest: 0, quest_poi_reference: 0.05, quest_poi_pick: 0.5 });
    const d = sub.gate!(fakeTurnContext({ roller, memory_sparks: sparks })) as QuestDecision;
    assert.deepEqual(d.poi_reference, { poi_id: "p-crow-hill", name: "Crow Hill" });
    assert.deepEqual(roller.rolled, ["quest", "quest_poi_reference", "quest_poi_pick"]);
  });
});

Deno.test("quest writes", async (t) => {
  const { sub } = await questSubsystem({ DM_QUEST_TRIGGER_PROB: "0.3" });
  const pass = () => new FixedRoller({ quest: 0 });
  const fail = () => new FixedRoller({ quest: 0.99 });

  await t.step("start runs when the roll passed and no quest is active", async () => {
    const ctx = fakeTurnContext({
      roller: pass(),
      intents: {
        quest_intent: intent("start", {
          quest_title: "  The Bell  ",
          quest_summary: "Find the bell.",
          quest_details: { objective: "Find it", reward: " ", difficulty: null },
        }),
      },
    });
    const change = await runSubsystem(sub, ctx);
    assert.deepEqual(change, { action: "started", success: true, error: null });
    assert.deepEqual(ctx.writer.of("startQuest"), [[{
      title: "The Bell",
      summary: "Find the bell.",
      details: { objective: "Find it" },
      poi_id: null,
    }]]);
  });
  await t.step("start with null details works", async () => {
    const ctx = fakeTurnContext({
      roller: pass(),
      intents: { quest_intent: intent("start", { quest_title: "T", quest_summary: "S" }) },
    });
    assert.equal((await runSubsystem(sub, ctx)).action, "started");
    assert.equal((ctx.writer.of("startQuest")[0][0] as NewQuest).details, null);
  });
  await t.step("start when the gate did not allow it is skipped", async () => {
    const ctx = fakeTurnContext({
      roller: fail(),
      intents: { quest_intent: intent("start", { quest_title: "T", quest_summary: "S" }) },
    });
    assert.deepEqual(await runSubsystem(sub, ctx), {
      action: "skipped",
      success: false,
      error: QUEST_NOT_ALLOWED,
    });
    assert.equal(ctx.writer.calls.length, 0);
  });
  await t.step("start with an active quest is skipped", async () => {
    const ctx = fakeTurnContext({
      roller: pass(),
      context: characterContext({ quest: activeQuest() }),
      intents: { quest_intent: intent("start", { quest_title: "T", quest_summary: "S" }) },
    });
    const change = await runSubsystem(sub, ctx);
    assert.equal(change.action, "skipped");
    assert.equal(change.success, false);
    assert.ok(change.error);
    assert.equal(ctx.writer.calls.length, 0);
  });
  await t.step("a passed roll without a model start gives a fallback quest", async () => {
    for (
      const quest_intent of [null, intent("none"), intent("advance", { progress_update: "x" })]
    ) {
      const ctx = fakeTurnContext({ roller: pass(), intents: { quest_intent } });
      assert.equal((await runSubsystem(sub, ctx)).action, "started");
      const [quest] = ctx.writer.of("startQuest")[0] as [NewQuest];
      assert.ok(quest.title.length > 0 && quest.summary.length > 0);
      assert.equal(quest.poi_id, null);
      assert.equal(quest.details, null);
    }
  });
  await t.step("the fallback quest and a titleless start use the referenced place", async () => {
    const sparks = [poi({ name: "Old Mill" })];
    const roller = () => new FixedRoller({ quest: 0, quest_poi_reference: 0, quest_poi_pick: 0 });
    const fallback = fakeTurnContext({
      roller: roller(),
      memory_sparks: sparks,
      intents: { quest_intent: null },
    });
    await runSubsystem(sub, fallback);
    const [q1] = fallback.writer.of("startQuest")[0] as [NewQuest];
    assert.match(q1.title, /Old Mill/);
    assert.match(q1.summary, /Old Mill/);
    assert.equal(q1.poi_id, "p-old-mill");

    const titled = fakeTurnContext({
      roller: roller(),
      memory_sparks: sparks,
      intents: {
        quest_intent: intent("start", { quest_title: "Grain Thieves", quest_summary: null }),
      },
    });
    await runSubsystem(sub, titled);
    const [q2] = titled.writer.of("startQuest")[0] as [NewQuest];
    assert.equal(q2.title, "Grain Thieves");
    assert.match(q2.summary, /Old Mill/);
    assert.equal(q2.poi_id, "p-old-mill");
  });
  await t.step("an invalid model output writes nothing even when the roll passed", async () => {
    const ctx = fakeTurnContext({ roller: pass(), intents: null });
    assert.deepEqual(await runSubsystem(sub, ctx), { action: "none", success: null, error: null });
    assert.equal(ctx.writer.calls.length, 0);
  });
  await t.step("none without a passed roll does nothing", async () => {
    const ctx = fakeTurnContext({ roller: fail(), intents: { quest_intent: intent("none") } });
    assert.equal((await runSubsystem(sub, ctx)).action, "none");
    assert.equal(ctx.writer.calls.length, 0);
  });
  await t.step("advance records progress on the active quest", async () => {
    const ctx = fakeTurnContext({
      context: characterContext({ quest: activeQuest() }),
      intents: { quest_intent: intent("advance", { progress_update: " Found a clue. " }) },
    });
    assert.deepEqual(await runSubsystem(sub, ctx), {
      action: "advanced",
      success: true,
      error: null,
    });
    assert.deepEqual(ctx.writer.of("advanceQuest"), [["Found a clue."]]);
  });
  await t.step("advance without progress text is skipped", async () => {
    const ctx = fakeTurnContext({
      context: characterContext({ quest: activeQuest() }),
      intents: { quest_intent: intent("advance", { progress_update: "  " }) },
    });
    assert.equal((await runSubsystem(sub, ctx)).action, "skipped");
    assert.equal(ctx.writer.calls.length, 0);
  });
  for (const [action, status] of [["complete", "completed"], ["abandon", "abandoned"]] as const) {
    await t.step(`${action} archives the active quest`, async () => {
      const ctx = fakeTurnContext({
        context: characterContext({ quest: activeQuest() }),
        intents: { quest_intent: intent(action) },
      });
      assert.deepEqual(await runSubsystem(sub, ctx), {
        action: status,
        success: true,
        error: null,
      });
      assert.deepEqual(ctx.writer.of("endQuest"), [[status]]);
    });
  }
  for (const action of ["advance", "complete", "abandon"] as const) {
    await t.step(`${action} without an active quest is skipped with an error`, async () => {
      const ctx = fakeTurnContext({
        roller: fail(),
        intents: { quest_intent: intent(action, { progress_update: "p" }) },
      });
      const change = await runSubsystem(sub, ctx);
      assert.equal(change.action, "skipped");
      assert.equal(change.success, false);
      assert.match(change.error ?? "", /no active quest/);
      assert.equal(ctx.writer.calls.length, 0);
    });
  }
  await t.step("long model text is cut", async () => {
    const ctx = fakeTurnContext({
      roller: pass(),
      intents: {
        quest_intent: intent("start", {
          quest_title: "t".repeat(500),
          quest_summary: "s".repeat(5000),
        }),
      },
    });
    await runSubsystem(sub, ctx);
    const [q] = ctx.writer.of("startQuest")[0] as [NewQuest];
    assert.equal(q.title.length, 200);
    assert.equal(q.summary.length, 2000);
  });
  await t.step("a failing write is thrown for the host to record", async () => {
    const ctx = fakeTurnContext({
      context: characterContext({ quest: activeQuest() }),
      intents: { quest_intent: intent("complete") },
    });
    ctx.writer.failing.add("endQuest");
    await assert.rejects(() => runSubsystem(sub, ctx), /endQuest failed/);
  });
});

Deno.test("quest prompt section shows the quest and the hint, never the numbers", async () => {
  const { host, sub } = await questSubsystem({ DM_QUEST_TRIGGER_PROB: "0.37" });
  const allowedCtx = fakeTurnContext({ roller: new FixedRoller({ quest: 0.12345 }) });
  allowedCtx.policy.quest = sub.gate!(allowedCtx);
  const allowed = sub.promptSection!(allowedCtx)!;
  assert.match(allowed, /Quest: ALLOWED/);
  assert.doesNotMatch(allowed, /NOT ALLOWED|0\.37|0\.12/);

  const activeCtx = fakeTurnContext({
    context: characterContext({
      quest: activeQuest({ progress: ["Asked the priest", "Found tracks"] }),
    }),
  });
  activeCtx.policy.quest = sub.gate!(activeCtx);
  const active = sub.promptSection!(activeCtx)!;
  assert.match(active, /Active quest: Find the lost bell/);
  assert.match(active, /Found tracks/);
  assert.match(active, /Quest: NOT ALLOWED/);
  assert.ok(sub.instructions && sub.instructions.length < 400, "instructions stay compact");
  assert.equal(host.intents.has("quest_intent"), true);
});

/**
 * Simulate `turns` turns of a model that proposes a quest start every turn
 * and completion whenever a quest is active. Counters move as the store
 * moves them: a start resets turns_since_last_quest to 0 at commit, and every
 * other turn adds one.
 */
async function simulateQuests(seed: string, turns: number): Promise<number[]> {
  const { sub } = await questSubsystem({
    DM_QUEST_TRIGGER_PROB: "0.3",
    DM_QUEST_COOLDOWN_TURNS: "5",
  });
  let active = false;
  let since = 0;
  const starts: number[] = [];
  for (let turn = 1; turn <= turns; turn++) {
    const ctx = fakeTurnContext({
      context: characterContext({
        quest: active ? activeQuest() : null,
        turn_count: turn - 1,
        turns_since_last_quest: since,
      }),
      roller: createRoller({ seed, characterId: "c-1", turnNumber: turn }),
      intents: {
        quest_intent: intent(active ? "complete" : "start", {
          quest_title: "Q",
          quest_summary: "S",
        }),
      },
    });
    const change = await runSubsystem(sub, ctx);
    if (change.action === "started") {
      starts.push(turn);
      active = true;
      since = 0;
    } else {
      if (change.action === "completed") active = false;
      since++;
    }
  }
  return starts;
}

Deno.test("seeded run: quest pacing follows probability and cooldown", async () => {
  const starts = await simulateQuests("42", 100);
  assert.ok(
    starts.length >= 5 && starts.length <= 21,
    `${starts.length} quests started: ${starts}`,
  );
  for (let i = 1; i < starts.length; i++) {
    // With the store's counters a quest started on turn t is next eligible on t + cooldown + 1.
    assert.ok(
      starts[i] - starts[i - 1] > 5,
      `starts ${starts[i - 1]} and ${starts[i]} are too close`,
    );
  }
  assert.ok(starts[0] > 5, "a new character plays the cooldown first");
  assert.deepEqual(
    await simulateQuests("42", 100),
    starts,
    "the same seed gives the same sequence",
  );
  assert.notDeepEqual(
    await simulateQuests("43", 100),
    starts,
    "another seed gives another sequence",
  );
});
