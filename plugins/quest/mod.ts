/**
 * Quests. A quest may start only on turns the policy gate allows: no quest is
 * active, at least `quest_cooldown_turns` turns have passed since the last
 * one started, and the `quest` roll passed. The model proposes
 * start/advance/complete/abandon; this plugin decides what is written.
 *
 * When the roll passed and memory sparks were recalled, a second roll may tie
 * the new quest to one of those places.
 *
 * @module
 */
import { z } from "zod";
import {
  definePlugin,
  type GateDecision,
  type SubsystemResult,
  type TurnContext,
} from "../../src/plugin/api.ts";
import type { Poi } from "../../src/store/port.ts";
import { dmMetrics } from "../../src/telemetry/metrics.ts";
import { policyForTurn, policyRef } from "../policy/mod.ts";

/** Key of the quest intent in the outcome. */
export const QUEST_INTENT_KEY = "quest_intent";

/**
 * Optional quest facts. Known nullable fields rather than a free-form object,
 * because OpenAI strict mode can only emit objects whose keys are all listed.
 */
export const QuestDetailsSchema = z.object({
  objective: z.string().nullable(),
  reward: z.string().nullable(),
  difficulty: z.string().nullable(),
});

/** The quest intent of the outcome (OUTCOME_VERSION 1). */
export const QuestIntentSchema = z.object({
  action: z.enum(["none", "start", "advance", "complete", "abandon"]),
  quest_title: z.string().nullable(),
  quest_summary: z.string().nullable(),
  quest_details: QuestDetailsSchema.nullable(),
  progress_update: z.string().nullable(),
});

/** A quest intent. */
export type QuestIntent = z.output<typeof QuestIntentSchema>;

/** Actions reported in `quest_change`. */
export type QuestChangeAction =
  | "started"
  | "advanced"
  | "completed"
  | "abandoned"
  | "skipped"
  | "none";

/** The quest gate's decision, stored at `ctx.policy.quest`. */
export interface QuestDecision extends GateDecision {
  /** Why the quest was not eligible, when it was not. */
  reason: "active_quest" | "cooldown" | null;
  turns_since_last_quest: number;
  cooldown_turns: number;
  /** The place the new quest is tied to, chosen by the quest→POI reference roll. */
  poi_reference: { poi_id: string; name: string } | null;
  /** The quest→POI reference roll, when it was made. */
  poi_reference_roll: number | null;
}

/** Error reported when the model starts a quest on a turn the gate did not allow. */
export const QUEST_NOT_ALLOWED = "quest not allowed this turn";

const LIMITS = { title: 200, summary: 2000, detail: 500, progress: 1000 } as const;

function clean(text: string | null | undefined, max: number): string | null {
  const trimmed = (text ?? "").trim();
  if (trimmed === "") return null;
  return trimmed.length <= max ? trimmed : trimmed.slice(0, max);
}

function fallbackQuest(poi: Poi | null): { title: string; summary: string } {
  if (poi) {
    return {
      title: clean(`Return to ${poi.name}`, LIMITS.title)!,
      summary: clean(`Something draws the hero back to ${poi.name}.`, LIMITS.summary)!,
    };
  }
  return {
    title: "An Unexpected Calling",
    summary: "Something in the world calls for the hero's attention.",
  };
}

function cleanDetails(details: QuestIntent["quest_details"]): Record<string, unknown> | null {
  if (!details) return null;
  const out: Record<string, string> = {};
  for (const key of ["objective", "reward", "difficulty"] as const) {
    const value = clean(details[key], LIMITS.detail);
    if (value !== null) out[key] = value;
  }
  return Object.keys(out).length > 0 ? out : null;
}

/** Decide whether a quest may start this turn. Rolls `quest`, then maybe `quest_poi_reference`. */
export function decideQuest(
  ctx: TurnContext,
  p: {
    quest_trigger_prob: number;
    quest_cooldown_turns: number;
    quest_poi_reference_probability: number;
  },
): QuestDecision {
  const active = ctx.context.quest !== null && ctx.context.quest.status === "active";
  const since = ctx.context.turns_since_last_quest;
  const base = {
    probability: p.quest_trigger_prob,
    turns_since_last_quest: since,
    cooldown_turns: p.quest_cooldown_turns,
    poi_reference: null,
    poi_reference_roll: null,
  };
  if (active || since < p.quest_cooldown_turns) {
    dmMetrics.policyRoll("quest", "ineligible");
    return {
      ...base,
      eligible: false,
      allowed: false,
      reason: active ? "active_quest" : "cooldown",
    };
  }
  const roll = ctx.rng.roll("quest");
  const allowed = roll < p.quest_trigger_prob;
  dmMetrics.policyRoll("quest", allowed ? "passed" : "failed");
  const decision: QuestDecision = { ...base, eligible: true, allowed, roll, reason: null };
  if (!allowed) return decision;
  if (ctx.memory_sparks.length === 0) {
    dmMetrics.policyRoll("quest_poi_reference", "ineligible");
    return decision;
  }
  const refRoll = ctx.rng.roll("quest_poi_reference");
  decision.poi_reference_roll = refRoll;
  const refPassed = refRoll < p.quest_poi_reference_probability;
  dmMetrics.policyRoll("quest_poi_reference", refPassed ? "passed" : "failed");
  if (refPassed) {
    const poi = ctx.rng.pick("quest_poi_pick", ctx.memory_sparks);
    if (poi) decision.poi_reference = { poi_id: poi.poi_id, name: poi.name };
  }
  return decision;
}

function asQuestDecision(decision: GateDecision | null): QuestDecision | null {
  return decision && "poi_reference" in decision ? decision as QuestDecision : null;
}

function result(action: QuestChangeAction, error: string | null = null): SubsystemResult {
  dmMetrics.subsystemWrite("quest", action);
  if (action === "none") return { action, success: null, error: null };
  return { action, success: action !== "skipped", error };
}

/** Apply a quest intent under the gate's decision. */
export async function applyQuest(
  ctx: TurnContext,
  intent: QuestIntent | null,
  gate: GateDecision | null,
): Promise<SubsystemResult> {
  // An invalid model output writes nothing (the narrative plugin still keeps
  // the prose): forcing a quest out of garbage would hide the failure.
  if (ctx.outcome !== null && ctx.outcome.intents === null) return result("none");
  const decision = asQuestDecision(gate);
  const active = ctx.context.quest !== null && ctx.context.quest.status === "active";
  const action = intent?.action ?? "none";
  try {
    if (decision?.allowed && !active && action !== "start") {
      // The dice promised a quest and the model did not give one: start a
      // fallback so the pacing the policy promises holds.
      return await startQuest(ctx, null, decision);
    }
    switch (action) {
      case "none":
        return result("none");
      case "start":
        if (active) return result("skipped", "a quest is already active");
        if (!decision?.allowed) return result("skipped", QUEST_NOT_ALLOWED);
        return await startQuest(ctx, intent, decision);
      case "advance": {
        if (!active) return result("skipped", "no active quest to advance");
        const progress = clean(intent?.progress_update, LIMITS.progress);
        if (progress === null) return result("skipped", "advance needs a progress_update");
        await ctx.writer.advanceQuest(progress);
        return result("advanced");
      }
      case "complete":
      case "abandon":
        if (!active) return result("skipped", `no active quest to ${action}`);
        await ctx.writer.endQuest(action === "complete" ? "completed" : "abandoned");
        return result(action === "complete" ? "completed" : "abandoned");
    }
  } catch (error) {
    // The host records the failed write in the summary; this keeps the metric.
    dmMetrics.subsystemWrite("quest", "error");
    throw error;
  }
}

async function startQuest(
  ctx: TurnContext,
  intent: QuestIntent | null,
  decision: QuestDecision,
): Promise<SubsystemResult> {
  const ref = decision.poi_reference;
  const poi = ref ? ctx.memory_sparks.find((p) => p.poi_id === ref.poi_id) ?? null : null;
  const fallback = fallbackQuest(poi);
  await ctx.writer.startQuest({
    title: clean(intent?.quest_title, LIMITS.title) ?? fallback.title,
    summary: clean(intent?.quest_summary, LIMITS.summary) ?? fallback.summary,
    details: cleanDetails(intent?.quest_details ?? null),
    poi_id: ref?.poi_id ?? null,
  });
  return result("started");
}

/** The quest section of the user prompt: the active quest, or whether one may start. */
export function questSection(ctx: TurnContext): string {
  const quest = ctx.context.quest;
  const decision = asQuestDecision(ctx.policy.quest as GateDecision | null);
  const lines: string[] = [];
  if (quest && quest.status === "active") {
    lines.push(
      `Active quest: ${clean(quest.title, 120) ?? "untitled"} - ${clean(quest.summary, 300) ?? ""}`,
    );
    const recent = quest.progress.slice(-3).map((p) => clean(p, 160)).filter((p) => p !== null);
    if (recent.length > 0) lines.push(`Progress: ${recent.join(" | ")}`);
  } else {
    lines.push("Active quest: none");
  }
  // The hint only: numbers and rolls stay operator-side.
  lines.push(`Quest: ${decision?.allowed ? "ALLOWED" : "NOT ALLOWED"}`);
  if (decision?.poi_reference) {
    lines.push(`Tie the new quest to: ${clean(decision.poi_reference.name, 80)}`);
  }
  return lines.join("\n");
}

const INSTRUCTIONS = [
  "quest_intent: use start (title, summary, details) only when the prompt says Quest: ALLOWED.",
  "With an active quest use advance (progress_update), complete or abandon; otherwise none.",
].join(" ");

/** The quest plugin. */
export default definePlugin({
  name: "quest",
  version: "1.0.0",
  dependsOn: ["policy"],
  setup(host) {
    const policy = host.use(policyRef);
    host.addSubsystem<QuestIntent>({
      name: "quest",
      intentKey: QUEST_INTENT_KEY,
      intentSchema: QuestIntentSchema,
      summaryKey: "quest_change",
      instructions: INSTRUCTIONS,
      promptSection: questSection,
      promptOrder: 300,
      gate: (ctx) => decideQuest(ctx, policyForTurn(policy, ctx)),
      apply: applyQuest,
      before: ["combat"],
    });
  },
});
