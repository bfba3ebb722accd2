/**
 * Tests of the embedded SQLite journey log, through the store port.
 * Direct SQL is used only to look at what the port cannot show (schema,
 * archived quests) and never to set up state.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DatabaseSync } from "node:sqlite";
import { DmError } from "../src/errors.ts";
import type { SubsystemSummary, TurnEvent } from "../src/shared/events.ts";
import type { Character, CombatState, Enemy, Store, TurnOutcomeRecord } from "../src/store/port.ts";
import { INTERRUPTED_MESSAGE, LATEST_VERSION, SqliteStore } from "../src/store/sqlite/mod.ts";

const OWNER = "owner-a";
const OTHER = "owner-b";
const REPO = fileURLToPath(new URL("..", import.meta.url));
const CHILD = fileURLToPath(new URL("./fixtures/sqlite_crash_child.ts", import.meta.url));

/** A clock tests move by hand; starts at a fixed instant. */
function manualClock(start = "2026-01-01T00:00:00.000Z") {
  let t = Date.parse(start);
  return {
    now: () => new Date(t),
    advance(ms: number) {
      t += ms;
    },
  };
}

function memoryStore(): SqliteStore {
  return new SqliteStore(":memory:", { now: manualClock().now });
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dm-sqlite-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const INTRO_LOCATION = {
  id: "inn:rusty_tankard",
  display_name: "The Rusty Tankard",
  minor: "the common room",
  poi_id: null,
};

function createHero(store: Store, owner = OWNER, withOrigin = true): Promise<Character> {
  return store.createCharacter(
    owner,
    { name: "Brannoc", race: "Dwarf", class_name: "Fighter", custom_prompt: "gruff" },
    {
      narrative: "Brannoc sets down his axe by the fire.",
      location: INTRO_LOCATION,
      origin: withOrigin
        ? { name: "The Rusty Tankard", description: "A smoky inn.", tags: ["inn", "town"] }
        : null,
    },
  );
}

const TS = "2026-01-01T00:00:00.000Z";

function startEvent(turn_id: string, character_id: string): TurnEvent {
  return { type: "start", turn_id, seq: 1, timestamp: TS, character_id };
}

function token(turn_id: string, seq: number, content: string): TurnEvent {
  return { type: "token", turn_id, seq, timestamp: TS, content };
}

function summary(): SubsystemSummary {
  const none = { action: "none", success: null, error: null };
  return {
    quest_change: none,
    combat_change: none,
    poi_change: none,
    narrative_persisted: true,
    narrative_error: null,
  };
}

function complete(turn_id: string, seq: number, narrative: string): TurnEvent {
  return {
    type: "complete",
    turn_id,
    seq,
    timestamp: TS,
    narrative,
    intents: null,
    subsystem_summary: summary(),
    timing: { total_duration_ms: 10, time_to_first_token_ms: 1, total_tokens: 3 },
  };
}

function outcome(narrative: string): TurnOutcomeRecord {
  return {
    narrative,
    intents: { quest: "none" },
    subsystem_summary: summary(),
    policy: { quest_roll: 0.5 },
    usage: { input_tokens: 100, output_tokens: 20 },
  };
}

async function begin(
  store: Store,
  character_id: string,
  idempotency: { key: string; request_hash: string } | null = null,
  owner = OWNER,
) {
  const turn_id = crypto.randomUUID();
  const result = await store.beginTurn({
    turn_id,
    character_id,
    owner_id: owner,
    user_action: "I look around.",
    idempotency,
    start_event: startEvent(turn_id, character_id),
  });
  return { turn_id, result };
}

/** Begin and open a turn that must start. */
async function openNew(store: Store, character_id: string) {
  const { turn_id, result } = await begin(store, character_id);
  assert.deepEqual(result, { kind: "started" });
  return { turn_id, tx: store.openTurn(OWNER, character_id, turn_id) };
}

/** Play one plain narrated turn. */
async function playTurn(store: Store, character_id: string, narrative: string): Promise<string> {
  const { turn_id, tx } = await openNew(store, character_id);
  await tx.appendNarrative({ user_action: "I look around.", narrative });
  await tx.commit(outcome(narrative), [complete(turn_id, 2, narrative)]);
  return turn_id;
}

function enemies(n: number): Enemy[] {
  return Array.from({ length: n }, (_, i) => ({
    enemy_id: `goblin-${i}`,
    name: `Goblin ${i}`,
    description: null,
    threat: "low",
    status: "Healthy",
  }));
}

function combat(n: number): CombatState {
  return { combat_id: "c1", turn: 1, enemies: enemies(n), notes: "ambush", started_at: TS };
}

// ---------------------------------------------------------------------------
// Schema and persistence

Deno.test("migrations create the schema, WAL is on and user_version is tracked", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "nested", "deeper", "dm.sqlite");
    const store = new SqliteStore(path);
    assert.equal(store.kind, "sqlite");
    assert.equal(await store.ready(), true);
    await store.close();

    const raw = new DatabaseSync(path);
    try {
      const version = raw.prepare("PRAGMA user_version").get() as { user_version: number };
      assert.equal(version.user_version, LATEST_VERSION);
      const mode = raw.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
      assert.equal(mode.journal_mode, "wal");
      const tables = (raw.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name",
      ).all() as { name: string }[]).map((r) => r.name);
      for (
        const t of [
          "characters",
          "combat",
          "idempotency",
          "narrative_turns",
          "plugin_state",
          "pois",
          "quests",
          "turn_events",
          "turns",
        ]
      ) {
        assert.ok(tables.includes(t), `missing table ${t}`);
      }
    } finally {
      raw.close();
    }

    // Reopening an up-to-date file applies nothing and keeps working.
    const again = new SqliteStore(path);
    assert.equal(await again.ready(), true);
    await again.close();
  });
});

Deno.test("a database written by a newer schema is refused", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "dm.sqlite");
    await new SqliteStore(path).close();
    const raw = new DatabaseSync(path);
    raw.exec(`PRAGMA user_version = ${LATEST_VERSION + 1}`);
    raw.close();
    assert.throws(() => new SqliteStore(path), /newer than this service supports/);
  });
});

Deno.test("data survives closing and reopening a file database", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "dm.sqlite");
    const first = new SqliteStore(path);
    const hero = await createHero(first);
    const { turn_id, tx } = await openNew(first, hero.character_id);
    const quest = await tx.startQuest({
      title: "Rats",
      summary: "Clear the cellar.",
      details: { reward: 5 },
      poi_id: null,
    });
    await tx.advanceQuest("Found the cellar door.");
    await tx.createPoi({ name: "Cellar", description: "Damp.", tags: ["dungeon"] });
    await tx.putPluginState("inventory", { items: ["torch"] });
    await tx.appendNarrative({ user_action: "I go down.", narrative: "It is dark." });
    await tx.commit(outcome("It is dark."), [complete(turn_id, 2, "It is dark.")]);
    const before = await first.getCharacter(OWNER, hero.character_id);
    const turnBefore = await first.getTurn(turn_id);
    await first.close();

    const second = new SqliteStore(path);
    try {
      const after = await second.getCharacter(OWNER, hero.character_id);
      assert.deepEqual(after, before);
      assert.equal(after?.quest?.quest_id, quest.quest_id);
      assert.deepEqual(after?.quest?.progress, ["Found the cellar door."]);
      assert.deepEqual(await second.getTurn(turn_id), turnBefore);
      assert.deepEqual(
        (await second.getEvents(turn_id, 0)).map((e) => e.type),
        ["start", "complete"],
      );
    } finally {
      await second.close();
    }
  });
});

// ---------------------------------------------------------------------------
// Characters

Deno.test("createCharacter stores the character, the intro turn and the origin POI", async () => {
  const store = memoryStore();
  try {
    const hero = await createHero(store);
    assert.equal(hero.status, "Healthy");
    assert.equal(hero.owner_id, OWNER);
    assert.match(hero.character_id, /^[0-9a-f-]{36}$/);
    assert.deepEqual(hero.location, INTRO_LOCATION);
    assert.equal(hero.created_at, TS);

    const view = await store.getCharacter(OWNER, hero.character_id);
    assert.ok(view);
    assert.deepEqual(view.character, hero);
    assert.equal(view.quest, null);
    assert.equal(view.combat, null);
    assert.equal(view.turn_count, 0, "the intro is not a played turn");
    assert.equal(view.turns_since_last_quest, 0);
    assert.equal(view.turns_since_last_poi, 0);
    assert.deepEqual(view.plugin_state, {});
    assert.deepEqual(view.recent_turns, [{
      user_action: "Begins their journey.",
      narrative: "Brannoc sets down his axe by the fire.",
      created_at: TS,
    }]);
    assert.equal(view.pois.length, 1);
    assert.equal(view.pois[0].name, "The Rusty Tankard");
    assert.deepEqual(view.pois[0].tags, ["inn", "town"]);

    const bare = await createHero(store, OWNER, false);
    assert.deepEqual(await store.listPois(OWNER, bare.character_id), []);
    assert.notEqual(bare.character_id, hero.character_id);
  } finally {
    await store.close();
  }
});

Deno.test("another owner cannot see or use a character", async () => {
  const store = memoryStore();
  try {
    const hero = await createHero(store);
    assert.equal(await store.loadContext(OTHER, hero.character_id), null);
    assert.equal(await store.getCharacter(OTHER, hero.character_id), null);
    assert.deepEqual(await store.listPois(OTHER, hero.character_id), []);
    assert.deepEqual(await store.randomPois(OTHER, hero.character_id, 5), []);
    // Missing and foreign look the same.
    assert.equal(await store.loadContext(OWNER, crypto.randomUUID()), null);
    await assert.rejects(
      begin(store, hero.character_id, null, OTHER),
      (e) => e instanceof DmError && e.type === "character_not_found",
    );
    const { turn_id } = await begin(store, hero.character_id);
    assert.throws(() => store.openTurn(OTHER, hero.character_id, turn_id), /not found/);
  } finally {
    await store.close();
  }
});

Deno.test("recent_turns keeps the last 20 narrative turns, oldest first", async () => {
  const store = memoryStore();
  try {
    const hero = await createHero(store);
    for (let i = 1; i <= 25; i++) await playTurn(store, hero.character_id, `narrative ${i}`);
    const context = await store.loadContext(OWNER, hero.character_id);
    assert.ok(context);
    assert.equal(context.turn_count, 25);
    assert.equal(context.recent_turns.length, 20);
    assert.equal(context.recent_turns[0].narrative, "narrative 6");
    assert.equal(context.recent_turns[19].narrative, "narrative 25");
  } finally {
    await store.close();
  }
});

Deno.test("POIs: listed newest first, random ones are a bounded subset", async () => {
  const clock = manualClock();
  const store = new SqliteStore(":memory:", { now: clock.now });
  try {
    const hero = await createHero(store);
    const { turn_id, tx } = await openNew(store, hero.character_id);
    clock.advance(1000);
    await tx.createPoi({ name: "Mill", description: "Creaky.", tags: [] });
    clock.advance(1000);
    await tx.createPoi({ name: "Bridge", description: "Stone.", tags: ["river"] });
    await tx.commit(outcome("x"), [complete(turn_id, 2, "x")]);

    const listed = await store.listPois(OWNER, hero.character_id);
    assert.deepEqual(listed.map((p) => p.name), ["Bridge", "Mill", "The Rusty Tankard"]);
    const view = await store.getCharacter(OWNER, hero.character_id);
    assert.deepEqual(view?.pois, listed);

    const ids = new Set(listed.map((p) => p.poi_id));
    const two = await store.randomPois(OWNER, hero.character_id, 2);
    assert.equal(two.length, 2);
    assert.equal(new Set(two.map((p) => p.poi_id)).size, 2);
    for (const p of two) assert.ok(ids.has(p.poi_id));
    assert.equal((await store.randomPois(OWNER, hero.character_id, 10)).length, 3);
    assert.deepEqual(await store.randomPois(OWNER, hero.character_id, 0), []);
  } finally {
    await store.close();
  }
});

// ---------------------------------------------------------------------------
// beginTurn

Deno.test("beginTurn: started, duplicate, key_reused, busy, and key expiry", async () => {
  const clock = manualClock();
  const store = new SqliteStore(":memory:", { now: clock.now });
  try {
    const hero = await createHero(store);
    const id = hero.character_id;
    const key = { key: "k1", request_hash: "h1" };

    const first = await begin(store, id, key);
    assert.deepEqual(first.result, { kind: "started" });
    const record = await store.getTurn(first.turn_id);
    assert.equal(record?.status, "running");
    assert.equal(record?.user_action, "I look around.");
    assert.deepEqual(await store.getEvents(first.turn_id, 0), [startEvent(first.turn_id, id)]);

    const dup = await begin(store, id, key);
    assert.deepEqual(dup.result, { kind: "duplicate", turn_id: first.turn_id });
    assert.equal(await store.getTurn(dup.turn_id), null, "a duplicate records no turn");
    assert.deepEqual(
      await begin(store, id, { key: "k1", request_hash: "h2" }).then((r) => r.result),
      {
        kind: "key_reused",
      },
    );
    const busy = await begin(store, id, { key: "k2", request_hash: "h1" });
    assert.deepEqual(busy.result, { kind: "busy", turn_id: first.turn_id });
    // A busy answer must not burn the key: the client retries with it.
    assert.equal(await store.findIdempotent(OWNER, "k2", "h1"), null);
    assert.deepEqual(await begin(store, id).then((r) => r.result), {
      kind: "busy",
      turn_id: first.turn_id,
    });

    // Keys are per owner.
    assert.equal(await store.findIdempotent(OTHER, "k1", "h1"), null);
    assert.deepEqual(await store.findIdempotent(OWNER, "k1", "h1"), {
      kind: "duplicate",
      turn_id: first.turn_id,
    });
    assert.deepEqual(await store.findIdempotent(OWNER, "k1", "other"), { kind: "key_reused" });

    await store.openTurn(OWNER, id, first.turn_id).fail("llm_error", []);

    clock.advance(24 * 60 * 60 * 1000 - 1);
    assert.deepEqual(
      await begin(store, id, { key: "k1", request_hash: "h2" }).then((r) => r.result),
      {
        kind: "key_reused",
      },
    );
    clock.advance(1);
    assert.equal(await store.findIdempotent(OWNER, "k1", "h1"), null, "expired after 24 h");
    const reuse = await begin(store, id, { key: "k1", request_hash: "h2" });
    assert.deepEqual(reuse.result, { kind: "started" });
    assert.deepEqual(await store.findIdempotent(OWNER, "k1", "h2"), {
      kind: "duplicate",
      turn_id: reuse.turn_id,
    });
  } finally {
    await store.close();
  }
});

Deno.test("beginTurn refuses a dead character with game_over", async () => {
  const store = memoryStore();
  try {
    const hero = await createHero(store);
    const { turn_id, tx } = await openNew(store, hero.character_id);
    await tx.setStatus("Dead");
    await tx.appendNarrative({ user_action: "I fight.", narrative: "I fall." });
    await tx.commit(outcome("I fall."), [complete(turn_id, 2, "I fall.")]);
    await assert.rejects(
      begin(store, hero.character_id),
      (e) => e instanceof DmError && e.type === "game_over",
    );
  } finally {
    await store.close();
  }
});

Deno.test("50 concurrent beginTurn calls make exactly one turn", async () => {
  const store = memoryStore();
  try {
    const hero = await createHero(store);
    const sameKey = await Promise.all(
      Array.from(
        { length: 50 },
        () => begin(store, hero.character_id, { key: "k", request_hash: "h" }),
      ),
    );
    const started = sameKey.filter((r) => r.result.kind === "started");
    assert.equal(started.length, 1);
    const winner = started[0].turn_id;
    for (const r of sameKey) {
      if (r.turn_id === winner) continue;
      assert.deepEqual(r.result, { kind: "duplicate", turn_id: winner });
      assert.equal(await store.getTurn(r.turn_id), null);
    }
    await store.openTurn(OWNER, hero.character_id, winner).fail("cancelled", []);

    const distinctKeys = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) => begin(store, hero.character_id, { key: `k-${i}`, request_hash: "h" }),
      ),
    );
    const startedAgain = distinctKeys.filter((r) => r.result.kind === "started");
    assert.equal(startedAgain.length, 1);
    for (const r of distinctKeys) {
      if (r.result.kind === "started") continue;
      assert.deepEqual(r.result, { kind: "busy", turn_id: startedAgain[0].turn_id });
    }
  } finally {
    await store.close();
  }
});

// ---------------------------------------------------------------------------
// Child processes

/** Lines of a child's stdout, as they arrive. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    let i: number;
    while ((i = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
    }
  }
  if (buffer !== "") yield buffer;
}

/** The first line starting with `prefix`, or null if the child ended first; bounded in time. */
async function lineStarting(
  out: AsyncGenerator<string>,
  prefix: string,
  timeoutMs = 30_000,
): Promise<string | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${prefix} line in ${timeoutMs} ms`)), timeoutMs);
  });
  const search = (async () => {
    for (;;) {
      const next = await out.next();
      if (next.done) return null;
      if (next.value.startsWith(prefix)) return next.value.slice(prefix.length).trim();
    }
  })();
  try {
    return await Promise.race([search, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function spawnChild(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", CHILD, ...args],
    cwd: REPO,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
}

async function drain(out: AsyncGenerator<string>): Promise<void> {
  for await (const _ of out) { /* discard */ }
}

Deno.test("a turn interrupted by SIGKILL is failed on recovery and wrote nothing", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "crash.sqlite");
    const child = spawnChild(["crash", path]);
    await child.stdin.close();
    const out = lines(child.stdout);
    let ready: string | null;
    try {
      ready = await lineStarting(out, "READY");
    } finally {
      child.kill("SIGKILL");
      await drain(out);
    }
    const status = await child.status;
    assert.equal(status.success, false);
    assert.equal(status.signal, "SIGKILL");
    assert.ok(ready, "the child never reported READY");
    const { character_id, turn_id } = JSON.parse(ready) as {
      character_id: string;
      turn_id: string;
    };

    const store = new SqliteStore(path);
    try {
      assert.equal((await store.getTurn(turn_id))?.status, "running", "the crash left it running");
      assert.equal(await store.recoverInterrupted(), 1);
      assert.equal(await store.recoverInterrupted(), 0, "recovery is done once");

      const record = await store.getTurn(turn_id);
      assert.equal(record?.status, "failed");
      assert.equal(record?.error_type, "interrupted");
      assert.ok(record?.completed_at);
      assert.equal(record?.narrative, null);

      const events = await store.getEvents(turn_id, 0);
      assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4]);
      const last = events[events.length - 1];
      assert.deepEqual({ ...last, timestamp: "" }, {
        type: "error",
        turn_id,
        seq: 4,
        timestamp: "",
        error_type: "interrupted",
        message: INTERRUPTED_MESSAGE,
        recoverable: true,
      });

      const view = await store.getCharacter("crash-owner", character_id);
      assert.ok(view);
      assert.equal(view.quest, null, "no quest of the crashed turn");
      assert.deepEqual(view.pois.map((p) => p.name), ["Mirewood Edge"], "no POI of the turn");
      assert.equal(view.recent_turns.length, 1, "only the intro narrative");
      assert.equal(view.turn_count, 0);
      assert.equal(view.character.status, "Healthy");
      assert.equal(view.character.location.id, "wood:mirewood");
      assert.deepEqual(view.plugin_state, {});

      // The character is usable again.
      const next = await begin(store, character_id, null, "crash-owner");
      assert.deepEqual(next.result, { kind: "started" });
    } finally {
      await store.close();
    }
  });
});

Deno.test("beginTurn racing from separate processes on one file makes one turn", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "race.sqlite");
    const setup = new SqliteStore(path);
    const hero = await createHero(setup);
    await setup.close();

    // Each child hammers beginTurn in a loop so the connections' write
    // transactions really overlap; a SQLITE_BUSY would come back as an error.
    const children = Array.from(
      { length: 6 },
      () => spawnChild(["begin", path, OWNER, hero.character_id, "race-key", "hash", "200"]),
    );
    const outs = children.map((c) => lines(c.stdout));
    type Outcome = { turn_id: string; result?: { kind: string; turn_id?: string }; error?: string };
    const results: Outcome[] = [];
    try {
      // Release them together only once every connection is open.
      for (const out of outs) assert.notEqual(await lineStarting(out, "READY"), null);
      await Promise.all(children.map(async (c) => {
        const writer = c.stdin.getWriter();
        await writer.write(new TextEncoder().encode("GO\n"));
        await writer.close();
      }));
      for (const out of outs) {
        const line = await lineStarting(out, "RESULT");
        assert.ok(line, "a child ended without a result");
        results.push(...JSON.parse(line) as Outcome[]);
      }
    } finally {
      for (const c of children) {
        try {
          c.kill("SIGKILL");
        } catch { /* already exited */ }
      }
      await Promise.all(outs.map(drain));
      await Promise.all(children.map((c) => c.status));
    }

    assert.equal(results.length, 1200);
    assert.deepEqual(results.filter((r) => r.error !== undefined), [], "no call may fail");
    const started = results.filter((r) => r.result?.kind === "started");
    assert.equal(started.length, 1);
    for (const r of results) {
      if (r === started[0]) continue;
      // Calls with the shared key see the winner as a duplicate (when the
      // winner used that key) or as busy; calls with their own key see busy.
      assert.ok(r.result?.kind === "duplicate" || r.result?.kind === "busy");
      assert.equal(r.result?.turn_id, started[0].turn_id);
    }
    const store = new SqliteStore(path);
    try {
      assert.equal((await store.getTurn(started[0].turn_id))?.status, "running");
      assert.equal(await store.getTurn(results[results.length - 1].turn_id), null);
    } finally {
      await store.close();
    }
  });
});

// ---------------------------------------------------------------------------
// Turn transactions

Deno.test("commit applies every buffered write, the counters, the record and the events", async () => {
  const clock = manualClock();
  const store = new SqliteStore(":memory:", { now: clock.now });
  try {
    const hero = await createHero(store);
    const id = hero.character_id;
    const [origin] = await store.listPois(OWNER, id);
    const { turn_id, tx } = await openNew(store, id);

    clock.advance(5_000);
    const quest = await tx.startQuest({
      title: "The Rat King",
      summary: "Something gnaws below.",
      details: { giver: "innkeeper" },
      poi_id: origin.poi_id,
    });
    assert.equal(quest.status, "active");
    assert.deepEqual(quest.progress, []);
    await tx.advanceQuest("Heard scratching.");
    await tx.advanceQuest("Found a tunnel.");
    const cellar = await tx.createPoi({ name: "Cellar", description: "Damp.", tags: ["dark"] });
    assert.match(cellar.poi_id, /^[0-9a-f-]{36}$/);
    assert.equal(cellar.created_at, clock.now().toISOString());
    const location = {
      id: "inn:cellar",
      display_name: "The Cellar",
      minor: "behind the barrels",
      poi_id: cellar.poi_id,
    };
    await tx.setLocation(location);
    await tx.setCombat(combat(3));
    await tx.setStatus("Wounded");
    await tx.putPluginState("inventory", { items: ["torch"] });
    await tx.putPluginState("inventory", { items: ["torch", "rope"] });
    await tx.putPluginState("reputation", 3);
    await tx.appendNarrative({ user_action: "I go down.", narrative: "Rats everywhere." });

    // Buffered, not written.
    const untouched = await store.getCharacter(OWNER, id);
    assert.equal(untouched?.quest, null);
    assert.equal(untouched?.pois.length, 1);
    assert.equal(untouched?.turn_count, 0);

    await store.appendEvents(turn_id, [token(turn_id, 2, "Rats "), token(turn_id, 3, "every")]);
    await tx.commit(outcome("Rats everywhere."), [
      token(turn_id, 3, "DIFFERENT"), // already flushed: must not replace the stored one
      token(turn_id, 4, "where."),
      complete(turn_id, 5, "Rats everywhere."),
    ]);

    const view = await store.getCharacter(OWNER, id);
    assert.ok(view);
    assert.deepEqual(view.quest, {
      ...quest,
      progress: ["Heard scratching.", "Found a tunnel."],
    });
    assert.deepEqual(view.combat, combat(3));
    assert.equal(view.character.status, "Wounded");
    assert.deepEqual(view.character.location, location);
    assert.deepEqual(view.plugin_state, { inventory: { items: ["torch", "rope"] }, reputation: 3 });
    assert.deepEqual(view.pois.map((p) => p.poi_id), [cellar.poi_id, origin.poi_id]);
    assert.deepEqual(view.recent_turns.map((t) => t.narrative), [
      "Brannoc sets down his axe by the fire.",
      "Rats everywhere.",
    ]);
    assert.equal(view.turn_count, 1);
    assert.equal(view.turns_since_last_quest, 0);
    assert.equal(view.turns_since_last_poi, 0);

    const record = await store.getTurn(turn_id);
    assert.deepEqual(record, {
      turn_id,
      character_id: id,
      owner_id: OWNER,
      status: "completed",
      user_action: "I look around.",
      narrative: "Rats everywhere.",
      intents: { quest: "none" },
      subsystem_summary: summary(),
      policy: { quest_roll: 0.5 },
      usage: { input_tokens: 100, output_tokens: 20 },
      error_type: null,
      created_at: TS,
      completed_at: clock.now().toISOString(),
    });
    const events = await store.getEvents(turn_id, 0);
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5]);
    assert.equal((events[2] as { content: string }).content, "every");

    // A turn without quest or POI moves both cooldown counters.
    await playTurn(store, id, "Quiet.");
    const later = await store.loadContext(OWNER, id);
    assert.equal(later?.turn_count, 2);
    assert.equal(later?.turns_since_last_quest, 1);
    assert.equal(later?.turns_since_last_poi, 1);

    // Ending the quest archives it and frees the slot for a new one.
    const third = await openNew(store, id);
    await third.tx.endQuest("completed");
    await third.tx.setCombat(null);
    await third.tx.startQuest({ title: "Next", summary: "More.", details: null, poi_id: null });
    await third.tx.appendNarrative({ user_action: "Onward.", narrative: "Onward." });
    await third.tx.commit(outcome("Onward."), []);
    const after = await store.loadContext(OWNER, id);
    assert.equal(after?.quest?.title, "Next");
    assert.equal(after?.combat, null);
    assert.equal(after?.turns_since_last_quest, 0);
    assert.equal(after?.turns_since_last_poi, 2);
  } finally {
    await store.close();
  }
});

Deno.test("writer rule breaks throw at the call", async () => {
  const store = memoryStore();
  try {
    const hero = await createHero(store);
    const id = hero.character_id;
    const { turn_id, tx } = await openNew(store, id);

    await assert.rejects(tx.setCombat(combat(6)), /6 enemies, at most 5/);
    await tx.setCombat(combat(5));
    await assert.rejects(tx.advanceQuest("x"), /no active quest/);
    await assert.rejects(tx.endQuest("completed"), /no active quest/);
    await tx.startQuest({ title: "A", summary: "a", details: null, poi_id: null });
    await assert.rejects(
      tx.startQuest({ title: "B", summary: "b", details: null, poi_id: null }),
      /already started this turn/,
    );
    await tx.endQuest("abandoned");
    // Even with the first one ended, a turn starts at most one quest.
    await assert.rejects(
      tx.startQuest({ title: "C", summary: "c", details: null, poi_id: null }),
      /already started this turn/,
    );
    await tx.setStatus("Dead");
    await assert.rejects(tx.setStatus("Healthy"), /Dead and cannot become Healthy/);
    await tx.appendNarrative({ user_action: "a", narrative: "b" });
    await assert.rejects(tx.appendNarrative({ user_action: "a", narrative: "b" }), /already/);
    await assert.rejects(tx.putPluginState("p", undefined), /not JSON-serialisable/);
    await assert.rejects(
      tx.commit(outcome("b"), [token("someone-else", 2, "x")]),
      /belongs to turn someone-else/,
    );
    await tx.commit(outcome("b"), []);
    await assert.rejects(tx.setStatus("Dead"), /already committed or failed/);

    // State loaded at open time counts too: a quest still active from before.
    const hero2 = await createHero(store);
    const first = await openNew(store, hero2.character_id);
    await first.tx.startQuest({ title: "A", summary: "a", details: null, poi_id: null });
    await first.tx.commit(outcome("x"), []);
    const second = await openNew(store, hero2.character_id);
    await assert.rejects(
      second.tx.startQuest({ title: "B", summary: "b", details: null, poi_id: null }),
      /still active/,
    );
    await second.tx.fail("internal_error", []);
    assert.equal((await store.getTurn(turn_id))?.status, "completed");
  } finally {
    await store.close();
  }
});

Deno.test("a commit that fails in the database leaves no partial writes", async () => {
  const store = memoryStore();
  try {
    const hero = await createHero(store);
    const id = hero.character_id;
    const { turn_id } = await openNew(store, id);
    // Two units of work on one turn both see "no active quest"; only the
    // database's one-active-quest index can catch the second.
    const winner = store.openTurn(OWNER, id, turn_id);
    const loser = store.openTurn(OWNER, id, turn_id);

    await loser.createPoi({ name: "Loser POI", description: "-", tags: [] });
    await loser.setLocation({ id: "x", display_name: "X", minor: null, poi_id: null });
    await loser.setCombat(combat(2));
    await loser.putPluginState("loser", true);
    await loser.appendNarrative({ user_action: "a", narrative: "loser narrative" });
    await loser.startQuest({ title: "Loser", summary: "-", details: null, poi_id: null });
    await loser.setStatus("Wounded");

    await winner.startQuest({ title: "Winner", summary: "-", details: null, poi_id: null });
    await winner.commit(outcome("w"), [complete(turn_id, 2, "w")]);
    const snapshot = await store.getCharacter(OWNER, id);

    await assert.rejects(
      loser.commit(outcome("l"), [complete(turn_id, 3, "l")]),
      /UNIQUE constraint failed/,
    );
    assert.deepEqual(await store.getCharacter(OWNER, id), snapshot);
    assert.deepEqual((await store.getEvents(turn_id, 0)).map((e) => e.seq), [1, 2]);
    assert.equal((await store.getTurn(turn_id))?.narrative, "w");
  } finally {
    await store.close();
  }
});

Deno.test("a commit whose turn record update fails rolls back the writes before it", async () => {
  const store = memoryStore();
  try {
    const hero = await createHero(store);
    const id = hero.character_id;
    const { turn_id } = await openNew(store, id);
    const late = store.openTurn(OWNER, id, turn_id);
    await late.createPoi({ name: "Late POI", description: "-", tags: [] });
    await late.startQuest({ title: "Late", summary: "-", details: null, poi_id: null });
    await late.appendNarrative({ user_action: "a", narrative: "late" });
    await late.putPluginState("late", 1);

    await store.openTurn(OWNER, id, turn_id).fail("llm_timeout", []);
    const snapshot = await store.getCharacter(OWNER, id);
    // Every buffered write succeeds; the last step finds the turn no longer running.
    await assert.rejects(late.commit(outcome("late"), []), /no longer running/);
    assert.deepEqual(await store.getCharacter(OWNER, id), snapshot);
    assert.equal(snapshot?.quest, null);
    assert.equal(snapshot?.pois.length, 1);
    assert.equal((await store.getTurn(turn_id))?.status, "failed");
  } finally {
    await store.close();
  }
});

Deno.test("fail() writes only the record and the events", async () => {
  const clock = manualClock();
  const store = new SqliteStore(":memory:", { now: clock.now });
  try {
    const hero = await createHero(store);
    const id = hero.character_id;
    const before = await store.getCharacter(OWNER, id);
    const { turn_id, tx } = await openNew(store, id);
    await tx.startQuest({ title: "Q", summary: "-", details: null, poi_id: null });
    await tx.createPoi({ name: "P", description: "-", tags: [] });
    await tx.setStatus("Dead");
    await tx.appendNarrative({ user_action: "a", narrative: "n" });
    await tx.putPluginState("p", 1);
    clock.advance(2_000);
    const error: TurnEvent = {
      type: "error",
      turn_id,
      seq: 3,
      timestamp: TS,
      error_type: "llm_timeout",
      message: "too slow",
      recoverable: true,
    };
    await tx.fail("llm_timeout", [token(turn_id, 2, "partial"), error]);

    assert.deepEqual(await store.getCharacter(OWNER, id), before);
    const record = await store.getTurn(turn_id);
    assert.equal(record?.status, "failed");
    assert.equal(record?.error_type, "llm_timeout");
    assert.equal(record?.completed_at, clock.now().toISOString());
    assert.equal(record?.narrative, null);
    assert.equal(record?.subsystem_summary, null);
    assert.deepEqual(await store.getEvents(turn_id, 0), [
      startEvent(turn_id, id),
      token(turn_id, 2, "partial"),
      error,
    ]);
    await assert.rejects(tx.commit(outcome("n"), []), /already committed or failed/);

    // The character is free again.
    assert.deepEqual((await begin(store, id)).result, { kind: "started" });
  } finally {
    await store.close();
  }
});

Deno.test("a failed commit can still be followed by fail()", async () => {
  const store = memoryStore();
  try {
    const hero = await createHero(store);
    const { turn_id, tx } = await openNew(store, hero.character_id);
    await tx.appendNarrative({ user_action: "a", narrative: "n" });
    await assert.rejects(tx.commit(outcome("n"), [token("wrong", 2, "x")]));
    await tx.fail("internal_error", []);
    assert.equal((await store.getTurn(turn_id))?.status, "failed");
    assert.equal((await store.loadContext(OWNER, hero.character_id))?.turn_count, 0);
  } finally {
    await store.close();
  }
});

// ---------------------------------------------------------------------------
// Events and recovery

Deno.test("appendEvents is idempotent and getEvents filters by seq in order", async () => {
  const store = memoryStore();
  try {
    const hero = await createHero(store);
    const { turn_id } = await begin(store, hero.character_id);
    await store.appendEvents(turn_id, [token(turn_id, 3, "c"), token(turn_id, 2, "b")]);
    await store.appendEvents(turn_id, [token(turn_id, 2, "B!"), token(turn_id, 4, "d")]);
    await store.appendEvents(turn_id, []);

    const all = await store.getEvents(turn_id, 0);
    assert.deepEqual(all.map((e) => e.seq), [1, 2, 3, 4]);
    assert.deepEqual(all.slice(1), [
      token(turn_id, 2, "b"),
      token(turn_id, 3, "c"),
      token(turn_id, 4, "d"),
    ]);
    assert.deepEqual((await store.getEvents(turn_id, 2)).map((e) => e.seq), [3, 4]);
    assert.deepEqual(await store.getEvents(turn_id, 4), []);
    assert.deepEqual(await store.getEvents(crypto.randomUUID(), 0), []);

    // A bad batch is refused whole.
    await assert.rejects(
      store.appendEvents(turn_id, [token(turn_id, 5, "e"), token("other", 6, "f")]),
      /belongs to turn other/,
    );
    assert.deepEqual(await store.getEvents(turn_id, 4), []);
  } finally {
    await store.close();
  }
});

Deno.test("recoverInterrupted fails running turns and ends their logs with an error", async () => {
  const store = memoryStore();
  try {
    const a = await createHero(store);
    const b = await createHero(store);
    const ta = await begin(store, a.character_id);
    const tb = await begin(store, b.character_id);
    await store.appendEvents(ta.turn_id, [token(ta.turn_id, 2, "x"), token(ta.turn_id, 3, "y")]);
    const done = await playTurn(store, (await createHero(store)).character_id, "finished");

    assert.equal(await store.recoverInterrupted(), 2);
    for (const [turn_id, lastSeq] of [[ta.turn_id, 4], [tb.turn_id, 2]] as const) {
      const record = await store.getTurn(turn_id);
      assert.equal(record?.status, "failed");
      assert.equal(record?.error_type, "interrupted");
      const events = await store.getEvents(turn_id, 0);
      const last = events[events.length - 1];
      assert.equal(last.seq, lastSeq);
      assert.equal(last.type, "error");
    }
    assert.equal((await store.getTurn(done))?.status, "completed");
    assert.equal(await store.recoverInterrupted(), 0);
  } finally {
    await store.close();
  }
});

Deno.test("close is idempotent and ready() reports a closed store", async () => {
  const store = memoryStore();
  assert.equal(await store.ready(), true);
  await store.close();
  await store.close();
  assert.equal(await store.ready(), false);
  await assert.rejects(store.getTurn("x"));
});

Deno.test("openTurn refuses a turn that is not running", async () => {
  const store = memoryStore();
  try {
    const hero = await createHero(store);
    assert.throws(
      () => store.openTurn(OWNER, hero.character_id, crypto.randomUUID()),
      /not found/,
    );
    const turn_id = await playTurn(store, hero.character_id, "n");
    assert.throws(
      () => store.openTurn(OWNER, hero.character_id, turn_id),
      /completed, not running/,
    );
  } finally {
    await store.close();
  }
});
