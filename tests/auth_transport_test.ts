/**
 * Identity and ownership on the streaming transports: SSE (including the
 * EventSource `?access_token=`) and WebSocket (`auth` first message).
 */
import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { postJson, startTestServer } from "./helpers/server.ts";
import { WsClient } from "./helpers/ws.ts";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const ENV = { DM_AUTH: "jwt", DM_JWT_SECRET: SECRET };

function token(sub: string) {
  return new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub)
    .setExpirationTime("1h").sign(new TextEncoder().encode(SECRET));
}

async function setup() {
  const t = await startTestServer(ENV);
  const alice = await token("alice");
  const bob = await token("bob");
  const created = await postJson(
    `${t.url}/characters`,
    { name: "Aria", race: "Elf", class_name: "Ranger" },
    { Authorization: `Bearer ${alice}` },
  );
  const id = created.body.character_id as string;
  const turn = await postJson(`${t.url}/turn`, { character_id: id, user_action: "I wait" }, {
    Authorization: `Bearer ${alice}`,
  });
  return { t, alice, bob, id, turnId: turn.body.turn_id as string };
}

Deno.test("SSE: another user's character and turn events answer 404", async () => {
  const { t, alice, bob, id, turnId } = await setup();
  try {
    const stream = await postJson(`${t.url}/turn/stream`, {
      character_id: id,
      user_action: "I steal",
    }, {
      Authorization: `Bearer ${bob}`,
    });
    assert.equal(stream.status, 404);
    assert.equal(stream.body.detail.error.type, "character_not_found");
    const replay = await fetch(`${t.url}/turns/${turnId}/events`, {
      headers: { Authorization: `Bearer ${bob}` },
    });
    assert.equal(replay.status, 404);
    assert.equal((await replay.json()).detail.error.type, "turn_not_found");
    const noToken = await fetch(`${t.url}/turns/${turnId}/events`);
    assert.equal(noToken.status, 401);
    await noToken.body?.cancel();
    const wrongQuery = await fetch(`${t.url}/turns/${turnId}/events?access_token=${bob}`);
    assert.equal(wrongQuery.status, 404);
    await wrongQuery.body?.cancel();
    // The owner replays with the real EventSource, which cannot set headers.
    const events: string[] = [];
    const source = new EventSource(`${t.url}/turns/${turnId}/events?access_token=${alice}`);
    await new Promise<void>((resolve, reject) => {
      source.onmessage = (e) => {
        if (e.data === "[DONE]") {
          source.close();
          resolve();
        } else events.push(JSON.parse(e.data).type);
      };
      source.onerror = () => reject(new Error("EventSource failed"));
    });
    assert.equal(events[0], "start");
    assert.equal(events.at(-1), "complete");
    assert.equal(
      t.logs.some((l) => l.includes(alice) || l.includes(bob)),
      false,
      "tokens are never logged",
    );
  } finally {
    await t.close();
  }
});

Deno.test("WebSocket: auth first, then only the user's own characters and turns", async () => {
  const { t, alice, bob, id, turnId } = await setup();
  try {
    const ws = await WsClient.connect(t.url);
    ws.send({ type: "auth", token: bob });
    assert.deepEqual(await ws.next(), { type: "authenticated", user_id: "bob" });
    ws.send({ type: "turn", character_id: id, user_action: "I steal" });
    const refused = await ws.next();
    assert.equal(refused.type, "error");
    assert.equal(refused.error_type, "character_not_found");
    ws.send({ type: "resume", turn_id: turnId, after_seq: 0 });
    assert.equal((await ws.next()).error_type, "turn_not_found");
    await ws.close();

    const owner = await WsClient.connect(t.url);
    owner.send({ type: "auth", token: alice });
    assert.equal((await owner.next()).type, "authenticated");
    owner.send({ type: "turn", character_id: id, user_action: "I look around" });
    const events = await owner.turn();
    assert.equal(events.at(-1).type, "complete");
    await owner.close();
  } finally {
    await t.close();
  }
});

Deno.test("WebSocket: a bad token closes with 4401", async () => {
  const t = await startTestServer(ENV);
  try {
    for (const bad of ["not-a-jwt", await token("x") + "tampered"]) {
      const ws = await WsClient.connect(t.url);
      ws.send({ type: "auth", token: bad });
      assert.equal((await ws.closed).code, 4401);
    }
  } finally {
    await t.close();
  }
});

Deno.test("WebSocket: with DM_AUTH=none an auth message is answered as the local user", async () => {
  const t = await startTestServer();
  try {
    const ws = await WsClient.connect(t.url);
    ws.send({ type: "auth", token: "anything" });
    assert.deepEqual(await ws.next(), { type: "authenticated", user_id: "local" });
    await ws.close();
  } finally {
    await t.close();
  }
});
