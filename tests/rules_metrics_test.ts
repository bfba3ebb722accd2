/**
 * The rule plugins record every roll as `dm_policy_rolls` and every write as
 * `dm_subsystem_writes`, read back through a real OTel metrics SDK.
 */
import assert from "node:assert/strict";
import { metrics } from "@opentelemetry/api";
import { AggregationTemporality, MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import policyPlugin from "../plugins/policy/mod.ts";
import memorySparks from "../plugins/memory-sparks/mod.ts";
import questPlugin from "../plugins/quest/mod.ts";
import combatPlugin from "../plugins/combat/mod.ts";
import poiPlugin from "../plugins/poi/mod.ts";
import {
  activeQuest,
  characterContext,
  CollectingHost,
  FakePoiStore,
  fakeTurnContext,
  FixedRoller,
  poi,
  runSubsystem,
} from "./helpers/fake_turn_context.ts";

class PullReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Counter points of `name` as "label=value,…" → count. */
async function counts(reader: MetricReader, name: string): Promise<Record<string, number>> {
  const { resourceMetrics } = await reader.collect();
  const out: Record<string, number> = {};
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (metric.descriptor.name !== name) continue;
      for (const point of metric.dataPoints) {
        const key = Object.entries(point.attributes).map(([k, v]) => `${k}=${v}`).sort().join(",");
        out[key] = point.value as number;
      }
    }
  }
  return out;
}

Deno.test("every roll and every write is counted", async () => {
  const reader = new PullReader();
  const provider = new MeterProvider({ readers: [reader] });
  metrics.setGlobalMeterProvider(provider);
  try {
    const host = await new CollectingHost(
      { DM_MEMORY_SPARK_PROB: "0.5", DM_QUEST_POI_REFERENCE_PROB: "0.5" },
      new FakePoiStore([poi({ name: "Old Mill" })]),
    ).load(policyPlugin, memorySparks, questPlugin, combatPlugin, poiPlugin);

    // Turn 1: spark passes, quest passes, reference passes, POI fails; the model starts a quest.
    const t1 = fakeTurnContext({
      roller: new FixedRoller({
        memory_spark: 0.1,
        quest: 0.1,
        quest_poi_reference: 0.1,
        poi: 0.9,
      }),
      intents: {
        quest_intent: {
          action: "start",
          quest_title: "T",
          quest_summary: "S",
          quest_details: null,
          progress_update: null,
        },
      },
    });
    await host.stages[0].run(t1);
    for (const name of ["quest", "combat", "poi"]) await runSubsystem(host.subsystem(name), t1);

    // Turn 2: spark fails, the quest is ineligible (active), the model ends a fight that is not on.
    const t2 = fakeTurnContext({
      context: characterContext({ quest: activeQuest(), turns_since_last_poi: 0 }),
      roller: new FixedRoller({ memory_spark: 0.9 }),
      intents: {
        combat_intent: {
          action: "end",
          enemies: null,
          combat_notes: null,
          player_status: "Wounded",
        },
      },
    });
    await host.stages[0].run(t2);
    for (const name of ["quest", "combat", "poi"]) await runSubsystem(host.subsystem(name), t2);

    assert.deepEqual(await counts(reader, "dm_policy_rolls"), {
      "policy=memory_spark,result=passed": 1,
      "policy=memory_spark,result=failed": 1,
      "policy=quest,result=passed": 1,
      "policy=quest,result=ineligible": 1,
      "policy=quest_poi_reference,result=passed": 1,
      "policy=poi,result=failed": 1,
      "policy=poi,result=ineligible": 1,
    });
    assert.deepEqual(await counts(reader, "dm_subsystem_writes"), {
      "result=started,subsystem=quest": 1,
      "result=none,subsystem=quest": 1,
      "result=none,subsystem=combat": 1,
      "result=skipped,subsystem=combat": 1,
      "result=changed,subsystem=status": 1,
      "result=none,subsystem=poi": 2,
    });
  } finally {
    metrics.disable();
    await provider.shutdown();
  }
});
