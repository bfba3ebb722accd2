/**
 * The HTTP API of the foundation, end to end against a real server on
 * 127.0.0.1 with the SQLite store and the scripted storyteller.
 */
import assert from "node:assert/strict";
import { createCharacter, getJson, postJson, startTestServer } from "./helpers/server.ts";

function assertEnvelope(body: unknown, type: string) {
  const b = body as {
    detail?: { error?: { type?: string; message?: string; request_id?: unknown } };
  };
  assert.equal(b?.detail?.error?.type, type, JSON.stringify(body));
  assert.equal(typeof b.detail!.error!.message, "string");
  assert.ok("request_id" in b.detail!.error!);
}

Deno.test("a character is created, plays 10 turns and shows them", async () => {
  const t = await startTestServer();
  try {
    const id = await createCharacter(t.url);
    assert.match(id, /^[0-9a-f-]{36}$/);
    const actions = [
      "I look around",
      "I walk to the old chapel",
      "I attack the shadow",
      "I strike again",
      "I flee",
      "I rest by the fire",
      "I explore the market",
      "I talk to the merchant",
      "I search the stalls",
      "I head north",
    ];
    const turnIds: string[] = [];
    for (const user_action of actions) {
      const res = await postJson(`${t.url}/turn`, { character_id: id, user_action });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(typeof res.body.narrative, "string");
      assert.ok(res.body.narrative.length > 0);
      assert.match(res.body.turn_id, /^[0-9a-f-]{36}$/);
      assert.notEqual(res.body.intents, null, "the scripted storyteller's outcome validates");
      for (const key of ["quest_change", "combat_change", "poi_change"]) {
        const change = res.body.subsystem_summary[key];
        assert.equal(typeof change.action, "string", key);
        assert.ok("success" in change && "error" in change, key);
      }
      assert.equal(res.body.subsystem_summary.narrative_persisted, true);
      assert.equal(res.body.subsystem_summary.narrative_error, null);
      assert.equal("policy" in res.body, false, "policy decisions never reach players");
      turnIds.push(res.body.turn_id);
    }
    const view = await getJson(`${t.url}/characters/${id}`);
    assert.equal(view.status, 200);
    for (
      const key of [
        "character_id",
        "name",
        "race",
        "class_name",
        "status",
        "location",
        "quest",
        "combat",
        "pois",
        "recent_turns",
      ]
    ) {
      assert.ok(key in view.body, key);
    }
    assert.equal(view.body.turn_count, 10);
    assert.equal(view.body.recent_turns.length, 11, "intro + 10 turns");
    assert.deepEqual(
      view.body.recent_turns.slice(1).map((r: { user_action: string }) => r.user_action),
      actions,
    );
    assert.ok(view.body.pois.length >= 1, "the origin place is discovered");
    const record = await getJson(`${t.url}/turns/${turnIds[3]}`);
    assert.equal(record.status, 200);
    assert.equal(record.body.status, "completed");
    assert.equal(record.body.user_action, actions[3]);
    assert.equal(record.body.character_id, id);
    assert.ok(record.body.completed_at);
    assert.equal("policy" in record.body, false);
  } finally {
    await t.close();
  }
});

Deno.test("state survives a restart on a SQLite file", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/dm.sqlite`;
  let id: string;
  const first = await startTestServer({ DM_SQLITE_PATH: path });
  try {
    id = await createCharacter(first.url);
    const res = await postJson(`${first.url}/turn`, {
      character_id: id,
      user_action: "I walk east",
    });
    assert.equal(res.status, 200);
  } finally {
    await first.close();
  }
  const second = await startTestServer({ DM_SQLITE_PATH: path });
  try {
    const view = await getJson(`${second.url}/characters/${id}`);
    assert.equal(view.status, 200);
    assert.equal(view.body.turn_count, 1);
    assert.equal(view.body.recent_turns.at(-1).user_action, "I walk east");
  } finally {
    await second.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("malformed requests get 4xx errors in the envelope", async () => {
  const t = await startTestServer();
  try {
    const id = await createCharacter(t.url);
    const cases: Array<[string, RequestInit, number, string]> = [
      ["/turn", { method: "POST", body: "{not json" }, 422, "validation_error"],
      ["/turn", { method: "POST", body: "[]" }, 422, "validation_error"],
      [
        "/turn",
        { method: "POST", body: JSON.stringify({ character_id: id }) },
        422,
        "validation_error",
      ],
      [
        "/turn",
        { method: "POST", body: JSON.stringify({ character_id: "nope", user_action: "x" }) },
        422,
        "validation_error",
      ],
      [
        "/turn",
        { method: "POST", body: JSON.stringify({ character_id: id, user_action: 42 }) },
        422,
        "validation_error",
      ],
      [
        "/turn",
        { method: "POST", body: JSON.stringify({ character_id: id, user_action: "" }) },
        422,
        "validation_error",
      ],
      [
        "/turn",
        {
          method: "POST",
          body: JSON.stringify({ character_id: id, user_action: "a".repeat(8001) }),
        },
        422,
        "validation_error",
      ],
      [
        "/turn",
        { method: "POST", body: JSON.stringify({ character_id: id, user_action: "a\u0000b" }) },
        422,
        "validation_error",
      ],
      [
        "/turn",
        {
          method: "POST",
          body: JSON.stringify({ character_id: id, user_action: { deep: [[[1]]] } }),
        },
        422,
        "validation_error",
      ],
      [
        "/turn",
        { method: "POST", body: new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]) },
        422,
        "validation_error",
      ],
      ["/turn", { method: "POST", body: "x".repeat(70_000) }, 413, "payload_too_large"],
      ["/turn", { method: "GET" }, 405, "method_not_allowed"],
      [
        "/characters",
        { method: "POST", body: JSON.stringify({ name: "A", race: "Elf" }) },
        422,
        "validation_error",
      ],
      [
        "/characters",
        { method: "POST", body: JSON.stringify({ name: 1e309, race: "Elf", class_name: "x" }) },
        422,
        "validation_error",
      ],
      ["/characters/not-a-uuid", { method: "GET" }, 422, "validation_error"],
      [
        "/characters/00000000-0000-4000-8000-000000000000",
        { method: "GET" },
        404,
        "character_not_found",
      ],
      ["/turns/00000000-0000-4000-8000-000000000000", { method: "GET" }, 404, "turn_not_found"],
      ["/no/such/route", { method: "GET" }, 404, "not_found"],
    ];
    for (const [path, init, status, type] of cases) {
      const res = await fetch(`${t.url}${path}`, {
        ...init,
        headers: { "Content-Type": "application/json" },
      });
      const body = await res.json();
      assert.equal(res.status, status, `${init.method} ${path}: ${JSON.stringify(body)}`);
      assertEnvelope(body, type);
    }
    const missing = await postJson(`${t.url}/turn`, {
      character_id: "00000000-0000-4000-8000-000000000000",
      user_action: "hello",
    });
    assert.equal(missing.status, 404);
    assertEnvelope(missing.body, "character_not_found");
    // Nothing above was stored.
    const view = await getJson(`${t.url}/characters/${id}`);
    assert.equal(view.body.turn_count, 0);
  } finally {
    await t.close();
  }
});

Deno.test("a chunked body over 64 KiB is refused while it streams", async () => {
  const t = await startTestServer();
  try {
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > 200_000) return controller.close();
        sent += 16_384;
        controller.enqueue(new Uint8Array(16_384).fill(0x61));
      },
    });
    const res = await fetch(`${t.url}/turn`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
    assert.equal(res.status, 413);
    assertEnvelope(await res.json(), "payload_too_large");
  } finally {
    await t.close();
  }
});

Deno.test("request ids are echoed, or generated, and appear in errors", async () => {
  const t = await startTestServer();
  try {
    const res = await fetch(`${t.url}/nope`, { headers: { "X-Request-Id": "req-123" } });
    assert.equal(res.headers.get("x-request-id"), "req-123");
    assert.equal((await res.json()).detail.error.request_id, "req-123");
    const hostile = await fetch(`${t.url}/health`, { headers: { "X-Request-Id": "a b\tc" } });
    await hostile.body?.cancel();
    assert.match(hostile.headers.get("x-request-id")!, /^[0-9a-f-]{36}$/);
    assert.equal(hostile.headers.get("x-content-type-options"), "nosniff");
  } finally {
    await t.close();
  }
});

Deno.test("health and readiness", async () => {
  const t = await startTestServer();
  try {
    const health = await getJson(`${t.url}/health`);
    assert.deepEqual([health.status, health.body], [200, { status: "ok" }]);
    const ready = await getJson(`${t.url}/ready`);
    assert.equal(ready.status, 200);
    assert.equal(ready.body.status, "ready");
    await t.app.store.close();
    const notReady = await getJson(`${t.url}/ready`);
    assert.equal(notReady.status, 503);
  } finally {
    await t.close();
  }
});

Deno.test("access logs are JSON lines and never contain the player's text", async () => {
  const t = await startTestServer({ DM_LOG_LEVEL: "info" });
  try {
    const id = await createCharacter(t.url);
    const secret = "I whisper the password swordfish";
    await postJson(`${t.url}/turn`, { character_id: id, user_action: secret });
    const lines = t.logs.map((l) => JSON.parse(l));
    const access = lines.filter((l) => l.msg === "request");
    assert.ok(access.some((l) => l.route === "/turn" && l.status === 200 && l.method === "POST"));
    for (const line of lines) {
      for (const key of ["time", "level", "msg", "trace_id", "span_id"]) {
        assert.ok(key in line, key);
      }
    }
    assert.equal(t.logs.some((l) => l.includes("swordfish")), false);
    const finished = lines.find((l) => l.msg === "turn_finished");
    assert.ok(finished.turn_id && finished.character_id === id);
  } finally {
    await t.close();
  }
});
