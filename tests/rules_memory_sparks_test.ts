import assert from "node:assert/strict";
import memorySparks, { type MemorySparkDecision } from "../plugins/memory-sparks/mod.ts";
import policyPlugin from "../plugins/policy/mod.ts";
import {
  CollectingHost,
  FakePoiStore,
  fakeTurnContext,
  FixedRoller,
  poi,
} from "./helpers/fake_turn_context.ts";

const places = [
  poi({ name: "Old Mill" }),
  poi({ name: "Crow Hill" }),
  poi({ name: "Sunken Chapel" }),
  poi({
    name: "Fen Gate",
  }),
];

async function setup(env: Record<string, string> = {}, store = new FakePoiStore(places)) {
  const host = await new CollectingHost(env, store).load(policyPlugin, memorySparks);
  assert.equal(host.stages.length, 1);
  return { host, stage: host.stages[0], store };
}

Deno.test("memory sparks is one prepare stage that skips on error", async () => {
  const { stage } = await setup();
  assert.equal(stage.phase, "prepare");
  assert.equal(stage.onError, "skip");
  assert.equal(stage.name ?? "memory-sparks", "memory-sparks");
});

Deno.test("a passed roll recalls memory_spark_count places of the turn's owner", async () => {
  const { host, stage, store } = await setup({
    DM_MEMORY_SPARK_PROB: "0.2",
    DM_MEMORY_SPARK_COUNT: "3",
  });
  const ctx = fakeTurnContext({ roller: new FixedRoller({ memory_spark: 0.19 }) });
  await stage.run(ctx);
  assert.deepEqual(store.randomCalls, [{ owner_id: "u-1", character_id: "c-1", n: 3 }]);
  assert.deepEqual(ctx.memory_sparks.map((p) => p.name), [
    "Old Mill",
    "Crow Hill",
    "Sunken Chapel",
  ]);
  const decision = ctx.policy.memory_spark as MemorySparkDecision;
  assert.equal(decision.eligible, true);
  assert.equal(decision.allowed, true);
  assert.equal(decision.probability, 0.2);
  assert.equal(decision.roll, 0.19);
  assert.equal(decision.recalled, 3);
  const section = host.sections[0].build(ctx)!;
  assert.match(section, /^Memories that may resurface:/);
  assert.match(section, /- Old Mill: About Old Mill\./);
  assert.match(section, /Sunken Chapel/);
  assert.doesNotMatch(section, /Fen Gate/);
  assert.doesNotMatch(section, /0\.2|0\.19/, "no numbers reach the prompt");
});

Deno.test("a failed roll recalls nothing and adds no prompt section", async () => {
  const { host, stage, store } = await setup({ DM_MEMORY_SPARK_PROB: "0.2" });
  // The boundary: a roll equal to the probability fails (rolls pass when strictly below).
  const ctx = fakeTurnContext({ roller: new FixedRoller({ memory_spark: 0.2 }) });
  await stage.run(ctx);
  assert.equal(store.randomCalls.length, 0);
  assert.deepEqual(ctx.memory_sparks, []);
  assert.equal((ctx.policy.memory_spark as MemorySparkDecision).allowed, false);
  assert.equal(host.sections[0].build(ctx), null);
});

Deno.test("a failed recall does not stop the turn and is recorded", async () => {
  const store = new FakePoiStore(places);
  store.failRandom = true;
  const { host, stage } = await setup({ DM_MEMORY_SPARK_PROB: "1" }, store);
  const ctx = fakeTurnContext({
    roller: new FixedRoller({ memory_spark: 0.5 }),
    logger: host.logger,
  });
  await stage.run(ctx); // must not throw
  assert.deepEqual(ctx.memory_sparks, []);
  const decision = ctx.policy.memory_spark as MemorySparkDecision;
  assert.equal(decision.allowed, true);
  assert.equal(decision.recalled, 0);
  assert.match(decision.recall_error ?? "", /store unavailable/);
  assert.ok(host.lines.some((l) => l.msg === "memory_spark_recall_failed" && l.level === "warn"));
});

Deno.test("probability 0 never recalls, probability 1 always does", async () => {
  for (const [prob, expected] of [["0", 0], ["1", 3]] as const) {
    const { stage, store } = await setup({ DM_MEMORY_SPARK_PROB: prob });
    for (const roll of [0, 0.5, 0.999999]) {
      const ctx = fakeTurnContext({ roller: new FixedRoller({ memory_spark: roll }) });
      await stage.run(ctx);
      assert.equal(ctx.memory_sparks.length, expected, `prob ${prob} roll ${roll}`);
    }
    assert.equal(store.randomCalls.length, expected === 0 ? 0 : 3);
  }
});

Deno.test("the store returning more places than asked is cut to the count", async () => {
  const greedy = new FakePoiStore(places);
  greedy.randomPois = () => Promise.resolve(places);
  const { stage } = await setup({ DM_MEMORY_SPARK_PROB: "1", DM_MEMORY_SPARK_COUNT: "2" }, greedy);
  const ctx = fakeTurnContext({ roller: new FixedRoller({ memory_spark: 0 }) });
  await stage.run(ctx);
  assert.equal(ctx.memory_sparks.length, 2);
});
