/**
 * `llm-stream`: calls the model and streams only prose to clients. Model
 * deltas pass through an incremental JSON reader that emits the decoded text
 * of the top-level `narrative` string, so players never see JSON syntax.
 *
 * @module
 */
import { definePlugin, type TurnContext } from "../../src/plugin/api.ts";
import { DmError } from "../../src/errors.ts";
import type { LlmProvider, SceneFacts } from "../../src/llm/provider.ts";
import { NarrativeReader } from "../../src/llm/narrative_reader.ts";
import type { TokenUsage } from "../../src/store/port.ts";

/** Facts for providers that do not read prose (the scripted storyteller). */
export function sceneFacts(ctx: TurnContext): SceneFacts {
  const c = ctx.context;
  const allowed: Record<string, boolean> = {};
  for (const [name, decision] of Object.entries(ctx.policy)) {
    const d = decision as { allowed?: unknown } | null;
    if (d && typeof d.allowed === "boolean") allowed[name] = d.allowed;
  }
  return {
    user_action: ctx.user_action,
    character_name: c.character.name,
    location: c.character.location.display_name ?? c.character.location.id,
    in_combat: c.combat !== null,
    active_quest: c.quest?.title ?? null,
    allowed,
    sparks: ctx.memory_sparks.map((p) => p.name),
    intro: false,
  };
}

async function generate(llm: LlmProvider, maxTokens: number, ctx: TurnContext): Promise<void> {
  const { system, prompt } = ctx.buildPrompt();
  const reader = new NarrativeReader();
  let raw = "";
  let usage: TokenUsage | null = null;
  const stream = llm.stream({
    system,
    prompt,
    schema: { name: "dungeon_master_outcome", json: ctx.outcomeJsonSchema },
    scene: sceneFacts(ctx),
    max_output_tokens: maxTokens,
    signal: ctx.signal,
  });
  for await (const chunk of stream) {
    if (chunk.type === "usage") {
      usage = chunk.usage;
      continue;
    }
    raw += chunk.text;
    const prose = reader.push(chunk.text);
    if (prose !== "") ctx.emitToken(prose);
  }
  if (raw.trim() === "") throw new DmError("llm_response_error", "The model returned no text.");
  ctx.span.setAttribute("dm.llm.output_chars", raw.length);
  ctx.generation = { raw, streamed: reader.narrative, usage };
}

/** The `llm-stream` plugin. */
export default definePlugin({
  name: "llm-stream",
  setup(host) {
    host.addStage({
      phase: "generate",
      onError: "fail",
      run: (ctx) => generate(host.llm, host.config.DM_LLM_MAX_OUTPUT_TOKENS, ctx),
    });
  },
});
