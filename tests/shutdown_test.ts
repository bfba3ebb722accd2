/**
 * SIGTERM drains: a turn in flight finishes and is answered, then the
 * process exits 0.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { spawnService } from "./helpers/process.ts";
import { createCharacter, getJson } from "./helpers/server.ts";

async function waitForRunningTurn(db: string): Promise<string> {
  const peek = new DatabaseSync(db, { readOnly: true });
  try {
    while (true) {
      const row = peek.prepare(`SELECT turn_id FROM turns WHERE status = 'running'`).get() as
        | { turn_id: string }
        | undefined;
      if (row) return row.turn_id;
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    peek.close();
  }
}

Deno.test("SIGTERM lets the running turn finish, then exits 0", async () => {
  const dir = await Deno.makeTempDir();
  const db = `${dir}/dm.sqlite`;
  const service = await spawnService({
    DM_SQLITE_PATH: db,
    DM_SCRIPTED_DELAY_MS: "15",
    DM_SHUTDOWN_GRACE_MS: "60000",
  });
  try {
    const id = await createCharacter(service.url);
    const pending = fetch(`${service.url}/turn`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ character_id: id, user_action: "I walk to the tower" }),
    });
    const turnId = await waitForRunningTurn(db);
    service.child.kill("SIGTERM");
    const res = await pending;
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.turn_id, turnId);
    assert.equal(body.subsystem_summary.narrative_persisted, true);
    const status = await service.stop();
    assert.equal(status.code, 0);
    assert.ok(service.lines.some((l) => l.includes('"msg":"stopped"')));
  } finally {
    await service.stop();
  }
  // The finished turn is durable.
  const again = await spawnService({ DM_SQLITE_PATH: db });
  try {
    const turns = new DatabaseSync(db, { readOnly: true })
      .prepare(`SELECT status FROM turns`).all() as Array<{ status: string }>;
    assert.deepEqual(turns.map((t) => t.status), ["completed"]);
    const view = await getJson(`${again.url}/health`);
    assert.equal(view.status, 200);
  } finally {
    await again.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
