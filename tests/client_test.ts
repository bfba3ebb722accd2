/**
 * The client library (`src/client`) against the real server: both
 * transports, resume after a real network cut (a TCP proxy severs the
 * connection), idempotent retries of a lost submission, and typed errors.
 * The SSE parser is tested on its own first.
 */
import assert from "node:assert/strict";
import { SignJWT } from "jose";
import {
  createClient,
  type DmClient,
  DmClientError,
  type Transport,
  type TurnEvent,
  type TurnStream,
} from "../src/client/mod.ts";
import { errorFromResponse, parseRetryAfter } from "../src/client/errors.ts";
import { readSse, SseParser } from "../src/client/sse.ts";
import { MortalStoryteller } from "./helpers/mortal_storyteller.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";
import { startTcpProxy } from "./helpers/tcp_proxy.ts";

const TRANSPORTS: Transport[] = ["sse", "websocket"];

/** Fast retries: tests wait on events, and a cut must not cost seconds. */
const FAST_RETRY = { maxAttempts: 5, baseDelayMs: 5, maxDelayMs: 20 };

async function collect(stream: AsyncIterable<TurnEvent>): Promise<TurnEvent[]> {
  const out: TurnEvent[] = [];
  for await (const e of stream) out.push(e);
  return out;
}

/** Check the invariants of a finished turn's events and return its narrative. */
function checkTurn(events: TurnEvent[]): string {
  assert.ok(events.length >= 2, "a turn has at least start and an end");
  assert.deepEqual(
    events.map((e) => e.seq),
    events.map((_, i) => i + 1),
    "seq 1..n, no gaps or repeats",
  );
  assert.equal(events[0].type, "start");
  const turnIds = new Set(events.map((e) => e.turn_id));
  assert.equal(turnIds.size, 1, "one turn");
  const last = events.at(-1)!;
  assert.equal(last.type, "complete");
  const tokens = events.flatMap((e) => (e.type === "token" ? [e.content] : [])).join("");
  if (last.type === "complete") {
    assert.equal(tokens, last.narrative, "tokens concatenate to the narrative");
  }
  return tokens;
}

async function withServer(
  env: Record<string, string>,
  fn: (server: TestServer, dm: DmClient, characterId: string) => Promise<void>,
  options: Parameters<typeof startTestServer>[1] = {},
) {
  const server = await startTestServer(env, options);
  try {
    const dm = createClient({ baseUrl: server.url, retry: FAST_RETRY });
    const { character_id } = await dm.createCharacter({
      name: "Aria",
      race: "Elf",
      class_name: "Ranger",
      custom_prompt: "A rain-soaked gothic kingdom.",
    });
    await fn(server, dm, character_id);
  } finally {
    await server.close();
  }
}

/** Requests the server logged for a route pattern. */
function requests(server: TestServer, route: string): number {
  return server.logs.filter((line) => {
    const entry = JSON.parse(line);
    return entry.msg === "request" && entry.route === route;
  }).length;
}

// ---------------------------------------------------------------- SSE parser

Deno.test("SseParser: id, data, comments, multi-line data, LF/CR/CRLF, chunk splits", () => {
  const p = new SseParser();
  assert.deepEqual(p.feed('\uFEFF: hello\nid: 1\ndata: {"a":1}\n\n'), [
    { id: "1", event: "message", data: '{"a":1}' },
  ]);
  assert.equal(p.comments, 1);
  // Multi-line data joined with \n; CRLF line ends; a value without a space after the colon.
  assert.deepEqual(p.feed("id:2\r\ndata: line one\r\ndata:line two\r\n\r\n"), [
    { id: "2", event: "message", data: "line one\nline two" },
  ]);
  // Bare CR line ends, an event name, and a CRLF split between chunks.
  assert.deepEqual(p.feed("event: note\rdata: x\r"), []);
  assert.deepEqual(p.feed("\n\r\n"), [{ id: "2", event: "note", data: "x" }]);
  // A message split mid-field across many chunks.
  const parts = ["da", "ta: [DO", "NE]", "\n", "\n"];
  assert.deepEqual(parts.flatMap((c) => p.feed(c)), [{
    id: "2",
    event: "message",
    data: "[DONE]",
  }]);
  // The id persists until changed; a field without a colon; empty data dispatches "".
  assert.deepEqual(p.feed("data\n\n"), [{ id: "2", event: "message", data: "" }]);
  // No data: nothing dispatched, but the id still moves; retry is a hint.
  assert.deepEqual(p.feed("id: 7\nretry: 1500\n\n"), []);
  assert.equal(p.lastEventId, "7");
  assert.equal(p.retry, 1500);
  // An id with NUL is ignored; unknown fields are ignored.
  assert.deepEqual(p.feed("id: 8\u0000\nfoo: bar\ndata: y\n\n"), [
    { id: "7", event: "message", data: "y" },
  ]);
});

Deno.test("readSse decodes UTF-8 split across chunks and drops an unfinished message", async () => {
  const bytes = new TextEncoder().encode('id: 1\ndata: "é✓"\n\nid: 2\ndata: cut');
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      // One byte at a time splits every multi-byte character.
      for (const b of bytes) controller.enqueue(new Uint8Array([b]));
      controller.close();
    },
  });
  let activity = 0;
  const messages = [];
  for await (const m of readSse(body, () => activity++)) messages.push(m);
  assert.deepEqual(messages, [{ id: "1", event: "message", data: '"é✓"' }]);
  assert.equal(activity, bytes.length);
});

// ---------------------------------------------------------------- errors

Deno.test("errors: the envelope, Retry-After, and statuses without an envelope", async () => {
  const envelope = new Response(
    JSON.stringify({
      detail: {
        error: {
          type: "turn_in_progress",
          message: "busy",
          request_id: "r1",
          turn_id: "t1",
        },
      },
    }),
    { status: 409 },
  );
  const e1 = await errorFromResponse(envelope);
  assert.ok(e1 instanceof DmClientError);
  assert.equal(e1.type, "turn_in_progress");
  assert.equal(e1.status, 409);
  assert.equal(e1.recoverable, true);
  assert.equal(e1.turnId, "t1");
  assert.equal(e1.requestId, "r1");

  const gateway = await errorFromResponse(
    new Response("<html>Bad gateway</html>", { status: 502, headers: { "Retry-After": "3" } }),
  );
  assert.equal(gateway.type, "overloaded");
  assert.equal(gateway.retryAfterSeconds, 3);

  assert.equal(
    parseRetryAfter("Wed, 21 Oct 2015 07:28:10 GMT", Date.UTC(2015, 9, 21, 7, 28, 0)),
    10,
  );
  assert.equal(parseRetryAfter("soon"), null);
});

// ---------------------------------------------------------------- turns

for (const transport of TRANSPORTS) {
  Deno.test(`${transport}: plays turns; seq 1..n; tokens make the narrative`, async () => {
    await withServer({ DM_SCRIPTED_DELAY_MS: "1" }, async (_server, dm, id) => {
      const states: string[] = [];
      const stream = dm.playTurn(id, "I walk north through the rain", {
        transport,
        onConnection: (s) => states.push(s.state),
      });
      const events = await collect(stream);
      const narrative = checkTurn(events);
      assert.equal(stream.turnId, events[0].turn_id);
      assert.equal(stream.lastSeq, events.length);
      assert.match(stream.idempotencyKey ?? "", /^[0-9a-f-]{36}$/);
      assert.deepEqual(states, ["connecting", "streaming", "closed"]);
      const record = await dm.getTurn(stream.turnId!);
      assert.equal(record.status, "completed");
      assert.equal(record.narrative, narrative);
      const sheet = await dm.getCharacter(id);
      assert.equal(sheet.turn_count, 1);
      assert.equal(sheet.recent_turns.at(-1)?.narrative, narrative);
    });
  });

  Deno.test(`${transport}: resumes after a network cut mid-turn, without duplicates`, async () => {
    await withServer({ DM_SCRIPTED_DELAY_MS: "5" }, async (server, _dm, id) => {
      const proxy = await startTcpProxy(server.server.port);
      try {
        const dm = createClient({ baseUrl: proxy.url, retry: FAST_RETRY });
        // The second token frame never arrives: the connection dies with it.
        const cut = proxy.cutWhen('"type":"token"', { occurrence: 2 });
        const reconnects: string[] = [];
        const events = await collect(dm.playTurn(id, "I search the chapel crypt", {
          transport,
          onConnection: (s) => {
            if (s.state === "reconnecting") reconnects.push(s.reason);
          },
        }));
        await cut;
        assert.equal(reconnects.length, 1, `one reconnect: ${reconnects}`);
        const narrative = checkTurn(events);
        const sheet = await dm.getCharacter(id);
        assert.equal(sheet.turn_count, 1, "the turn ran once");
        assert.equal(sheet.recent_turns.at(-1)?.narrative, narrative);
        // The resume went through the replay route (SSE) or a second socket (WS).
        if (transport === "sse") assert.equal(requests(server, "/turns/:id/events"), 1);
        else assert.equal(requests(server, "/ws"), 2);
      } finally {
        await proxy.close();
      }
    });
  });

  Deno.test(`${transport}: a lost submission is retried with the same key and plays once`, async () => {
    await withServer({ DM_SCRIPTED_DELAY_MS: "1" }, async (server, _dm, id) => {
      const proxy = await startTcpProxy(server.server.port);
      try {
        const dm = createClient({ baseUrl: proxy.url, retry: FAST_RETRY });
        // The server accepts the turn, but its answer (the 200 with X-Turn-Id,
        // or the start event on the socket) is lost with the connection.
        const cut = proxy.cutWhen(transport === "sse" ? "HTTP/1.1 200" : '"type":"start"');
        const stream = dm.playTurn(id, "I light a torch", { transport });
        const events = await collect(stream);
        await cut;
        checkTurn(events);
        const route = transport === "sse" ? "/turn/stream" : "/ws";
        assert.equal(requests(server, route), 2, "the submission was sent twice");
        const sheet = await dm.getCharacter(id);
        assert.equal(sheet.turn_count, 1, "but the turn was played once");
      } finally {
        await proxy.close();
      }
    });
  });

  Deno.test(`${transport}: the same key replays the turn; another action with it is refused`, async () => {
    await withServer({}, async (_server, dm, id) => {
      const key = `test-${crypto.randomUUID()}`;
      const first = await collect(dm.playTurn(id, "I knock", { transport, idempotencyKey: key }));
      const again = await collect(dm.playTurn(id, "I knock", { transport, idempotencyKey: key }));
      assert.deepEqual(again, first, "the same events, replayed");
      assert.equal((await dm.getCharacter(id)).turn_count, 1);
      await assert.rejects(
        collect(dm.playTurn(id, "I kick the door", { transport, idempotencyKey: key })),
        (e: unknown) =>
          e instanceof DmClientError && e.type === "idempotency_key_reused" && e.status === 422 &&
          !e.recoverable,
      );
    });
  });

  Deno.test(`${transport}: typed errors before a turn starts`, async () => {
    await withServer({}, async (_server, dm) => {
      await assert.rejects(
        collect(dm.playTurn(crypto.randomUUID(), "hello", { transport })),
        (e: unknown) =>
          e instanceof DmClientError && e.type === "character_not_found" && e.status === 404,
      );
    });
  });

  Deno.test(`${transport}: turn_in_progress names the running turn, which can be followed`, async () => {
    await withServer({ DM_SCRIPTED_DELAY_MS: "5" }, async (_server, dm, id) => {
      const first = dm.playTurn(id, "I climb the stair", { transport });
      const iterator = first[Symbol.asyncIterator]();
      const start = await iterator.next();
      assert.equal(start.value?.type, "start");
      const error = await collect(dm.playTurn(id, "I also jump", { transport })).then(
        () => null,
        (e) => e,
      );
      assert.ok(error instanceof DmClientError, String(error));
      assert.equal(error.type, "turn_in_progress");
      assert.equal(error.status, 409);
      assert.equal(error.turnId, first.turnId);
      // The other tab's view: follow the running turn from the start.
      const followed = await collect(dm.followTurn(error.turnId!, { transport }));
      checkTurn(followed);
      // The first stream finishes normally too.
      while (!(await iterator.next()).done) { /* drain */ }
    });
  });

  Deno.test(`${transport}: rate_limited carries Retry-After`, async () => {
    await withServer(
      { DM_TURN_RATE_PER_SECOND: "0.01", DM_TURN_BURST: "1" },
      async (_server, dm, id) => {
        await collect(dm.playTurn(id, "I wait", { transport }));
        await assert.rejects(
          collect(dm.playTurn(id, "I wait again", { transport })),
          (e: unknown) =>
            e instanceof DmClientError && e.type === "rate_limited" && e.recoverable &&
            (e.retryAfterSeconds ?? 0) >= 1 && (transport === "websocket" || e.status === 429),
        );
      },
    );
  });

  Deno.test(`${transport}: a dead character's next turn is game_over`, async () => {
    await withServer({}, async (_server, dm, id) => {
      const events = await collect(dm.playTurn(id, "I leap into the abyss", { transport }));
      checkTurn(events);
      assert.equal((await dm.getCharacter(id)).status, "Dead");
      await assert.rejects(
        collect(dm.playTurn(id, "I get up", { transport })),
        (e: unknown) =>
          e instanceof DmClientError && e.type === "game_over" && e.status === 409 &&
          !e.recoverable,
      );
    }, { llm: new MortalStoryteller({ delayMs: 0 }) });
  });

  Deno.test(`${transport}: abort stops following; followTurn resumes after a seq`, async () => {
    await withServer({ DM_SCRIPTED_DELAY_MS: "2" }, async (_server, dm, id) => {
      const abort = new AbortController();
      const seen: TurnEvent[] = [];
      const stream: TurnStream = dm.playTurn(id, "I listen at the door", {
        transport,
        signal: abort.signal,
      });
      await assert.rejects(
        (async () => {
          for await (const e of stream) {
            seen.push(e);
            if (e.type === "token") abort.abort();
          }
        })(),
        (e: unknown) => e instanceof DOMException && e.name === "AbortError",
      );
      assert.equal(seen.at(-1)?.type, "token");
      // The turn went on without us; pick it up after the last seq we saw.
      const rest = await collect(
        dm.followTurn(stream.turnId!, { transport, afterSeq: stream.lastSeq }),
      );
      assert.equal(rest[0].seq, stream.lastSeq + 1);
      checkTurn([...seen, ...rest]);
    });
  });
}

Deno.test("network_error after the retries when nothing answers", async () => {
  // A port that was just free: nothing listens there.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const dm = createClient({
    baseUrl: `http://127.0.0.1:${port}`,
    retry: { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 2 },
  });
  await assert.rejects(
    dm.getCharacter(crypto.randomUUID()),
    (e: unknown) => e instanceof DmClientError && e.type === "network_error" && e.status === 0,
  );
  for (const transport of TRANSPORTS) {
    const reconnects: number[] = [];
    await assert.rejects(
      collect(dm.playTurn(crypto.randomUUID(), "hello", {
        transport,
        onConnection: (s) => s.state === "reconnecting" && reconnects.push(s.attempt),
      })),
      (e: unknown) => e instanceof DmClientError && e.type === "network_error" && e.recoverable,
    );
    assert.deepEqual(reconnects, [1, 2]);
  }
});

Deno.test("validation errors are typed and keep the server's message", async () => {
  await withServer({}, async (_server, dm) => {
    await assert.rejects(
      dm.createCharacter({ name: " ", race: "Elf", class_name: "Ranger" }),
      (e: unknown) =>
        e instanceof DmClientError && e.type === "validation_error" && e.status === 422 &&
        /name/.test(e.message) && e.requestId !== null,
    );
  });
});

Deno.test("followTurn of a finished turn past its last seq ends without events", async () => {
  await withServer({}, async (_server, dm, id) => {
    for (const transport of TRANSPORTS) {
      const stream = dm.playTurn(id, `I rest (${transport})`, { transport });
      const events = await collect(stream);
      assert.deepEqual(await collect(dm.followTurn(stream.turnId!, { transport })), events);
      const after = await collect(
        dm.followTurn(stream.turnId!, { transport, afterSeq: events.length }),
      );
      assert.deepEqual(after, []);
    }
  });
});

Deno.test("a token authenticates HTTP, SSE and WebSocket; without one it is unauthorized", async () => {
  const secret = "a-test-secret-that-is-long-enough-for-hs256";
  const server = await startTestServer({ DM_AUTH: "jwt", DM_JWT_SECRET: secret });
  try {
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("player-1")
      .setExpirationTime(Math.floor(Date.now() / 1000) + 3600)
      .sign(new TextEncoder().encode(secret));
    const anonymous = createClient({ baseUrl: server.url, retry: FAST_RETRY });
    await assert.rejects(
      anonymous.createCharacter({ name: "Aria", race: "Elf", class_name: "Ranger" }),
      (e: unknown) => e instanceof DmClientError && e.type === "unauthorized" && e.status === 401,
    );
    // A function token source is asked for every request (so it can refresh).
    let asked = 0;
    const dm = createClient({
      baseUrl: server.url,
      retry: FAST_RETRY,
      token: () => {
        asked++;
        return token;
      },
    });
    const { character_id } = await dm.createCharacter({
      name: "Aria",
      race: "Elf",
      class_name: "Ranger",
    });
    for (const transport of TRANSPORTS) {
      checkTurn(await collect(dm.playTurn(character_id, `I look (${transport})`, { transport })));
      await assert.rejects(
        collect(anonymous.playTurn(character_id, "I look around", { transport })),
        (e: unknown) => e instanceof DmClientError && e.type === "unauthorized" && !e.recoverable,
      );
    }
    assert.ok(asked >= 3);
  } finally {
    await server.close();
  }
});
