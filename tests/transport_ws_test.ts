/**
 * The WebSocket transport end to end: the real `WebSocket` client, and a raw
 * TCP client for what browsers cannot do (stop reading, see the HTTP answer
 * to a refused upgrade), against a real server on 127.0.0.1.
 */
import assert from "node:assert/strict";
import type { TurnEvent } from "../src/shared/events.ts";
import { GatedLlm, outcomeChunks } from "./helpers/gated_llm.ts";
import { quietOutcome, RecordingLlm } from "./helpers/recording_llm.ts";
import {
  createCharacter,
  getJson,
  type Json,
  startTestServer,
  type TestServer,
} from "./helpers/server.ts";
import { consecutiveSeqs, openSse, tokenText } from "./helpers/sse.ts";
import { RawWsClient, WsClient } from "./helpers/ws.ts";

/** A model answering `answer` for turns and a short scene for character intros. */
function model(answer: string | Record<string, unknown>, chunkSize?: number): RecordingLlm {
  return new RecordingLlm(
    (request) => (request.scene.intro ? quietOutcome("You wake by the river.") : answer),
    chunkSize,
  );
}

const PIECES = ["Lantern light ", "spills over ", "the flooded ", "nave."];
const NARRATIVE = PIECES.join("");

async function withServer(
  env: Record<string, string>,
  llm: GatedLlm | RecordingLlm | undefined,
  fn: (t: TestServer, character_id: string) => Promise<void>,
): Promise<void> {
  const t = await startTestServer(env, llm ? { llm } : {});
  try {
    await fn(t, await createCharacter(t.url));
  } finally {
    if (llm instanceof GatedLlm) llm.open();
    await t.close();
  }
}

function assertRequestError(m: Json, error_type: string, in_reply_to: string | null): void {
  assert.equal(m.type, "error", JSON.stringify(m));
  assert.equal(m.error_type, error_type, JSON.stringify(m));
  assert.equal(m.turn_id, null);
  assert.equal(m.seq, 0);
  assert.equal(typeof m.message, "string");
  assert.equal(typeof m.recoverable, "boolean");
  assert.equal(typeof m.timestamp, "string");
  assert.equal(m.in_reply_to, in_reply_to);
  assert.equal(typeof m.details, "object");
}

Deno.test("turns over one socket: events, done, the next turn, and pong", async () => {
  await withServer({}, undefined, async (t, character_id) => {
    const ws = await WsClient.connect(t.url);
    try {
      ws.send({ type: "ping" });
      assert.deepEqual(await ws.next(), { type: "pong" });
      const seen: string[] = [];
      for (const user_action of ["I look around", "I walk to the chapel", "I rest"]) {
        ws.send({ type: "turn", character_id, user_action });
        const events: TurnEvent[] = await ws.turn();
        assert.ok(consecutiveSeqs(events));
        assert.equal(events[0].type, "start");
        const complete = events.at(-1)!;
        assert.equal(complete.type, "complete");
        assert.equal(tokenText(events), complete.type === "complete" && complete.narrative);
        assert.ok(!seen.includes(events[0].turn_id));
        seen.push(events[0].turn_id);
        const record = await getJson(`${t.url}/turns/${events[0].turn_id}`);
        assert.equal(record.body.status, "completed");
      }
      assert.equal((await getJson(`${t.url}/characters/${character_id}`)).body.turn_count, 3);
      assert.equal((await ws.close()).code, 1000);
    } finally {
      await ws.close();
    }
  });
});

Deno.test("ping is answered during a turn; a second turn on a busy socket is refused", async () => {
  const llm = new GatedLlm(() => outcomeChunks(PIECES));
  await withServer({}, llm, async (t, character_id) => {
    const ws = await WsClient.connect(t.url);
    try {
      ws.send({ type: "turn", character_id, user_action: "I wade in" });
      const start = await ws.next();
      assert.equal(start.type, "start");
      ws.send({ type: "ping" });
      assert.deepEqual(await ws.next(), { type: "pong" });
      ws.send({ type: "resume", turn_id: start.turn_id, after_seq: 0 });
      const busy = await ws.next();
      assertRequestError(busy, "turn_in_progress", "resume");
      assert.equal(busy.details.turn_id, start.turn_id);
      llm.open();
      const rest = await ws.turn();
      assert.ok(consecutiveSeqs([start, ...rest]));
    } finally {
      await ws.close();
    }
  });
});

Deno.test("malformed messages get an error event and the socket stays open", async () => {
  await withServer({}, undefined, async (t, character_id) => {
    const ws = await WsClient.connect(t.url);
    try {
      const cases: [unknown, string | null][] = [
        ["{not json", null],
        ["[1,2]", null],
        [{ kind: "turn" }, null],
        [{ type: "dance" }, "dance"],
        [{ type: "turn", character_id: "nope", user_action: "I look" }, "turn"],
        [{ type: "turn", character_id, user_action: "   " }, "turn"],
        [{ type: "turn", character_id, user_action: "x", idempotency_key: "bad key" }, "turn"],
        [{ type: "resume", turn_id: crypto.randomUUID(), after_seq: -1 }, "resume"],
        [{ type: "resume", after_seq: 0 }, "resume"],
      ];
      for (const [message, in_reply_to] of cases) {
        ws.send(message);
        const m = await ws.next();
        assertRequestError(m, "validation_error", in_reply_to);
        assert.equal(m.recoverable, false);
      }
      ws.socket.send(new Uint8Array([1, 2, 3]));
      assertRequestError(await ws.next(), "validation_error", null);

      ws.send({ type: "turn", character_id, user_action: "I am still here" });
      const events = await ws.turn();
      assert.equal(events.at(-1).type, "complete");
    } finally {
      await ws.close();
    }
  });
});

Deno.test("errors before a turn starts are error events with the catalogue type", async () => {
  const llm = new GatedLlm(() => outcomeChunks(PIECES));
  await withServer({}, llm, async (t, character_id) => {
    const a = await WsClient.connect(t.url);
    const b = await WsClient.connect(t.url);
    try {
      b.send({ type: "turn", character_id: crypto.randomUUID(), user_action: "I look" });
      const missing = await b.next();
      assertRequestError(missing, "character_not_found", "turn");
      assert.equal(missing.recoverable, false);

      b.send({ type: "resume", turn_id: crypto.randomUUID(), after_seq: 0 });
      assertRequestError(await b.next(), "turn_not_found", "resume");

      a.send({ type: "turn", character_id, user_action: "I climb" });
      const start = await a.next();
      b.send({ type: "turn", character_id, user_action: "I also climb" });
      const busy = await b.next();
      assertRequestError(busy, "turn_in_progress", "turn");
      assert.equal(busy.recoverable, true);
      assert.equal(busy.details.turn_id, start.turn_id);

      llm.open();
      assert.equal((await a.turn()).at(-1).type, "complete");
    } finally {
      await a.close();
      await b.close();
    }
  });
});

Deno.test("429 rate_limited arrives as an error event with retry_after_seconds", async () => {
  await withServer(
    { DM_TURN_RATE_PER_SECOND: "0.001", DM_TURN_BURST: "1" },
    undefined,
    async (t, character_id) => {
      const ws = await WsClient.connect(t.url);
      try {
        ws.send({ type: "turn", character_id, user_action: "I look" });
        assert.equal((await ws.turn()).at(-1).type, "complete");
        ws.send({ type: "turn", character_id, user_action: "I look again" });
        const limited = await ws.next();
        assertRequestError(limited, "rate_limited", "turn");
        assert.equal(limited.recoverable, true);
        assert.ok(limited.details.retry_after_seconds > 0);
      } finally {
        await ws.close();
      }
    },
  );
});

Deno.test("resume over new sockets after a disconnect at every point: no gap, no duplicate", async () => {
  const llm = new GatedLlm(() => outcomeChunks(PIECES));
  await withServer({}, llm, async (t, character_id) => {
    const pieces: TurnEvent[][] = [];
    const a = await WsClient.connect(t.url);
    a.send({ type: "turn", character_id, user_action: "I open the crypt" });
    pieces.push([await a.next()]);
    await a.close(); // after start
    const turn_id = pieces[0][0].turn_id;

    const b = await WsClient.connect(t.url);
    b.send({ type: "resume", turn_id, after_seq: pieces.flat().at(-1)!.seq });
    llm.release(2); // the JSON head and one piece
    pieces.push([await b.next()]);
    assert.equal(pieces[1][0].type, "token");
    await b.close(); // mid-tokens

    const c = await WsClient.connect(t.url);
    c.send({ type: "resume", turn_id, after_seq: pieces.flat().at(-1)!.seq });
    llm.open();
    pieces.push(await c.until((m) => m.type === "complete"));
    await c.close(); // after complete, before done

    const d = await WsClient.connect(t.url);
    try {
      d.send({ type: "resume", turn_id, after_seq: pieces.flat().at(-1)!.seq });
      assert.deepEqual(await d.next(), { type: "done", turn_id });
    } finally {
      await d.close();
    }

    const all = pieces.flat();
    assert.ok(consecutiveSeqs(all), JSON.stringify(all.map((e) => e.seq)));
    assert.equal(tokenText(all), NARRATIVE);
    const complete = all.at(-1)!;
    assert.equal(complete.type === "complete" && complete.narrative, NARRATIVE);
    // SSE sees the very same log.
    assert.deepEqual(await (await openSse(`${t.url}/turns/${turn_id}/events`)).rest(), all);
  });
});

Deno.test("a message over 64 KiB closes the socket with 1009", async () => {
  await withServer({}, undefined, async (t, character_id) => {
    const ws = await WsClient.connect(t.url);
    ws.send({ type: "turn", character_id, user_action: "x".repeat(64 * 1024) });
    const closed = await ws.closed;
    assert.equal(closed.code, 1009);
    // Exactly at the limit is still a message (rejected by validation, not by size).
    const ok = await WsClient.connect(t.url);
    try {
      const overhead = JSON.stringify({ type: "turn", character_id, user_action: "" }).length;
      ok.send({ type: "turn", character_id, user_action: "y".repeat(64 * 1024 - overhead) });
      assertRequestError(await ok.next(), "validation_error", "turn");
    } finally {
      await ok.close();
    }
  });
});

Deno.test("a client that stops reading is closed with 1013; the turn completes and resumes", async () => {
  // A narrative far larger than the kernel socket buffers, so a client that
  // never reads makes the server's send buffer grow past the (tiny) limit.
  const sentence = "Rain hammers the chapel roof while you wait. ";
  const narrative = sentence.repeat(Math.ceil((12 << 20) / sentence.length)).trim();
  const llm = model(quietOutcome(narrative), 1 << 16);
  await withServer({ DM_WS_MAX_BUFFERED_BYTES: "1024" }, llm, async (t, character_id) => {
    const raw = await RawWsClient.connect(t.url);
    assert.equal(raw.status, 101);
    await raw.sendText(JSON.stringify({ type: "turn", character_id, user_action: "I wait" }));
    // Not reading: wait until the server gives up on this client.
    while (!t.logs.some((l) => l.includes('"msg":"ws_slow_consumer"'))) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const { messages, code } = await raw.readUntilClose();
    raw.close();
    assert.equal(code, 1013);
    const received = messages as TurnEvent[];
    assert.ok(received.length > 0 && consecutiveSeqs(received));
    assert.notEqual(received.at(-1)!.type, "complete", "closed before the turn's end was sent");
    const turn_id = received[0].turn_id;

    // The turn went on without the client, and the rest can be resumed.
    const rest = await (await openSse(
      `${t.url}/turns/${turn_id}/events?after=${received.at(-1)!.seq}`,
    )).rest();
    const all = [...received, ...rest];
    assert.ok(consecutiveSeqs(all));
    assert.equal(all.at(-1)!.type, "complete");
    assert.equal(tokenText(all), narrative);
  });
});

Deno.test("a reading client is not closed even when one message exceeds the limit", async () => {
  const narrative = "The bell tolls. ".repeat(8192).trim();
  const llm = model(quietOutcome(narrative), 4096);
  await withServer({ DM_WS_MAX_BUFFERED_BYTES: "1024" }, llm, async (t, character_id) => {
    const ws = await WsClient.connect(t.url);
    try {
      ws.send({ type: "turn", character_id, user_action: "I listen" });
      const events = await ws.turn();
      assert.ok(consecutiveSeqs(events));
      assert.equal(tokenText(events), narrative);
      assert.equal(events.at(-1).narrative, narrative);
    } finally {
      await ws.close();
    }
  });
});

Deno.test("the upgrade is refused with 503 past DM_MAX_STREAMS; GET /ws without upgrade is 422", async () => {
  await withServer({ DM_MAX_STREAMS: "1" }, undefined, async (t) => {
    const plain = await getJson(`${t.url}/ws`);
    assert.equal(plain.status, 422);
    assert.equal(plain.body.detail.error.type, "validation_error");

    const first = await WsClient.connect(t.url);
    const refused = await RawWsClient.connect(t.url);
    try {
      assert.equal(refused.status, 503);
      assert.match(refused.head, /\r\nretry-after: 1\r\n/i);
      const body = JSON.parse(await refused.readBody());
      assert.equal(body.detail.error.type, "overloaded");
      // SSE shares the same pool.
      const sse = await getJson(`${t.url}/turns/${crypto.randomUUID()}/events`);
      assert.equal(sse.status, 503);
    } finally {
      refused.close();
      await first.close();
    }
    // Closing the socket frees the slot.
    const again = await WsClient.connect(t.url);
    await again.close();
  });
});

Deno.test("cancel policy: closing the socket mid-turn cancels it and writes nothing", async () => {
  const llm = new GatedLlm(() => outcomeChunks(PIECES));
  await withServer({ DM_DISCONNECT_POLICY: "cancel" }, llm, async (t, character_id) => {
    const before = (await getJson(`${t.url}/characters/${character_id}`)).body;
    const ws = await WsClient.connect(t.url);
    ws.send({ type: "turn", character_id, user_action: "I pull the lever" });
    llm.release(2);
    const [start] = await ws.until((m) => m.type === "token");
    await ws.close();
    await llm.aborted;

    const events = await (await openSse(`${t.url}/turns/${start.turn_id}/events`)).rest();
    const last = events.at(-1)!;
    assert.ok(consecutiveSeqs(events));
    assert.equal(last.type === "error" && last.error_type, "cancelled");
    const record = (await getJson(`${t.url}/turns/${start.turn_id}`)).body;
    assert.equal(record.status, "failed");
    assert.equal(record.error_type, "cancelled");
    const after = (await getJson(`${t.url}/characters/${character_id}`)).body;
    assert.equal(after.turn_count, before.turn_count);
    assert.deepEqual(after.recent_turns, before.recent_turns);
  });
});

Deno.test("a turn that fails after it started ends with its error event, then done", async () => {
  const llm = model("");
  await withServer({}, llm, async (t, character_id) => {
    const ws = await WsClient.connect(t.url);
    try {
      ws.send({ type: "turn", character_id, user_action: "I speak to the void" });
      const events = await ws.turn();
      assert.deepEqual(events.map((e: Json) => e.type), ["start", "error"]);
      const error = events[1];
      assert.equal(error.seq, 2);
      assert.equal(error.turn_id, events[0].turn_id);
      assert.equal(error.error_type, "llm_response_error");
      assert.equal(error.recoverable, false);
    } finally {
      await ws.close();
    }
  });
});

Deno.test("under DM_AUTH=jwt a socket whose first message is not auth is closed: 4401", async () => {
  const t = await startTestServer({
    DM_AUTH: "jwt",
    DM_JWT_SECRET: "a-test-secret-that-is-long-enough-for-hs256",
  });
  try {
    for (
      const first of [
        { type: "ping" },
        { type: "turn", character_id: crypto.randomUUID(), user_action: "I sneak in" },
      ]
    ) {
      const ws = await WsClient.connect(t.url);
      ws.send(first);
      assert.equal((await ws.closed).code, 4401, JSON.stringify(first));
    }
  } finally {
    await t.close();
  }
});
