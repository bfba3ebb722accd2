/**
 * `outcome-parser`: validates the model's JSON against the outcome schema
 * assembled from every plugin's intents. Invalid output never fails a turn:
 * the narrative falls back (streamed prose, plausible raw prose, or an
 * apology line), intents become null, and the failure is counted.
 *
 * Whatever the narrative ends up being, the tokens sent to clients must add
 * up to it, so any missing tail is emitted here.
 *
 * @module
 */
import { definePlugin, type TurnContext } from "../../src/plugin/api.ts";
import { parseOutcome } from "../../src/turn/outcome.ts";
import { dmMetrics } from "../../src/telemetry/metrics.ts";

function parse(ctx: TurnContext): void {
  const generation = ctx.generation!;
  const result = parseOutcome(generation.raw, generation.streamed, ctx.outcomeSchema);
  let narrative = result.narrative;
  const streamed = generation.streamed;
  if (narrative.startsWith(streamed)) {
    ctx.emitToken(narrative.slice(streamed.length));
  } else {
    // Players already saw `streamed`; the record must not contradict them.
    narrative = streamed;
  }
  if (result.parse_error !== null) {
    dmMetrics.parseFailure();
    ctx.span.addEvent("parse_failure", { "dm.parse_error": result.parse_error.slice(0, 300) });
    ctx.logger.warn("outcome_parse_failure", { reason: result.parse_error.slice(0, 300) });
  }
  ctx.outcome = { narrative, intents: result.intents, parse_error: result.parse_error };
}

/** The `outcome-parser` plugin. */
export default definePlugin({
  name: "outcome-parser",
  dependsOn: ["llm-stream"],
  setup(host) {
    host.addStage({ phase: "parse", onError: "fail", run: parse });
  },
});
