/**
 * Idempotency keys across every transport: a retry with the same key and
 * body within 24 h gets the same turn (the same result, or the same stream
 * replayed and followed); another body is `idempotency_key_reused`; and a
 * burst of concurrent duplicates makes exactly one turn, even under the
 * default per-character rate limit.
 */
import assert from "node:assert/strict";
import { SqliteStore } from "../src/store/sqlite/mod.ts";
import type { Store } from "../src/store/port.ts";
import type { TurnEvent } from "../src/shared/events.ts";
import { GatedLlm, outcomeChunks } from "./helpers/gated_llm.ts";
import {
  createCharacter,
  getJson,
  postJson,
  startTestServer,
  type TestServer,
} from "./helpers/server.ts";
import { consecutiveSeqs, openSse, tokenText } from "./helpers/sse.ts";
import { WsClient } from "./helpers/ws.ts";

const PIECES = ["A raven ", "lands on ", "your shoulder."];

async function withServer(
  env: Record<string, string>,
  options: Parameters<typeof startTestServer>[1],
  fn: (t: TestServer, character_id: string) => Promise<void>,
): Promise<void> {
  const t = await startTestServer(env, options);
  try {
    await fn(t, await createCharacter(t.url));
  } finally {
    if (options?.llm instanceof GatedLlm) options.llm.open();
    await t.close();
  }
}

/**
 * The real SQLite store, answering the two idempotency calls a macrotask
 * later as a remote store (the journey log) would. Embedded SQLite answers
 * at once, which hides the window between the lookup and beginTurn.
 */
function remoteLike(store: SqliteStore): Store {
  const later = () => new Promise((resolve) => setTimeout(resolve, 0));
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop !== "findIdempotent" && prop !== "beginTurn") {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return async (...args: unknown[]) => {
        await later();
        return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      };
    },
  });
}

async function turnCount(url: string, character_id: string): Promise<number> {
  return (await getJson(`${url}/characters/${character_id}`)).body.turn_count;
}

Deno.test("sequential retries of POST /turn return the same turn; another body is 422", async () => {
  await withServer({}, {}, async (t, character_id) => {
    const body = { character_id, user_action: "I feed the raven" };
    const key = { "Idempotency-Key": "retry-1" };
    const first = await postJson(`${t.url}/turn`, body, key);
    assert.equal(first.status, 200);
    const second = await postJson(`${t.url}/turn`, body, key);
    assert.equal(second.status, 200);
    assert.deepEqual(second.body, first.body);
    assert.equal(second.headers.get("x-turn-id"), first.body.turn_id);
    assert.equal(await turnCount(t.url, character_id), 1);

    const other = await postJson(`${t.url}/turn`, { ...body, user_action: "I eat the raven" }, key);
    assert.equal(other.status, 422);
    assert.equal(other.body.detail.error.type, "idempotency_key_reused");
    const otherStream = await postJson(`${t.url}/turn/stream`, {
      ...body,
      user_action: "I eat the raven",
    }, key);
    assert.equal(otherStream.status, 422);
    assert.equal(otherStream.body.detail.error.type, "idempotency_key_reused");

    const bad = await postJson(`${t.url}/turn`, body, { "Idempotency-Key": "with space" });
    assert.equal(bad.status, 422);
    assert.equal(bad.body.detail.error.type, "validation_error");

    // A new key is a new turn.
    const fresh = await postJson(`${t.url}/turn`, body, { "Idempotency-Key": "retry-2" });
    assert.notEqual(fresh.body.turn_id, first.body.turn_id);
    assert.equal(await turnCount(t.url, character_id), 2);
  });
});

Deno.test("50 concurrent duplicates make exactly one turn, under the default rate limit", async () => {
  // Default bucket: 2 turns per second, burst 2, so duplicates that each
  // took a token would be refused with 429 instead of finding the turn.
  await withServer(
    { DM_TURN_RATE_PER_SECOND: "2", DM_TURN_BURST: "2" },
    { store: remoteLike(new SqliteStore(":memory:")) },
    async (t, character_id) => {
      const body = { character_id, user_action: "I ring the bell" };
      const results = await Promise.all(
        Array.from(
          { length: 50 },
          () => postJson(`${t.url}/turn`, body, { "Idempotency-Key": "bell-50" }),
        ),
      );
      for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
      const ids = new Set(results.map((r) => r.body.turn_id));
      assert.equal(ids.size, 1);
      assert.ok(results.every((r) => r.body.narrative === results[0].body.narrative));
      assert.equal(await turnCount(t.url, character_id), 1);
    },
  );
});

Deno.test("concurrent duplicate streams all follow the one turn from its start", async () => {
  const llm = new GatedLlm(() => outcomeChunks(PIECES));
  await withServer({ DM_MAX_STREAMS_PER_USER: "20" }, { llm }, async (t, character_id) => {
    const body = { character_id, user_action: "I whistle" };
    const headers = { "Idempotency-Key": "whistle" };
    const streams = await Promise.all(
      Array.from({ length: 10 }, () => openSse(`${t.url}/turn/stream`, { body, headers })),
    );
    const ids = new Set(streams.map((s) => s.response.headers.get("x-turn-id")));
    assert.equal(ids.size, 1);
    // A WebSocket retry with the same key joins the same turn too.
    const ws = await WsClient.connect(t.url);
    try {
      ws.send({ type: "turn", ...body, idempotency_key: "whistle" });
      const start = await ws.next();
      assert.equal(start.turn_id, [...ids][0]);
      llm.open();
      const wsEvents = [start, ...(await ws.turn())];
      const all = await Promise.all(streams.map((s) => s.rest()));
      for (const events of all) {
        assert.ok(consecutiveSeqs(events));
        assert.deepEqual(events, all[0]);
      }
      assert.deepEqual(wsEvents, all[0]);
      assert.equal(tokenText(all[0]), PIECES.join(""));
    } finally {
      await ws.close();
    }
    assert.equal(await turnCount(t.url, character_id), 1);
  });
});

Deno.test("a retry after the turn ended replays the stream; POST /turn gets its result", async () => {
  await withServer({}, {}, async (t, character_id) => {
    const body = { character_id, user_action: "I bow" };
    const headers = { "Idempotency-Key": "bow" };
    const first: TurnEvent[] = await (await openSse(`${t.url}/turn/stream`, { body, headers }))
      .rest();
    const again = await openSse(`${t.url}/turn/stream`, { body, headers });
    assert.equal(again.response.headers.get("x-turn-id"), first[0].turn_id);
    assert.deepEqual(await again.rest(), first);
    const waited = await postJson(`${t.url}/turn`, body, headers);
    assert.equal(waited.body.turn_id, first[0].turn_id);
    const complete = first.at(-1)!;
    assert.equal(complete.type === "complete" && complete.narrative, waited.body.narrative);
    assert.equal(await turnCount(t.url, character_id), 1);
  });
});

Deno.test("keys are remembered for 24 hours, then a retry is a new turn", async () => {
  let now = Date.parse("2030-01-01T00:00:00Z");
  const store = new SqliteStore(":memory:", { now: () => new Date(now) });
  await withServer({}, { store }, async (t, character_id) => {
    const body = { character_id, user_action: "I plant a seed" };
    const headers = { "Idempotency-Key": "seed" };
    const first = await postJson(`${t.url}/turn`, body, headers);
    now += 24 * 60 * 60 * 1000 - 60_000;
    const within = await postJson(`${t.url}/turn`, body, headers);
    assert.equal(within.body.turn_id, first.body.turn_id);
    now += 120_000;
    const after = await postJson(`${t.url}/turn`, body, headers);
    assert.equal(after.status, 200);
    assert.notEqual(after.body.turn_id, first.body.turn_id);
    assert.equal(await turnCount(t.url, character_id), 2);
  });
});
