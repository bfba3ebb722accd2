/**
 * One pass of the turn pipeline with a zero-delay model: `engine.submit` →
 * the turn's result, through every built-in plugin, with the SQLite store in
 * memory and no HTTP. What is left is the service's own cost per turn.
 *
 * Run: `deno task bench:micro` (or `deno bench --allow-all bench/micro/pipeline_bench.ts`).
 *
 * Besides the `Deno.bench` figures (with spans recorded, and with the no-op
 * tracer of `OTEL_SDK_DISABLED`), a measurement outside the harness prints
 * the time per turn broken out by span: `submit` (load the character, begin
 * the turn) is timed directly, everything after it from the `turn`, `stage …`
 * and store spans an in-memory span processor collects.
 *
 * @module
 */
import { trace, type Tracer } from "@opentelemetry/api";
import {
  type ReadableSpan,
  type Span,
  type SpanProcessor,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import { type App, createApp } from "../../src/app.ts";
import { loadConfig } from "../../src/config.ts";
import { LOCAL_USER } from "../../src/http/auth.ts";
import { ZeroDelayLlm } from "../lib/zero_delay_llm.ts";

/** Adds up span durations by span name. */
class DurationsBySpan implements SpanProcessor {
  readonly totals = new Map<string, { count: number; ms: number }>();
  onStart(_span: Span): void {}
  onEnd(span: ReadableSpan): void {
    const [s, ns] = span.duration;
    const entry = this.totals.get(span.name) ?? { count: 0, ms: 0 };
    entry.count++;
    entry.ms += s * 1000 + ns / 1e6;
    this.totals.set(span.name, entry);
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const config = loadConfig({
  DM_SQLITE_PATH: ":memory:",
  DM_LOG_LEVEL: "error",
  DM_RNG_SEED: "bench",
  DM_TURN_RATE_PER_SECOND: "1000000000",
  DM_TURN_BURST: "1000",
  DM_TURN_RATE_PER_USER_PER_SECOND: "1000000000",
});

async function setup(tracer: Tracer): Promise<{ app: App; characterId: string }> {
  const app = await createApp({ config, llm: new ZeroDelayLlm(30), tracer });
  const { character } = await app.engine.createCharacter(LOCAL_USER, {
    name: "Bench",
    race: "Elf",
    class_name: "Ranger",
    custom_prompt: null,
  });
  return { app, characterId: character.character_id };
}

let n = 0;
async function turn(app: App, characterId: string): Promise<number> {
  const t0 = performance.now();
  const handle = await app.engine.submit({
    user_id: LOCAL_USER,
    character_id: characterId,
    user_action: `I search the room (${n++})`,
    transport: "http",
  });
  const submitMs = performance.now() - t0;
  const result = await app.engine.result(LOCAL_USER, handle.turn_id);
  if (result.type !== "complete") throw new Error(`turn failed: ${JSON.stringify(result)}`);
  return submitMs;
}

const spans = new DurationsBySpan();
const recorded = await setup(new TracerProvider({ spanProcessors: [spans] }).getTracer("bench"));
const untraced = await setup(trace.getTracer("noop"));

// Outside the harness: per-stage breakdown of a steady run.
{
  for (let i = 0; i < 100; i++) await turn(recorded.app, recorded.characterId);
  spans.totals.clear();
  const turns = 500;
  let submitMs = 0;
  const t0 = performance.now();
  for (let i = 0; i < turns; i++) submitMs += await turn(recorded.app, recorded.characterId);
  const totalMs = performance.now() - t0;
  const rows = [["submit (load, begin turn; outside the turn span)", submitMs / turns]];
  for (const [name, { ms }] of [...spans.totals].sort((a, b) => b[1].ms - a[1].ms)) {
    rows.push([name, ms / turns]);
  }
  console.log(
    `pipeline pass, zero-delay model, 30 prose deltas: ${(totalMs / turns * 1000).toFixed(0)} µs ` +
      `per turn (${turns} turns); µs per turn by span (spans nest: "turn" holds the stages):`,
  );
  for (const [name, ms] of rows) {
    console.log(`  ${String((Number(ms) * 1000).toFixed(0)).padStart(7)}  ${name}`);
  }
}

Deno.bench({
  name: "pipeline pass: submit → result, zero-delay model, spans recorded",
  group: "pipeline",
  baseline: true,
  warmup: 200,
  n: 2000,
  async fn() {
    await turn(recorded.app, recorded.characterId);
  },
});

Deno.bench({
  name: "pipeline pass: submit → result, zero-delay model, no-op tracer",
  group: "pipeline",
  warmup: 200,
  n: 2000,
  async fn() {
    await turn(untraced.app, untraced.characterId);
  },
});

// The apps hold live-turn retention timers; close them once the benches are done.
globalThis.addEventListener("unload", () => {
  recorded.app.close();
  untraced.app.close();
});
