import assert from "node:assert/strict";
import combatPlugin, {
  type CombatIntent,
  CombatIntentSchema,
  STATUS_CHANGE_KEY,
  STATUS_TRANSITIONS,
} from "../plugins/combat/mod.ts";
import type { CharacterStatus, CombatState } from "../src/store/port.ts";
import {
  characterContext,
  CollectingHost,
  fakeTurnContext,
  runSubsystem,
} from "./helpers/fake_turn_context.ts";

function intent(action: CombatIntent["action"], extra: Partial<CombatIntent> = {}): CombatIntent {
  return { action, enemies: null, combat_notes: null, player_status: null, ...extra };
}

const enemy = (name: string | null, threat: string | null = "low") => ({
  name,
  description: null,
  threat,
});

const inCombat: CombatState = {
  combat_id: "cb-1",
  turn: 2,
  enemies: [{ enemy_id: "e-1", name: "Wolf", description: null, threat: "low", status: "Healthy" }],
  notes: "In the woods",
  started_at: "2024-01-01T00:00:00.000Z",
};

async function combat() {
  const host = await new CollectingHost().load(combatPlugin);
  return { host, sub: host.subsystem<CombatIntent>("combat") };
}

Deno.test("the combat intent schema needs every key and knows the statuses", () => {
  assert.ok(CombatIntentSchema.safeParse(intent("start", { enemies: [enemy("Orc")] })).success);
  assert.ok(
    !CombatIntentSchema.safeParse({ action: "none", enemies: null, combat_notes: null }).success,
  );
  assert.ok(
    !CombatIntentSchema.safeParse(intent("none", { player_status: "Dying" as CharacterStatus }))
      .success,
  );
  assert.ok(
    !CombatIntentSchema.safeParse({ ...intent("start"), enemies: [{ name: "Orc" }] }).success,
  );
});

Deno.test("combat has no policy gate", async () => {
  const { sub } = await combat();
  assert.equal(sub.gate, undefined);
});

Deno.test("combat writes", async (t) => {
  const { sub } = await combat();
  await t.step("start out of combat with enemies: ids, Healthy, threat kept", async () => {
    const ctx = fakeTurnContext({
      intents: {
        combat_intent: intent("start", {
          enemies: [enemy(" Goblin ", "medium"), {
            name: "Troll",
            description: "Huge",
            threat: null,
          }],
          combat_notes: "Ambush",
        }),
      },
    });
    assert.deepEqual(await runSubsystem(sub, ctx), {
      action: "started",
      success: true,
      error: null,
    });
    const [[state]] = ctx.writer.of("setCombat") as [[CombatState]];
    assert.equal(state.turn, 1);
    assert.equal(state.notes, "Ambush");
    assert.match(state.combat_id, /^[0-9a-f-]{36}$/);
    assert.deepEqual(state.enemies.map((e) => [e.name, e.description, e.threat, e.status]), [
      ["Goblin", null, "medium", "Healthy"],
      ["Troll", "Huge", null, "Healthy"],
    ]);
    assert.notEqual(state.enemies[0].enemy_id, state.enemies[1].enemy_id);
    assert.match(state.enemies[0].enemy_id, /^[0-9a-f-]{36}$/);
  });
  await t.step("more than five enemies are cut to five", async () => {
    const enemies = ["a", "b", "c", "d", "e", "f", "g"].map((n) => enemy(n));
    const ctx = fakeTurnContext({ intents: { combat_intent: intent("start", { enemies }) } });
    await runSubsystem(sub, ctx);
    const [[state]] = ctx.writer.of("setCombat") as [[CombatState]];
    assert.deepEqual(state.enemies.map((e) => e.name), ["a", "b", "c", "d", "e"]);
  });
  await t.step("a nameless enemy gets a placeholder name", async () => {
    const ctx = fakeTurnContext({
      intents: { combat_intent: intent("start", { enemies: [enemy("  ")] }) },
    });
    await runSubsystem(sub, ctx);
    const [[state]] = ctx.writer.of("setCombat") as [[CombatState]];
    assert.equal(state.enemies[0].name, "Enemy 1");
  });
  for (const enemies of [null, []]) {
    await t.step(`start with ${JSON.stringify(enemies)} enemies is skipped`, async () => {
      const ctx = fakeTurnContext({ intents: { combat_intent: intent("start", { enemies }) } });
      const change = await runSubsystem(sub, ctx);
      assert.equal(change.action, "skipped");
      assert.equal(change.success, false);
      assert.match(change.error ?? "", /enemy/);
      assert.equal(ctx.writer.calls.length, 0);
    });
  }
  await t.step("start in combat is skipped", async () => {
    const ctx = fakeTurnContext({
      context: characterContext({ combat: inCombat }),
      intents: { combat_intent: intent("start", { enemies: [enemy("Orc")] }) },
    });
    assert.equal((await runSubsystem(sub, ctx)).action, "skipped");
    assert.equal(ctx.writer.calls.length, 0);
  });
  await t.step("continue increments the combat turn and keeps enemies", async () => {
    const ctx = fakeTurnContext({
      context: characterContext({ combat: inCombat }),
      intents: { combat_intent: intent("continue") },
    });
    assert.deepEqual(await runSubsystem(sub, ctx), {
      action: "continued",
      success: true,
      error: null,
    });
    assert.deepEqual(ctx.writer.of("setCombat"), [[{ ...inCombat, turn: 3 }]]);
  });
  await t.step("end clears combat", async () => {
    const ctx = fakeTurnContext({
      context: characterContext({ combat: inCombat }),
      intents: { combat_intent: intent("end") },
    });
    assert.deepEqual(await runSubsystem(sub, ctx), { action: "ended", success: true, error: null });
    assert.deepEqual(ctx.writer.of("setCombat"), [[null]]);
  });
  for (const action of ["continue", "end"] as const) {
    await t.step(`${action} out of combat is skipped`, async () => {
      const ctx = fakeTurnContext({ intents: { combat_intent: intent(action) } });
      const change = await runSubsystem(sub, ctx);
      assert.deepEqual(change, { action: "skipped", success: false, error: "not in combat" });
      assert.equal(ctx.writer.calls.length, 0);
    });
  }
  await t.step("none and a null intent do nothing", async () => {
    for (const combat_intent of [null, intent("none")]) {
      const ctx = fakeTurnContext({ intents: { combat_intent } });
      assert.deepEqual(await runSubsystem(sub, ctx), {
        action: "none",
        success: null,
        error: null,
      });
      assert.deepEqual(ctx.changes[STATUS_CHANGE_KEY], {
        action: "none",
        success: null,
        error: null,
      });
      assert.equal(ctx.writer.calls.length, 0);
    }
  });
});

Deno.test("player status transitions", async (t) => {
  const { sub } = await combat();
  const statuses: CharacterStatus[] = ["Healthy", "Wounded", "Dead"];
  for (const from of statuses) {
    for (const to of statuses) {
      await t.step(`${from} -> ${to}`, async () => {
        const ctx = fakeTurnContext({
          context: characterContext({ character: { status: from } }),
          intents: { combat_intent: intent("none", { player_status: to }) },
        });
        await runSubsystem(sub, ctx);
        const change = ctx.changes[STATUS_CHANGE_KEY];
        if (from === to) {
          assert.deepEqual(change, { action: "none", success: null, error: null });
          assert.equal(ctx.writer.calls.length, 0);
        } else if (from === "Dead") {
          assert.equal(change.action, "skipped");
          assert.equal(change.success, false);
          assert.match(change.error ?? "", /final/);
          assert.equal(ctx.writer.calls.length, 0);
        } else {
          assert.deepEqual(change, { action: `${from}->${to}`, success: true, error: null });
          assert.deepEqual(ctx.writer.of("setStatus"), [[to]]);
        }
      });
    }
  }
  assert.deepEqual(STATUS_TRANSITIONS.Dead, []);
});

Deno.test("player status applies whatever the combat action does", async () => {
  const { sub } = await combat();
  const skipped = fakeTurnContext({
    intents: { combat_intent: intent("end", { player_status: "Wounded" }) },
  });
  assert.equal((await runSubsystem(sub, skipped)).action, "skipped");
  assert.deepEqual(skipped.writer.of("setStatus"), [["Wounded"]]);

  const started = fakeTurnContext({
    intents: { combat_intent: intent("start", { enemies: [enemy("Orc")], player_status: "Dead" }) },
  });
  assert.equal((await runSubsystem(sub, started)).action, "started");
  assert.deepEqual(started.writer.of("setStatus"), [["Dead"]]);
  assert.equal(started.changes[STATUS_CHANGE_KEY].action, "Healthy->Dead");
});

Deno.test("a failed combat write still applies the status, then throws", async () => {
  const { sub } = await combat();
  const ctx = fakeTurnContext({
    context: characterContext({ combat: inCombat }),
    intents: { combat_intent: intent("continue", { player_status: "Wounded" }) },
  });
  ctx.writer.failing.add("setCombat");
  await assert.rejects(() => runSubsystem(sub, ctx), /setCombat failed/);
  assert.deepEqual(ctx.writer.of("setStatus"), [["Wounded"]]);
  assert.equal(ctx.changes[STATUS_CHANGE_KEY].action, "Healthy->Wounded");
});

Deno.test("a failed status write is reported in status_change, not thrown", async () => {
  const { sub } = await combat();
  const ctx = fakeTurnContext({
    intents: { combat_intent: intent("none", { player_status: "Wounded" }) },
  });
  ctx.writer.failing.add("setStatus");
  assert.equal((await runSubsystem(sub, ctx)).action, "none");
  assert.deepEqual(ctx.changes[STATUS_CHANGE_KEY], {
    action: "Healthy->Wounded",
    success: false,
    error: "setStatus failed (test)",
  });
});

Deno.test("an invalid model output changes nothing", async () => {
  const { sub } = await combat();
  const ctx = fakeTurnContext({ context: characterContext({ combat: inCombat }), intents: null });
  assert.equal((await runSubsystem(sub, ctx)).action, "none");
  assert.equal(ctx.changes[STATUS_CHANGE_KEY].action, "none");
  assert.equal(ctx.writer.calls.length, 0);
});

Deno.test("combat prompt section and instructions", async () => {
  const { sub } = await combat();
  const calm = sub.promptSection!(fakeTurnContext())!;
  assert.match(calm, /Player status: Healthy/);
  assert.match(calm, /Not in combat/);
  const fight = sub.promptSection!(fakeTurnContext({
    context: characterContext({ combat: inCombat, character: { status: "Wounded" } }),
  }))!;
  assert.match(fight, /Player status: Wounded/);
  assert.match(fight, /round 2/);
  assert.match(fight, /- Wolf \(Healthy, threat low\)/);
  const rules = sub.instructions ?? "";
  for (
    const rule of [
      "Healthy->Wounded",
      "Wounded->Healthy",
      "Wounded->Dead",
      "Healthy->Dead",
      "Dead is final",
    ]
  ) {
    assert.ok(rules.includes(rule), `instructions state ${rule}`);
  }
});
