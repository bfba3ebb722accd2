/**
 * Memory sparks: on some turns a few places the character discovered earlier
 * are recalled and offered to the model, so old places can come back into
 * the story (and a new quest can be tied to one of them).
 *
 * A `prepare` stage rolls `memory_spark` against the policy's
 * `memory_spark_probability`; on a pass it recalls `memory_spark_count`
 * random places into `ctx.memory_sparks`. A failed recall never stops the
 * turn: it is logged and recorded in the decision.
 *
 * @module
 */
import { definePlugin, type GateDecision, type TurnContext } from "../../src/plugin/api.ts";
import { dmMetrics } from "../../src/telemetry/metrics.ts";
import { policyForTurn, policyRef } from "../policy/mod.ts";

/** Key of the decision in `ctx.policy`. */
export const MEMORY_SPARK_POLICY = "memory_spark";

/** The memory-spark decision recorded in `ctx.policy.memory_spark`. */
export interface MemorySparkDecision extends GateDecision {
  /** Places recalled (0 when the roll failed or the recall failed). */
  recalled: number;
  /** Why the recall failed, when it did. */
  recall_error: string | null;
}

const MAX_DESCRIPTION = 160;

function clip(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

/** The prompt section listing this turn's sparks, or null when there are none. */
export function memorySparkSection(ctx: TurnContext): string | null {
  if (ctx.memory_sparks.length === 0) return null;
  const lines = ctx.memory_sparks.map((p) => {
    const description = p.description ? `: ${clip(p.description, MAX_DESCRIPTION)}` : "";
    return `- ${clip(p.name, 80)}${description}`;
  });
  return `Memories that may resurface:\n${lines.join("\n")}`;
}

/** The memory-sparks plugin. */
export default definePlugin({
  name: "memory-sparks",
  version: "1.0.0",
  dependsOn: ["policy"],
  setup(host) {
    const policy = host.use(policyRef);
    host.addStage({
      phase: "prepare",
      onError: "skip",
      async run(ctx) {
        const p = policyForTurn(policy, ctx);
        const roll = ctx.rng.roll(MEMORY_SPARK_POLICY);
        const allowed = roll < p.memory_spark_probability;
        const decision: MemorySparkDecision = {
          eligible: true,
          allowed,
          probability: p.memory_spark_probability,
          roll,
          recalled: 0,
          recall_error: null,
        };
        // Recorded before the recall so that even a failed recall leaves its decision.
        ctx.policy[MEMORY_SPARK_POLICY] = decision;
        dmMetrics.policyRoll(MEMORY_SPARK_POLICY, allowed ? "passed" : "failed");
        if (!allowed) return;
        try {
          const pois = await host.store.randomPois(
            ctx.user_id,
            ctx.character_id,
            p.memory_spark_count,
          );
          ctx.memory_sparks = pois.slice(0, p.memory_spark_count);
          decision.recalled = ctx.memory_sparks.length;
        } catch (error) {
          decision.recall_error = error instanceof Error ? error.message : String(error);
          ctx.logger.warn("memory_spark_recall_failed", {
            character_id: ctx.character_id,
            error,
          });
        }
      },
    });
    // Just before the quest section (300) so recalled places sit next to the quest hint.
    host.addPromptSection(250, memorySparkSection);
  },
});
