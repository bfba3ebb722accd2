/**
 * Combat and the character's health. Combat has no policy gate: the model
 * starts, continues and ends fights, and this plugin keeps the state
 * consistent (1–5 enemies, continue/end only in combat). The player's
 * status follows a fixed transition table in which Dead is final.
 *
 * Besides `combat_change`, every turn reports `status_change` in the
 * summary, as `Healthy->Wounded`-style actions or `none`.
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
import type { CharacterStatus, CombatState, Enemy } from "../../src/store/port.ts";
import type { ChangeResult } from "../../src/shared/events.ts";
import { dmMetrics } from "../../src/telemetry/metrics.ts";

/** Key of the combat intent in the outcome. */
export const COMBAT_INTENT_KEY = "combat_intent";

/** An enemy as the model describes it. */
export const EnemyDescriptorSchema = z.object({
  name: z.string().nullable(),
  description: z.string().nullable(),
  threat: z.string().nullable(),
});

/** The combat intent of the outcome (OUTCOME_VERSION 1). */
export const CombatIntentSchema = z.object({
  action: z.enum(["none", "start", "continue", "end"]),
  enemies: z.array(EnemyDescriptorSchema).nullable(),
  combat_notes: z.string().nullable(),
  player_status: z.enum(["Healthy", "Wounded", "Dead"]).nullable(),
});

/** A combat intent. */
export type CombatIntent = z.output<typeof CombatIntentSchema>;

/** Actions reported in `combat_change`. */
export type CombatChangeAction = "started" | "continued" | "ended" | "skipped" | "none";

/** Summary key of the player's status change. */
export const STATUS_CHANGE_KEY = "status_change";

/** Most enemies one fight holds; extra ones the model names are dropped. */
export const MAX_ENEMIES = 5;

/** Allowed status transitions. Dead has none: it is final. */
export const STATUS_TRANSITIONS: Readonly<Record<CharacterStatus, readonly CharacterStatus[]>> = {
  Healthy: ["Wounded", "Dead"],
  Wounded: ["Healthy", "Dead"],
  Dead: [],
};

const LIMITS = { name: 100, description: 500, threat: 100, notes: 1000 } as const;

function clean(text: string | null | undefined, max: number): string | null {
  const trimmed = (text ?? "").trim();
  if (trimmed === "") return null;
  return trimmed.length <= max ? trimmed : trimmed.slice(0, max);
}

function combatResult(action: CombatChangeAction, error: string | null = null): SubsystemResult {
  dmMetrics.subsystemWrite("combat", action);
  if (action === "none") return { action, success: null, error: null };
  return { action, success: action !== "skipped", error };
}

/** Build the enemies of a new fight: at most {@link MAX_ENEMIES}, each with a fresh id. */
export function buildEnemies(descriptors: CombatIntent["enemies"]): Enemy[] {
  return (descriptors ?? []).slice(0, MAX_ENEMIES).map((d, i) => ({
    enemy_id: crypto.randomUUID(),
    name: clean(d.name, LIMITS.name) ?? `Enemy ${i + 1}`,
    description: clean(d.description, LIMITS.description),
    threat: clean(d.threat, LIMITS.threat),
    status: "Healthy",
  }));
}

async function applyCombatAction(
  ctx: TurnContext,
  intent: CombatIntent | null,
): Promise<SubsystemResult> {
  const combat = ctx.context.combat;
  switch (intent?.action ?? "none") {
    case "none":
      return combatResult("none");
    case "start": {
      if (combat) return combatResult("skipped", "already in combat");
      const enemies = buildEnemies(intent?.enemies ?? null);
      if (enemies.length === 0) {
        return combatResult("skipped", "combat start needs at least one enemy");
      }
      const state: CombatState = {
        combat_id: crypto.randomUUID(),
        turn: 1,
        enemies,
        notes: clean(intent?.combat_notes, LIMITS.notes),
        started_at: new Date().toISOString(),
      };
      await ctx.writer.setCombat(state);
      return combatResult("started");
    }
    case "continue":
      if (!combat) return combatResult("skipped", "not in combat");
      await ctx.writer.setCombat({
        ...combat,
        turn: combat.turn + 1,
        notes: clean(intent?.combat_notes, LIMITS.notes) ?? combat.notes,
      });
      return combatResult("continued");
    case "end":
      if (!combat) return combatResult("skipped", "not in combat");
      await ctx.writer.setCombat(null);
      return combatResult("ended");
  }
}

async function applyStatus(
  ctx: TurnContext,
  wanted: CharacterStatus | null,
): Promise<ChangeResult> {
  const current = ctx.context.character.status;
  if (wanted === null || wanted === current) return { action: "none", success: null, error: null };
  const action = `${current}->${wanted}`;
  if (!STATUS_TRANSITIONS[current].includes(wanted)) {
    dmMetrics.subsystemWrite("status", "skipped");
    return {
      action: "skipped",
      success: false,
      error: current === "Dead" ? "Dead is final" : `status change ${action} not allowed`,
    };
  }
  try {
    await ctx.writer.setStatus(wanted);
  } catch (error) {
    dmMetrics.subsystemWrite("status", "error");
    return {
      action,
      success: false,
      error: error instanceof Error ? error.message : String(error),
    };
  }
  dmMetrics.subsystemWrite("status", "changed");
  return { action, success: true, error: null };
}

/**
 * Apply a combat intent and its player status. The status is applied
 * whatever happens to the combat write, and a failed combat write is
 * re-thrown afterwards so the host records it.
 */
export async function applyCombat(
  ctx: TurnContext,
  intent: CombatIntent | null,
  _decision: GateDecision | null,
): Promise<SubsystemResult> {
  if (ctx.outcome !== null && ctx.outcome.intents === null) {
    ctx.changes[STATUS_CHANGE_KEY] = { action: "none", success: null, error: null };
    return combatResult("none");
  }
  let failure: unknown = null;
  let outcome: SubsystemResult | null = null;
  try {
    outcome = await applyCombatAction(ctx, intent);
  } catch (error) {
    dmMetrics.subsystemWrite("combat", "error");
    failure = error;
  }
  ctx.changes[STATUS_CHANGE_KEY] = await applyStatus(ctx, intent?.player_status ?? null);
  if (outcome === null) throw failure;
  return outcome;
}

/** The combat section of the user prompt: the character's status and the fight, if any. */
export function combatSection(ctx: TurnContext): string {
  const lines = [`Player status: ${ctx.context.character.status}`];
  const combat = ctx.context.combat;
  if (combat) {
    lines.push(`In combat (round ${combat.turn}) against:`);
    for (const e of combat.enemies) {
      const threat = e.threat ? `, threat ${clean(e.threat, 40)}` : "";
      lines.push(`- ${clean(e.name, 60) ?? "Enemy"} (${e.status}${threat})`);
    }
  } else {
    lines.push("Not in combat");
  }
  return lines.join("\n");
}

const INSTRUCTIONS = [
  "combat_intent: start with 1-5 enemies when a fight begins, continue each round, end when it is over.",
  "player_status: null unless the player's status changes.",
  "Allowed: Healthy->Wounded, Wounded->Healthy, Wounded->Dead, Healthy->Dead.",
  "Dead is final: no revival; on death write a closing narrative and set every other action to none.",
].join(" ");

/** The combat plugin. */
export default definePlugin({
  name: "combat",
  version: "1.0.0",
  setup(host) {
    host.addSubsystem<CombatIntent>({
      name: "combat",
      intentKey: COMBAT_INTENT_KEY,
      intentSchema: CombatIntentSchema,
      summaryKey: "combat_change",
      instructions: INSTRUCTIONS,
      promptSection: combatSection,
      promptOrder: 400,
      apply: applyCombat,
      after: ["quest"],
      before: ["poi"],
    });
  },
});
