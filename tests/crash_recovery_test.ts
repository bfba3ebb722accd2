/**
 * `kill -9` in the middle of a turn leaves none of it written, and the
 * interrupted turn is marked failed when the service starts again.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { createCharacter, getJson, postJson } from "./helpers/server.ts";
import { spawnService } from "./helpers/process.ts";

function spawnServer(dbPath: string, delayMs: string) {
  return spawnService({ DM_SQLITE_PATH: dbPath, DM_SCRIPTED_DELAY_MS: delayMs });
}

Deno.test("kill -9 mid-turn leaves no partial writes; restart marks the turn failed", async () => {
  const dir = await Deno.makeTempDir();
  const db = `${dir}/dm.sqlite`;
  const first = await spawnServer(db, "0");
  const id = await createCharacter(first.url);
  await first.stop("SIGKILL");

  // A slow storyteller keeps the turn running long enough to be found.
  const slow = await spawnServer(db, "200");
  const pending = fetch(`${slow.url}/turn`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ character_id: id, user_action: "I walk into the crypt" }),
  }).catch(() => null);
  // Wait (by condition, not by time) until the turn is mid-stream: running,
  // with some of its token events already durable.
  const peek = new DatabaseSync(db, { readOnly: true });
  let runningTurn: string | null = null;
  while (runningTurn === null) {
    const row = peek.prepare(
      `SELECT t.turn_id FROM turns t WHERE t.status = 'running'
         AND EXISTS (SELECT 1 FROM turn_events e WHERE e.turn_id = t.turn_id AND e.seq > 2)`,
    ).get() as { turn_id: string } | undefined;
    runningTurn = row?.turn_id ?? null;
    if (runningTurn === null) await new Promise((r) => setTimeout(r, 20));
  }
  peek.close();
  await slow.stop("SIGKILL");
  await pending;

  const again = await spawnServer(db, "0");
  try {
    const record = await getJson(`${again.url}/turns/${runningTurn}`);
    assert.equal(record.status, 200);
    assert.equal(record.body.status, "failed");
    assert.equal(record.body.narrative, null);
    assert.equal(record.body.error_type, "interrupted");
    const view = await getJson(`${again.url}/characters/${id}`);
    assert.equal(view.body.turn_count, 0);
    assert.equal(view.body.recent_turns.length, 1, "only the intro");
    assert.equal(view.body.quest, null);
    assert.equal(view.body.pois.length, 1, "only the origin place");
    const next = await postJson(`${again.url}/turn`, {
      character_id: id,
      user_action: "I try again",
    });
    assert.equal(next.status, 200, "the character is playable again");
  } finally {
    await again.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
