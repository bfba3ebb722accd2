/**
 * The SSE transport end to end: real `fetch` streams and the browser
 * `EventSource` against a real server on 127.0.0.1, with turns the test
 * steps through chunk by chunk (GatedLlm) so every wait is on a condition.
 */
import assert from "node:assert/strict";
import type { TurnEvent } from "../src/shared/events.ts";
import { GatedLlm, outcomeChunks } from "./helpers/gated_llm.ts";
import {
  createCharacter,
  getJson,
  type Json,
  postJson,
  startTestServer,
  type TestServer,
} from "./helpers/server.ts";
import { consecutiveSeqs, openSse, tokenText } from "./helpers/sse.ts";

const PIECES = ["The door ", "creaks open ", "onto a stair ", "of wet stone."];
const NARRATIVE = PIECES.join("");

function gated(): GatedLlm {
  return new GatedLlm(() => outcomeChunks(PIECES));
}

async function withServer(
  env: Record<string, string>,
  llm: GatedLlm | undefined,
  fn: (t: TestServer, character_id: string) => Promise<void>,
): Promise<void> {
  const t = await startTestServer(env, llm ? { llm } : {});
  try {
    await fn(t, await createCharacter(t.url));
  } finally {
    llm?.open();
    await t.close();
  }
}

/** Wait (by polling the record, not by sleeping a fixed time) until the turn is no longer running. */
async function settled(url: string, turn_id: string): Promise<Json> {
  while (true) {
    const r = await getJson(`${url}/turns/${turn_id}`);
    if (r.body.status !== "running") return r.body;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function assertEnvelope(body: Json, type: string): void {
  assert.equal(body?.detail?.error?.type, type, JSON.stringify(body));
  assert.equal(typeof body.detail.error.message, "string");
  assert.ok("request_id" in body.detail.error);
}

Deno.test("POST /turn/stream sends id+data frames, start → tokens → complete, then [DONE]", async () => {
  await withServer({}, undefined, async (t, character_id) => {
    const sse = await openSse(`${t.url}/turn/stream`, {
      body: { character_id, user_action: "I look around the chapel" },
    });
    const res = sse.response;
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    assert.equal(res.headers.get("cache-control"), "no-cache");
    assert.equal(res.headers.get("x-accel-buffering"), "no");
    const turn_id = res.headers.get("x-turn-id")!;
    assert.match(turn_id, /^[0-9a-f-]{36}$/);

    const frames = [];
    for (let f = await sse.next(); f !== null; f = await sse.next()) frames.push(f);
    assert.equal(frames.at(-1)!.data, "[DONE]");
    assert.equal(frames.at(-1)!.id, null);
    const events = frames.slice(0, -1).map((f) => {
      assert.deepEqual(f.fields, ["id", "data"], "no event: line");
      const e = JSON.parse(f.data!) as TurnEvent;
      assert.equal(f.id, String(e.seq));
      return e;
    });
    assert.ok(consecutiveSeqs(events));
    assert.ok(events.every((e) => e.turn_id === turn_id && typeof e.timestamp === "string"));
    assert.equal(events[0].type, "start");
    assert.equal(events[0].type === "start" && events[0].character_id, character_id);
    const complete = events.at(-1)!;
    assert.equal(complete.type, "complete");
    if (complete.type !== "complete") return;
    assert.ok(events.slice(1, -1).every((e) => e.type === "token"));
    assert.ok(events.length > 3, "the narrative streams in several tokens");
    assert.equal(tokenText(events), complete.narrative);
    assert.equal(complete.timing.total_tokens, events.length - 2);
    assert.equal(typeof complete.timing.total_duration_ms, "number");
    assert.equal(typeof complete.timing.time_to_first_token_ms, "number");
    assert.equal(complete.subsystem_summary.narrative_persisted, true);

    const record = await getJson(`${t.url}/turns/${turn_id}`);
    assert.equal(record.body.status, "completed");
    assert.equal(record.body.narrative, complete.narrative);
    assert.equal((await getJson(`${t.url}/characters/${character_id}`)).body.turn_count, 1);
  });
});

Deno.test("resume after a disconnect at every point: no gap, no duplicate, text = narrative", async () => {
  const llm = gated();
  await withServer({}, llm, async (t, character_id) => {
    const pieces: TurnEvent[][] = [];
    // 1. Drop right after start.
    const a = await openSse(`${t.url}/turn/stream`, {
      body: { character_id, user_action: "I open the door" },
    });
    const turn_id = a.response.headers.get("x-turn-id")!;
    pieces.push(await a.until((e) => e.type === "start"));
    await a.disconnect();

    // 2. Resume with Last-Event-ID and drop in the middle of the tokens.
    const b = await openSse(`${t.url}/turns/${turn_id}/events`, {
      headers: { "Last-Event-ID": String(pieces.flat().at(-1)!.seq) },
    });
    assert.equal(b.response.status, 200);
    assert.equal(b.response.headers.get("x-turn-id"), turn_id);
    llm.release(3); // the JSON head and two pieces of prose
    pieces.push(await b.until((e) => e.type === "token" && e.content === PIECES[1]));
    await b.disconnect();

    // 3. Resume with ?after= and drop right after complete, before [DONE].
    const c = await openSse(`${t.url}/turns/${turn_id}/events?after=${pieces.flat().at(-1)!.seq}`);
    llm.open();
    pieces.push(await c.until((e) => e.type === "complete"));
    await c.disconnect();

    // 4. Resume after complete: nothing is left but [DONE].
    const d = await openSse(`${t.url}/turns/${turn_id}/events`, {
      headers: { "Last-Event-ID": String(pieces.flat().at(-1)!.seq) },
    });
    assert.deepEqual(await d.rest(), []);

    const all = pieces.flat();
    assert.ok(consecutiveSeqs(all), JSON.stringify(all.map((e) => e.seq)));
    const complete = all.at(-1)!;
    assert.equal(complete.type === "complete" && complete.narrative, NARRATIVE);
    assert.equal(tokenText(all), NARRATIVE);
    assert.deepEqual(
      all.filter((e) => e.type === "token").map((e) => e.type === "token" && e.content),
      PIECES,
    );

    // The whole log again from the start is the same events.
    const again = await openSse(`${t.url}/turns/${turn_id}/events`);
    assert.deepEqual(await again.rest(), all);
  });
});

Deno.test("a turn that completed while no client was connected is replayed in full", async () => {
  const llm = gated();
  await withServer({}, llm, async (t, character_id) => {
    const a = await openSse(`${t.url}/turn/stream`, {
      body: { character_id, user_action: "I wait in the dark" },
    });
    const turn_id = a.response.headers.get("x-turn-id")!;
    await a.until((e) => e.type === "start");
    await a.disconnect();
    llm.open();
    const record = await settled(t.url, turn_id);
    assert.equal(record.status, "completed", "the default policy keeps playing");

    const events = await (await openSse(`${t.url}/turns/${turn_id}/events`)).rest();
    assert.ok(consecutiveSeqs(events));
    assert.deepEqual(events.map((e) => e.type), [
      "start",
      "token",
      "token",
      "token",
      "token",
      "complete",
    ]);
    assert.equal(tokenText(events), record.narrative);
  });
});

Deno.test("the browser EventSource reads GET /turns/{id}/events, live and finished", async () => {
  const llm = gated();
  await withServer({}, llm, async (t, character_id) => {
    const a = await openSse(`${t.url}/turn/stream`, {
      body: { character_id, user_action: "I listen at the door" },
    });
    const turn_id = a.response.headers.get("x-turn-id")!;
    await a.until((e) => e.type === "start");
    await a.disconnect();

    const read = (url: string) =>
      new Promise<{ events: TurnEvent[]; ids: string[] }>((resolve, reject) => {
        const source = new EventSource(url);
        const events: TurnEvent[] = [];
        const ids: string[] = [];
        source.onmessage = (m: MessageEvent<string>) => {
          if (m.data === "[DONE]") {
            // Clients close on [DONE]; otherwise EventSource reconnects.
            source.close();
            resolve({ events, ids });
            return;
          }
          const event = JSON.parse(m.data) as TurnEvent;
          events.push(event);
          ids.push(m.lastEventId);
          if (event.type === "start") llm.open();
        };
        source.onerror = () => {
          source.close();
          reject(new Error("EventSource failed"));
        };
      });

    const live = await read(`${t.url}/turns/${turn_id}/events`);
    assert.ok(consecutiveSeqs(live.events));
    assert.deepEqual(live.ids, live.events.map((e) => String(e.seq)));
    assert.equal(live.events.at(-1)!.type, "complete");
    assert.equal(tokenText(live.events), NARRATIVE);

    const finished = await read(`${t.url}/turns/${turn_id}/events?after=2`);
    assert.deepEqual(finished.events, live.events.slice(2));
  });
});

Deno.test("a heartbeat comment is sent every DM_SSE_HEARTBEAT_MS while the turn is quiet", async () => {
  const llm = gated();
  await withServer({ DM_SSE_HEARTBEAT_MS: "10" }, llm, async (t, character_id) => {
    const sse = await openSse(`${t.url}/turn/stream`, {
      body: { character_id, user_action: "I hold my breath" },
    });
    let frame = await sse.next();
    assert.equal(JSON.parse(frame!.data!).type, "start");
    // The model is gated, so nothing but heartbeats can come now.
    let heartbeats = 0;
    while (heartbeats < 2) {
      frame = await sse.next();
      assert.deepEqual(frame, { id: null, data: null, comment: "heartbeat", fields: [] });
      heartbeats++;
    }
    llm.open();
    const events = await sse.rest();
    assert.equal(events.at(-1)!.type, "complete");
  });
});

Deno.test("errors before the stream starts are ordinary HTTP error responses", async () => {
  const llm = gated();
  await withServer({}, llm, async (t, character_id) => {
    const bad = await postJson(`${t.url}/turn/stream`, { character_id, user_action: "" });
    assert.equal(bad.status, 422);
    assert.equal(bad.headers.get("content-type"), "application/json");
    assertEnvelope(bad.body, "validation_error");

    const big = await postJson(`${t.url}/turn/stream`, {
      character_id,
      user_action: "x".repeat(70 * 1024),
    });
    assert.equal(big.status, 413);
    assertEnvelope(big.body, "payload_too_large");

    const missing = await postJson(`${t.url}/turn/stream`, {
      character_id: crypto.randomUUID(),
      user_action: "I look",
    });
    assert.equal(missing.status, 404);
    assertEnvelope(missing.body, "character_not_found");

    const noTurn = await getJson(`${t.url}/turns/${crypto.randomUUID()}/events`);
    assert.equal(noTurn.status, 404);
    assertEnvelope(noTurn.body, "turn_not_found");

    const badId = await getJson(`${t.url}/turns/not-a-uuid/events`);
    assert.equal(badId.status, 422);
    assertEnvelope(badId.body, "validation_error");

    // 409 while a turn of the character runs, naming the running turn.
    const running = await openSse(`${t.url}/turn/stream`, {
      body: { character_id, user_action: "I step inside" },
    });
    const turn_id = running.response.headers.get("x-turn-id")!;
    await running.until((e) => e.type === "start");
    const busy = await postJson(`${t.url}/turn/stream`, { character_id, user_action: "I run" });
    assert.equal(busy.status, 409);
    assertEnvelope(busy.body, "turn_in_progress");
    assert.equal(busy.body.detail.error.turn_id, turn_id);

    const badCursor = await getJson(`${t.url}/turns/${turn_id}/events`, {
      "Last-Event-ID": "seven",
    });
    assert.equal(badCursor.status, 422);
    assertEnvelope(badCursor.body, "validation_error");
    const badAfter = await getJson(`${t.url}/turns/${turn_id}/events?after=-1`);
    assert.equal(badAfter.status, 422);

    llm.open();
    assert.equal((await running.rest()).at(-1)!.type, "complete");
  });
});

Deno.test("429 rate_limited with Retry-After when a character's token bucket is empty", async () => {
  await withServer(
    { DM_TURN_RATE_PER_SECOND: "0.001", DM_TURN_BURST: "1" },
    undefined,
    async (t, character_id) => {
      const first = await openSse(`${t.url}/turn/stream`, {
        body: { character_id, user_action: "I look around" },
      });
      assert.equal((await first.rest()).at(-1)!.type, "complete");
      const second = await postJson(`${t.url}/turn/stream`, { character_id, user_action: "Again" });
      assert.equal(second.status, 429);
      assertEnvelope(second.body, "rate_limited");
      assert.ok(Number(second.headers.get("retry-after")) >= 1);
    },
  );
});

Deno.test("503 overloaded with Retry-After past DM_MAX_STREAMS; a closed stream frees its slot", async () => {
  const llm = gated();
  await withServer({ DM_MAX_STREAMS: "1" }, llm, async (t, character_id) => {
    const first = await openSse(`${t.url}/turn/stream`, {
      body: { character_id, user_action: "I take the only seat" },
    });
    const turn_id = first.response.headers.get("x-turn-id")!;
    await first.until((e) => e.type === "start");

    const follow = await getJson(`${t.url}/turns/${turn_id}/events`);
    assert.equal(follow.status, 503);
    assertEnvelope(follow.body, "overloaded");
    assert.equal(follow.headers.get("retry-after"), "1");
    const other = await createCharacter(t.url);
    const submit = await postJson(`${t.url}/turn/stream`, {
      character_id: other,
      user_action: "I try too",
    });
    assert.equal(submit.status, 503);
    assertEnvelope(submit.body, "overloaded");
    assert.equal(
      (await getJson(`${t.url}/characters/${other}`)).body.turn_count,
      0,
      "an overloaded stream starts no turn",
    );

    llm.open();
    await first.rest();
    // The slot is free again once the first stream has ended.
    const again = await openSse(`${t.url}/turns/${turn_id}/events`);
    assert.equal(again.response.status, 200);
    assert.equal((await again.rest()).at(-1)!.type, "complete");
  });
});

Deno.test("429 rate_limited past DM_MAX_STREAMS_PER_USER and DM_MAX_STREAMS_PER_IP", async () => {
  for (
    const [env, what] of [
      [{ DM_MAX_STREAMS_PER_USER: "1" }, /per user/],
      [{ DM_MAX_STREAMS_PER_USER: "10", DM_MAX_STREAMS_PER_IP: "1" }, /per address/],
    ] as const
  ) {
    const llm = gated();
    await withServer(env, llm, async (t, character_id) => {
      const first = await openSse(`${t.url}/turn/stream`, {
        body: { character_id, user_action: "I keep the line open" },
      });
      const turn_id = first.response.headers.get("x-turn-id")!;
      const second = await getJson(`${t.url}/turns/${turn_id}/events`);
      assert.equal(second.status, 429);
      assertEnvelope(second.body, "rate_limited");
      assert.match(second.body.detail.error.message, what);
      assert.equal(second.headers.get("retry-after"), "1");
      llm.open();
      await first.rest();
      const third = await openSse(`${t.url}/turns/${turn_id}/events`);
      assert.equal(third.response.status, 200);
      await third.rest();
    });
  }
});

Deno.test("cancel policy: the last client leaving aborts the model call and writes nothing", async () => {
  const llm = gated();
  await withServer({ DM_DISCONNECT_POLICY: "cancel" }, llm, async (t, character_id) => {
    const before = (await getJson(`${t.url}/characters/${character_id}`)).body;
    const a = await openSse(`${t.url}/turn/stream`, {
      body: { character_id, user_action: "I light the fuse" },
    });
    const turn_id = a.response.headers.get("x-turn-id")!;
    llm.release(2);
    await a.until((e) => e.type === "token");
    await a.disconnect();
    await llm.aborted; // the model call is aborted, not merely left unread

    const events = await (await openSse(`${t.url}/turns/${turn_id}/events`)).rest();
    assert.ok(consecutiveSeqs(events));
    const last = events.at(-1)!;
    assert.equal(last.type, "error");
    assert.equal(last.type === "error" && last.error_type, "cancelled");
    assert.equal(last.type === "error" && last.recoverable, true);

    const record = (await getJson(`${t.url}/turns/${turn_id}`)).body;
    assert.equal(record.status, "failed");
    assert.equal(record.error_type, "cancelled");
    const after = (await getJson(`${t.url}/characters/${character_id}`)).body;
    assert.equal(after.turn_count, before.turn_count);
    assert.deepEqual(after.recent_turns, before.recent_turns);
    assert.deepEqual(after.location, before.location);
  });
});

Deno.test("cancel policy: a turn goes on while another client still follows it", async () => {
  const llm = gated();
  await withServer({ DM_DISCONNECT_POLICY: "cancel" }, llm, async (t, character_id) => {
    const a = await openSse(`${t.url}/turn/stream`, {
      body: { character_id, user_action: "I sing" },
    });
    const turn_id = a.response.headers.get("x-turn-id")!;
    await a.until((e) => e.type === "start");
    const b = await openSse(`${t.url}/turns/${turn_id}/events`);
    await b.until((e) => e.type === "start");
    await a.disconnect();
    llm.open();
    const rest = await b.rest();
    assert.equal(rest.at(-1)!.type, "complete");
    assert.equal((await getJson(`${t.url}/turns/${turn_id}`)).body.status, "completed");
  });
});

Deno.test("the event log survives a restart: replay from a SQLite file in a new server", async () => {
  const dir = await Deno.makeTempDir();
  const env = { DM_SQLITE_PATH: `${dir}/dm.sqlite` };
  try {
    let turn_id = "";
    let live: TurnEvent[] = [];
    const first = await startTestServer(env);
    try {
      const character_id = await createCharacter(first.url);
      const sse = await openSse(`${first.url}/turn/stream`, {
        body: { character_id, user_action: "I carve my name in the door" },
      });
      turn_id = sse.response.headers.get("x-turn-id")!;
      live = await sse.rest();
    } finally {
      await first.close();
    }
    const second = await startTestServer(env);
    try {
      const replay = await openSse(`${second.url}/turns/${turn_id}/events`);
      assert.deepEqual(await replay.rest(), live);
      const tail = await openSse(`${second.url}/turns/${turn_id}/events`, {
        headers: { "Last-Event-ID": "2" },
      });
      assert.deepEqual(await tail.rest(), live.slice(2));
    } finally {
      await second.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
