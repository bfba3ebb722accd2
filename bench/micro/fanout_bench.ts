/**
 * Event fan-out: one running turn's live log (`src/turn/live.ts`) followed by
 * N subscribers, the way N clients follow a turn (SSE, WebSocket and a
 * waiting `POST /turn` all read the same log). Each iteration pushes a turn's
 * worth of events (30 tokens and the terminal one) and waits until every
 * follower has read them all.
 *
 * Run: `deno task bench:micro` (or `deno bench bench/micro/fanout_bench.ts`).
 * Time per delivery = time per iteration / (31 × N); the figure is also
 * printed once, measured outside the harness.
 *
 * @module
 */
import type { TurnEvent } from "../../src/shared/events.ts";
import { LiveTurn } from "../../src/turn/live.ts";

const TOKENS = 30;
const EVENTS = TOKENS + 1;
const TURN_ID = "00000000-0000-4000-8000-000000000001";
const CHARACTER_ID = "00000000-0000-4000-8000-000000000002";

const tokens: TurnEvent[] = Array.from({ length: TOKENS }, (_, i) => ({
  type: "token",
  turn_id: TURN_ID,
  seq: i + 2,
  timestamp: "2026-11-23T22:40:00.000Z",
  content: "rain lantern sto",
}));
const terminal = {
  type: "error",
  turn_id: TURN_ID,
  seq: TOKENS + 2,
  timestamp: "2026-11-23T22:40:00.000Z",
  error_type: "cancelled",
  message: "The turn was cancelled.",
  recoverable: true,
} as TurnEvent;

/** Push one turn's events to `followers` subscribers, yielding between events like a stream. */
async function fanOut(followers: number): Promise<void> {
  const live = new LiveTurn(TURN_ID, CHARACTER_ID, "local");
  live.push({
    type: "start",
    turn_id: TURN_ID,
    seq: 1,
    timestamp: "2026-11-23T22:40:00.000Z",
    character_id: CHARACTER_ID,
  } as TurnEvent);
  let delivered = 0;
  const readers = Array.from({ length: followers }, async () => {
    for await (const _ of live.follow(1)) delivered++;
  });
  for (const event of tokens) {
    live.push(event);
    // Let followers run, as deltas arriving from the network would.
    await Promise.resolve();
  }
  live.push(terminal);
  await Promise.all(readers);
  if (delivered !== followers * EVENTS) {
    throw new Error(`delivered ${delivered}, expected ${followers * EVENTS}`);
  }
}

const SIZES = [1, 10, 100, 1000];

// Outside the harness: ns per delivered event for each size.
for (const n of SIZES) {
  const runs = Math.max(5, Math.round(20_000 / n));
  for (let i = 0; i < Math.min(runs, 50); i++) await fanOut(n); // warm up
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await fanOut(n);
  const ns = ((performance.now() - t0) * 1e6) / runs / (EVENTS * n);
  console.log(`fan-out to ${n} followers: ${ns.toFixed(0)} ns per delivered event`);
}

for (const n of SIZES) {
  Deno.bench({
    name: `LiveTurn: ${EVENTS} events to ${n} follower${n === 1 ? "" : "s"}`,
    group: "fan-out",
    baseline: n === 1,
    async fn() {
      await fanOut(n);
    },
  });
}
