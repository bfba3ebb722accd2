import assert from "node:assert/strict";
import policyPlugin from "../plugins/policy/mod.ts";
import poiPlugin, {
  LOCATION_CHANGE_KEY,
  LOCATION_INTENT_KEY,
  type LocationIntent,
  LocationIntentSchema,
  POI_NOT_ALLOWED,
  type PoiDecision,
  type PoiIntent,
  PoiIntentSchema,
} from "../plugins/poi/mod.ts";
import type { Location, NewPoi } from "../src/store/port.ts";
import {
  characterContext,
  CollectingHost,
  FakePoiStore,
  fakeTurnContext,
  FixedRoller,
  poi,
  runSubsystem,
} from "./helpers/fake_turn_context.ts";

function poiIntent(action: PoiIntent["action"], extra: Partial<PoiIntent> = {}): PoiIntent {
  return { action, name: null, description: null, reference_tags: null, ...extra };
}

function locIntent(
  action: LocationIntent["action"],
  extra: Partial<LocationIntent> = {},
): LocationIntent {
  return { action, location_id: null, location_display_name: null, minor_location: null, ...extra };
}

const known = [
  poi({ name: "Old Mill", tags: ["mill", "river"] }),
  poi({ name: "Crow Hill", tags: ["hill", "Ruins"] }),
];

async function poiSubsystem(env: Record<string, string> = {}, pois = known) {
  const store = new FakePoiStore(pois);
  const host = await new CollectingHost(env, store).load(policyPlugin, poiPlugin);
  return { host, store, sub: host.subsystem<PoiIntent>("poi") };
}

const pass = () => new FixedRoller({ poi: 0 });
const fail = () => new FixedRoller({ poi: 0.99 });

Deno.test("the poi plugin registers poi_intent and location_intent in one stage", async () => {
  const { host } = await poiSubsystem();
  assert.equal(host.subsystems.length, 1, "one subsystem, so one `stage poi` span");
  assert.equal(host.stages.length, 0);
  assert.deepEqual([...host.intents.keys()].sort(), ["location_intent", "poi_intent"]);
  assert.equal(host.intents.get(LOCATION_INTENT_KEY), LocationIntentSchema);
  assert.ok(PoiIntentSchema.safeParse(poiIntent("create", { reference_tags: ["a"] })).success);
  assert.ok(
    !PoiIntentSchema.safeParse({ action: "create", name: "x" }).success,
    "keys are required",
  );
  assert.ok(LocationIntentSchema.safeParse(locIntent("leave_poi")).success);
  assert.ok(!LocationIntentSchema.safeParse({ ...locIntent("none"), action: "teleport" }).success);
});

Deno.test("poi gate", async (t) => {
  const { sub } = await poiSubsystem({ DM_POI_TRIGGER_PROB: "0.2", DM_POI_COOLDOWN_TURNS: "3" });
  await t.step("ineligible during the cooldown, without rolling", () => {
    const roller = new FixedRoller({ poi: 0 });
    const d = sub.gate!(fakeTurnContext({
      context: characterContext({ turns_since_last_poi: 2 }),
      roller,
    })) as PoiDecision;
    assert.equal(d.eligible, false);
    assert.equal(d.allowed, false);
    assert.equal(d.reason, "cooldown");
    assert.deepEqual(roller.rolled, []);
  });
  await t.step("eligible at the cooldown; the roll decides", () => {
    const context = characterContext({ turns_since_last_poi: 3 });
    const passed = sub.gate!(fakeTurnContext({ context, roller: new FixedRoller({ poi: 0.19 }) }));
    assert.equal(passed.eligible, true);
    assert.equal(passed.allowed, true);
    const failed = sub.gate!(fakeTurnContext({ context, roller: new FixedRoller({ poi: 0.2 }) }));
    assert.equal(failed.eligible, true);
    assert.equal(failed.allowed, false);
  });
  await t.step("an active quest does not matter", async () => {
    const { sub } = await poiSubsystem({ DM_POI_TRIGGER_PROB: "1" });
    const ctx = fakeTurnContext({ roller: pass() });
    assert.equal(sub.gate!(ctx).allowed, true);
  });
});

Deno.test("poi create", async (t) => {
  const { sub } = await poiSubsystem();
  await t.step(
    "runs when the roll passed, cleans tags, and makes it the current place",
    async () => {
      const ctx = fakeTurnContext({
        roller: pass(),
        intents: {
          poi_intent: poiIntent("create", {
            name: " Sunken Chapel ",
            description: "Half under water.",
            reference_tags: ["ruin", " RUIN ", "", "water", "x".repeat(80)],
          }),
        },
      });
      assert.deepEqual(await runSubsystem(sub, ctx), {
        action: "created",
        success: true,
        error: null,
      });
      const [[created]] = ctx.writer.of("createPoi") as [[NewPoi]];
      assert.equal(created.name, "Sunken Chapel");
      assert.equal(created.description, "Half under water.");
      assert.deepEqual(created.tags, ["ruin", "water", "x".repeat(50)]);
      const [[location]] = ctx.writer.of("setLocation") as [[Location]];
      assert.match(location.poi_id ?? "", /^p-new-/);
      assert.equal(location.id, "town:elm", "the rest of the location is kept");
      const [[plugin, state]] = ctx.writer.of("putPluginState");
      assert.equal(plugin, "poi");
      assert.deepEqual((state as { recent: { name: string }[] }).recent.map((r) => r.name), [
        "Sunken Chapel",
      ]);
    },
  );
  await t.step("is skipped when the gate did not allow it", async () => {
    const ctx = fakeTurnContext({
      roller: fail(),
      intents: { poi_intent: poiIntent("create", { name: "Sunken Chapel", description: "d" }) },
    });
    assert.deepEqual(await runSubsystem(sub, ctx), {
      action: "skipped",
      success: false,
      error: POI_NOT_ALLOWED,
    });
    assert.equal(ctx.writer.calls.length, 0);
  });
  await t.step("is cut to the limits, with at most 20 tags", async () => {
    const tags = Array.from({ length: 30 }, (_, i) => `tag${i}`);
    const ctx = fakeTurnContext({
      roller: pass(),
      intents: {
        poi_intent: poiIntent("create", {
          name: "n".repeat(300),
          description: "d".repeat(3000),
          reference_tags: tags,
        }),
      },
    });
    await runSubsystem(sub, ctx);
    const [[created]] = ctx.writer.of("createPoi") as [[NewPoi]];
    assert.equal(created.name.length, 200);
    assert.equal(created.description.length, 2000);
    assert.deepEqual(created.tags, tags.slice(0, 20));
  });
  await t.step("blank name and description get fallbacks", async () => {
    const ctx = fakeTurnContext({
      roller: pass(),
      intents: { poi_intent: poiIntent("create", { name: "  ", description: null }) },
    });
    await runSubsystem(sub, ctx);
    const [[created]] = ctx.writer.of("createPoi") as [[NewPoi]];
    assert.equal(created.name, "Elmstead", "the current location's name");
    assert.ok(created.description.trim().length > 0);
    assert.deepEqual(created.tags, []);
  });
  await t.step("a place that already exists is not created twice", async () => {
    const ctx = fakeTurnContext({
      roller: pass(),
      intents: { poi_intent: poiIntent("create", { name: "old mill", description: "again" }) },
    });
    assert.equal((await runSubsystem(sub, ctx)).action, "referenced");
    assert.equal(ctx.writer.of("createPoi").length, 0);
    assert.equal((ctx.writer.of("setLocation")[0][0] as Location).poi_id, "p-old-mill");
  });
});

Deno.test("poi reference", async (t) => {
  const { sub } = await poiSubsystem();
  const cases: [string, Partial<PoiIntent>, string][] = [
    ["by name, ignoring case", { name: "CROW HILL" }, "p-crow-hill"],
    ["by tag, ignoring case", { name: null, reference_tags: ["ruins"] }, "p-crow-hill"],
    ["name wins over tags", { name: "Old Mill", reference_tags: ["hill"] }, "p-old-mill"],
    [
      "unknown name falls back to tags",
      { name: "The Mill House", reference_tags: ["mill"] },
      "p-old-mill",
    ],
  ];
  for (const [name, extra, expected] of cases) {
    await t.step(name, async () => {
      // The roll failing shows a reference is not gated.
      const ctx = fakeTurnContext({
        roller: fail(),
        intents: { poi_intent: poiIntent("reference", extra) },
      });
      assert.deepEqual(await runSubsystem(sub, ctx), {
        action: "referenced",
        success: true,
        error: null,
      });
      assert.equal(ctx.writer.of("createPoi").length, 0, "never a duplicate");
      assert.equal((ctx.writer.of("setLocation")[0][0] as Location).poi_id, expected);
    });
  }
  await t.step("no match is skipped with an error", async () => {
    const ctx = fakeTurnContext({
      intents: {
        poi_intent: poiIntent("reference", { name: "Atlantis", reference_tags: ["sea"] }),
      },
    });
    const change = await runSubsystem(sub, ctx);
    assert.equal(change.action, "skipped");
    assert.equal(change.success, false);
    assert.ok(change.error);
    assert.equal(ctx.writer.calls.length, 0);
  });
  await t.step("a reference with neither name nor tags is skipped", async () => {
    const ctx = fakeTurnContext({
      intents: { poi_intent: poiIntent("reference", { reference_tags: [" "] }) },
    });
    assert.equal((await runSubsystem(sub, ctx)).action, "skipped");
  });
  await t.step("referencing the place the character is at writes no location", async () => {
    const ctx = fakeTurnContext({
      context: characterContext({
        character: {
          location: { id: "mill", display_name: "Mill", minor: null, poi_id: "p-old-mill" },
        },
      }),
      intents: { poi_intent: poiIntent("reference", { name: "Old Mill" }) },
    });
    assert.equal((await runSubsystem(sub, ctx)).action, "referenced");
    assert.equal(ctx.writer.of("setLocation").length, 0);
  });
});

Deno.test("location intent", async (t) => {
  const { sub } = await poiSubsystem();
  const atMill: Location = {
    id: "mill",
    display_name: "The Mill",
    minor: "the yard",
    poi_id: "p-old-mill",
  };
  const run = async (location: Location, intents: Record<string, unknown> | null) => {
    const ctx = fakeTurnContext({
      context: characterContext({ character: { location } }),
      intents,
    });
    await runSubsystem(sub, ctx);
    return { ctx, written: ctx.writer.of("setLocation").map((a) => a[0] as Location) };
  };
  await t.step("update_minor inside the same location keeps the place", async () => {
    const { ctx, written } = await run(atMill, {
      location_intent: locIntent("update_minor", { minor_location: "the loft" }),
    });
    assert.deepEqual(written, [{ ...atMill, minor: "the loft" }]);
    assert.deepEqual(ctx.changes[LOCATION_CHANGE_KEY], {
      action: "updated",
      success: true,
      error: null,
    });
  });
  await t.step("moving to another location leaves the place", async () => {
    const { written } = await run(atMill, {
      location_intent: locIntent("update_minor", {
        location_id: "road:north",
        location_display_name: "North Road",
        minor_location: "a milestone",
      }),
    });
    assert.deepEqual(written, [{
      id: "road:north",
      display_name: "North Road",
      minor: "a milestone",
      poi_id: null,
    }]);
  });
  await t.step("leave_poi clears poi_id", async () => {
    const { ctx, written } = await run(atMill, { location_intent: locIntent("leave_poi") });
    assert.deepEqual(written, [{ ...atMill, poi_id: null }]);
    assert.equal(ctx.changes[LOCATION_CHANGE_KEY].action, "left_poi");
  });
  await t.step("leave_poi when at no place is skipped", async () => {
    const { ctx, written } = await run({ ...atMill, poi_id: null }, {
      location_intent: locIntent("leave_poi"),
    });
    assert.deepEqual(written, []);
    assert.equal(ctx.changes[LOCATION_CHANGE_KEY].action, "skipped");
    assert.equal(ctx.changes[LOCATION_CHANGE_KEY].success, false);
  });
  await t.step("an update that changes nothing writes nothing", async () => {
    const { ctx, written } = await run(atMill, {
      location_intent: locIntent("update_minor", {
        location_id: "mill",
        minor_location: "the yard",
      }),
    });
    assert.deepEqual(written, []);
    assert.equal(ctx.changes[LOCATION_CHANGE_KEY].action, "none");
  });
  await t.step("none and a missing intent write nothing", async () => {
    for (
      const intents of [{}, { location_intent: locIntent("none", { location_id: "elsewhere" }) }]
    ) {
      const { ctx, written } = await run(atMill, intents);
      assert.deepEqual(written, []);
      assert.deepEqual(ctx.changes[LOCATION_CHANGE_KEY], {
        action: "none",
        success: null,
        error: null,
      });
    }
  });
  await t.step("a new place and a move in one turn make one location write", async () => {
    const ctx = fakeTurnContext({
      roller: pass(),
      intents: {
        poi_intent: poiIntent("create", { name: "Sunken Chapel", description: "d" }),
        location_intent: locIntent("update_minor", {
          location_id: "chapel:sunken",
          location_display_name: "Sunken Chapel",
          minor_location: "the nave",
        }),
      },
    });
    assert.equal((await runSubsystem(sub, ctx)).action, "created");
    const written = ctx.writer.of("setLocation").map((a) => a[0] as Location);
    assert.equal(written.length, 1);
    assert.equal(written[0].id, "chapel:sunken");
    assert.equal(written[0].minor, "the nave");
    assert.match(written[0].poi_id ?? "", /^p-new-/);
  });
  await t.step("a failed POI write still moves the character, then throws", async () => {
    const ctx = fakeTurnContext({
      roller: pass(),
      intents: {
        poi_intent: poiIntent("create", { name: "Sunken Chapel", description: "d" }),
        location_intent: locIntent("update_minor", { minor_location: "the gate" }),
      },
    });
    ctx.writer.failing.add("createPoi");
    await assert.rejects(() => runSubsystem(sub, ctx), /createPoi failed/);
    assert.equal((ctx.writer.of("setLocation")[0][0] as Location).minor, "the gate");
    assert.equal(ctx.changes[LOCATION_CHANGE_KEY].action, "updated");
  });
  await t.step("a failed location write is reported in location_change", async () => {
    const at = fakeTurnContext({
      context: characterContext({ character: { location: atMill } }),
      intents: { location_intent: locIntent("leave_poi") },
    });
    at.writer.failing.add("setLocation");
    assert.equal((await runSubsystem(sub, at)).action, "none");
    assert.deepEqual(at.changes[LOCATION_CHANGE_KEY], {
      action: "left_poi",
      success: false,
      error: "setLocation failed (test)",
    });
  });
  await t.step("an invalid model output writes nothing", async () => {
    const { ctx, written } = await run(atMill, null);
    assert.deepEqual(written, []);
    assert.equal(ctx.changes[LOCATION_CHANGE_KEY].action, "none");
  });
});

Deno.test("poi prompt section names the location and places, and only the hint", async () => {
  const { sub } = await poiSubsystem({ DM_POI_TRIGGER_PROB: "0.42" });
  const ctx = fakeTurnContext({
    roller: new FixedRoller({ poi: 0.1 }),
    context: characterContext({
      character: {
        location: { id: "mill", display_name: "The Mill", minor: "the loft", poi_id: "p-old-mill" },
      },
      plugin_state: {
        poi: {
          recent: [{ poi_id: "p-old-mill", name: "Old Mill" }, {
            poi_id: "p-crow-hill",
            name: "Crow Hill",
          }],
        },
      },
    }),
  });
  ctx.policy.poi = sub.gate!(ctx);
  const section = sub.promptSection!(ctx)!;
  assert.match(section, /Location: The Mill \[mill\], the loft/);
  assert.match(section, /At place: Old Mill/);
  assert.match(section, /Known places: Old Mill; Crow Hill/);
  assert.match(section, /New place: ALLOWED/);
  assert.doesNotMatch(section, /0\.42|0\.1/);
  const closed = fakeTurnContext({ roller: fail() });
  closed.policy.poi = sub.gate!(closed);
  assert.match(sub.promptSection!(closed)!, /New place: NOT ALLOWED/);
});

Deno.test("remembered places stay a short newest-first list", async () => {
  const { sub } = await poiSubsystem({}, [poi({ name: "Crow Hill" })]);
  const recent = Array.from({ length: 8 }, (_, i) => ({ poi_id: `p-${i}`, name: `Place ${i}` }));
  const ctx = fakeTurnContext({
    context: characterContext({ plugin_state: { poi: { recent } } }),
    intents: { poi_intent: poiIntent("reference", { name: "Crow Hill" }) },
  });
  await runSubsystem(sub, ctx);
  const [[, state]] = ctx.writer.of("putPluginState") as [[string, { recent: { name: string }[] }]];
  assert.equal(state.recent.length, 8);
  assert.equal(state.recent[0].name, "Crow Hill");
  assert.equal(state.recent[7].name, "Place 6");
});
