/**
 * The journey-log adapter through the real server: `DM_STORE=journey-log`
 * pointed at the contract fake, turns played over HTTP with a recording
 * model. Every test ends by asserting that no request broke the contract.
 */
import assert from "node:assert/strict";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { context, propagation, SpanKind } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import type { LlmRequest } from "../src/llm/provider.ts";
import { FakeJourneyLog } from "./fakes/fake_journey_log.ts";
import { type Json, postJson, startTestServer, type TestServer } from "./helpers/server.ts";
import { quietOutcome, RecordingLlm, type ScriptedAnswer } from "./helpers/recording_llm.ts";

const USER = "player-1";
const CONTEXT = "/characters/{character_id}/context";
const NARRATIVE = "/characters/{character_id}/narrative";
const QUEST = "/characters/{character_id}/quest";
const COMBAT = "/characters/{character_id}/combat";
const POIS = "/characters/{character_id}/pois";
const UNSUPPORTED = "unsupported by journey-log";

// ------------------------------------------------------------------ outcomes

const INTRO = quietOutcome("Rain drums on the roof of the Rusty Tankard.", {
  poi_intent: {
    action: "create",
    name: "Rusty Tankard",
    description: "A crooked inn by the river.",
    reference_tags: ["inn", "origin"],
  },
  location_intent: {
    action: "update_minor",
    location_id: "inn:rusty_tankard",
    location_display_name: "The Rusty Tankard",
    minor_location: "the common room",
  },
});

function quest(
  action: string,
  fields: { title?: string; summary?: string; progress?: string; details?: Json } = {},
) {
  return {
    quest_intent: {
      action,
      quest_title: fields.title ?? null,
      quest_summary: fields.summary ?? null,
      quest_details: fields.details ?? null,
      progress_update: fields.progress ?? null,
    },
  };
}

function combat(action: string, enemies: string[] = [], status: string | null = null) {
  return {
    combat_intent: {
      action,
      enemies: enemies.length === 0 ? null : enemies.map((name) => ({
        name,
        description: `A ${name.toLowerCase()} with hungry eyes.`,
        threat: "medium",
      })),
      combat_notes: action === "none" ? null : `Round notes: ${action}`,
      player_status: status,
    },
  };
}

function poi(action: string, name: string, tags: string[] = []) {
  return {
    poi_intent: {
      action,
      name,
      description: `${name}, a place worth remembering.`,
      reference_tags: tags,
    },
  };
}

function location(id: string, name: string) {
  return {
    location_intent: {
      action: "update_minor",
      location_id: id,
      location_display_name: name,
      minor_location: null,
    },
  };
}

// ------------------------------------------------------------------- harness

interface Harness {
  fake: FakeJourneyLog;
  server: TestServer;
  llm: RecordingLlm;
  /** Outcomes of the next turns, consumed in order; quiet when empty. */
  script: ScriptedAnswer[];
  [Symbol.asyncDispose](): Promise<void>;
}

/** Settings that make the gates deterministic: rolls always pass, cooldowns decide. */
const RULES = {
  DM_QUEST_TRIGGER_PROB: "1",
  DM_POI_TRIGGER_PROB: "1",
  DM_QUEST_COOLDOWN_TURNS: "5",
  DM_POI_COOLDOWN_TURNS: "2",
  DM_MEMORY_SPARK_PROB: "1",
  DM_MEMORY_SPARK_COUNT: "2",
  DM_QUEST_POI_REFERENCE_PROB: "0",
  DM_RNG_SEED: "journey-log-test",
};

async function harness(
  env: Record<string, string> = {},
  options: { fake?: FakeJourneyLog; tracer?: TracerProvider } = {},
): Promise<Harness> {
  const fake = options.fake ?? await FakeJourneyLog.start();
  const script: ScriptedAnswer[] = [];
  const llm = new RecordingLlm((request: LlmRequest) =>
    request.scene.intro ? INTRO : script.shift() ?? quietOutcome("Time passes quietly.")
  );
  const server = await startTestServer({
    DM_STORE: "journey-log",
    DM_JOURNEY_LOG_URL: fake.url,
    DM_JOURNEY_LOG_TIMEOUT_MS: "300",
    DM_JOURNEY_LOG_RETRIES: "2",
    // The bearer token is the user id itself, so two users can be told apart.
    DM_AUTH: "jwt",
    DM_JWT_SECRET: "unused-the-verifier-is-injected",
    ...RULES,
    ...env,
  }, {
    llm,
    verifyToken: (token) => Promise.resolve(token),
    tracer: options.tracer?.getTracer("test"),
  });
  return {
    fake,
    server,
    llm,
    script,
    async [Symbol.asyncDispose]() {
      await server.close();
      if (!options.fake) await fake.close();
    },
  };
}

async function createCharacter(h: Harness, user = USER): Promise<string> {
  const res = await postJson(`${h.server.url}/characters`, {
    name: "Aria",
    race: "Elf",
    class_name: "Ranger",
    custom_prompt: "A rain-soaked gothic kingdom.",
  }, as(user));
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.character_id;
}

/** Headers that authenticate as `user`. */
function as(user: string): Record<string, string> {
  return { authorization: `Bearer ${user}` };
}

async function turn(
  h: Harness,
  character_id: string,
  action: string,
  headers: Record<string, string> = {},
) {
  return await postJson(`${h.server.url}/turn`, { character_id, user_action: action }, {
    ...as(USER),
    ...headers,
  });
}

async function getJson(h: Harness, path: string, user = USER) {
  const res = await fetch(`${h.server.url}${path}`, { headers: as(user) });
  return { status: res.status, body: await res.json() as Json };
}

function getCharacter(h: Harness, id: string, user = USER) {
  return getJson(h, `/characters/${id}`, user);
}

function assertNoViolations(fake: FakeJourneyLog): void {
  assert.deepEqual(fake.violations, [], "every request must follow the contract");
}

// --------------------------------------------------------------- happy path

Deno.test("ten turns against the journey log: every write lands and follows the contract", async () => {
  await using h = await harness();
  const id = await createCharacter(h);
  const stored = h.fake.characters.get(id)!;
  assert.equal(stored.doc.owner_user_id, USER);
  assert.deepEqual(stored.doc.player_state.location, {
    id: "inn:rusty_tankard",
    display_name: "The Rusty Tankard",
  });
  // The intro and the origin place carry the character's created_at, so
  // neither counts as a played turn nor starts a cooldown late.
  assert.equal(stored.turns.length, 1);
  assert.equal(Date.parse(stored.turns[0].timestamp), Date.parse(stored.doc.created_at));
  assert.equal(stored.pois.length, 1);
  assert.equal(stored.pois[0].name, "Rusty Tankard");

  h.script.push(
    quietOutcome("Two ghouls rise.", {
      ...combat("start", ["Grave Ghoul", "Bone Hound"], "Wounded"),
      ...location("crypt:under_chapel", "The Crypt"),
    }),
    quietOutcome("You trade blows.", combat("continue")),
    quietOutcome("The ghouls fall; an orchard glitters ahead.", {
      ...combat("end"),
      ...poi("create", "The Glass Orchard", ["orchard"]),
    }),
    quietOutcome("You rest."),
    quietOutcome("Back at the inn.", poi("reference", "Rusty Tankard", ["inn"])),
    quietOutcome(
      "A bell tolls at midnight.",
      quest("start", {
        title: "The Missing Bellringer",
        summary: "Find out why the bells ring at night.",
        details: { objective: "Find the bellringer", reward: "A silver bell", difficulty: "hard" },
      }),
    ),
    quietOutcome("You find a lantern.", quest("advance", { progress: "Found the lantern" })),
    quietOutcome("The bellringer is home.", quest("complete")),
    quietOutcome("The night is calm."),
    quietOutcome("Dawn breaks."),
  );
  const results: Json[] = [];
  for (let i = 1; i <= 10; i++) {
    const res = await turn(h, id, `Action number ${i}`);
    assert.equal(res.status, 200, `turn ${i}: ${JSON.stringify(res.body)}`);
    results.push(res.body);
  }
  const summary = (i: number) => results[i - 1].subsystem_summary;

  // Turn 1: combat starts; status and location have no endpoint in the service.
  assert.deepEqual(summary(1).combat_change, { action: "started", success: true, error: null });
  assert.deepEqual(summary(1).status_change, {
    action: "Healthy->Wounded",
    success: false,
    error: UNSUPPORTED,
  });
  assert.deepEqual(summary(1).location_change, {
    action: "updated",
    success: false,
    error: UNSUPPORTED,
  });
  assert.equal(summary(2).combat_change.action, "continued");
  assert.equal(summary(3).combat_change.action, "ended");
  assert.deepEqual(summary(3).poi_change, { action: "created", success: true, error: null });
  // Returning to a place changes the current POI, which is a location write.
  assert.deepEqual(summary(5).poi_change, { action: "referenced", success: true, error: null });
  assert.deepEqual(summary(5).location_change, {
    action: "skipped",
    success: false,
    error: UNSUPPORTED,
  });
  assert.equal(summary(6).quest_change.action, "started");
  assert.equal(summary(7).quest_change.action, "advanced");
  assert.equal(summary(8).quest_change.action, "completed");
  for (const r of results) assert.equal(r.subsystem_summary.narrative_persisted, true);

  // The prompt of turn 2 shows the fight as the service stored it.
  const prompt2 = h.llm.requests[2].prompt;
  assert.match(prompt2, /In combat \(round 1\) against:\n- Grave Ghoul \(Healthy, threat medium\)/);
  // Progress notes live in the side store and reach the next prompt.
  assert.match(h.llm.requests[8].prompt, /Progress: Found the lantern/);

  // The counters the gates saw, derived from the service's data each turn.
  const policies = await Promise.all(
    results.map((r) => h.server.app.store.getTurn(r.turn_id).then((t) => t!.policy as Json)),
  );
  assert.deepEqual(
    policies.map((p) => p.quest.turns_since_last_quest),
    [0, 1, 2, 3, 4, 5, 0, 1, 2, 3],
  );
  assert.deepEqual(
    policies.map((p) => p.poi.turns_since_last_poi),
    [0, 1, 2, 0, 1, 2, 3, 4, 5, 6],
  );

  // What the service holds now.
  assert.equal(stored.turns.length, 11);
  assert.equal(stored.doc.combat_state, null);
  assert.equal(stored.doc.active_quest, null);
  assert.equal(stored.doc.archived_quests.length, 1);
  assert.deepEqual(stored.doc.archived_quests[0].quest.requirements, ["Find the bellringer"]);
  assert.deepEqual(stored.doc.archived_quests[0].quest.rewards.items, ["A silver bell"]);
  assert.deepEqual(stored.pois.map((p) => p.name), ["Rusty Tankard", "The Glass Orchard"]);
  assert.equal(stored.doc.player_state.status, "Healthy");

  const view = await getCharacter(h, id);
  assert.equal(view.status, 200);
  assert.equal(view.body.turn_count, 10);
  assert.equal(view.body.custom_prompt, "A rain-soaked gothic kingdom.");
  assert.deepEqual(view.body.pois.map((p: Json) => p.name), ["The Glass Orchard", "Rusty Tankard"]);
  assert.equal(view.body.recent_turns.length, 11);
  assert.equal(view.body.recent_turns.at(-1).user_action, "Action number 10");
  assert.equal(view.body.quest, null);
  assert.equal(view.body.combat, null);
  assert.deepEqual(view.body.location, {
    id: "inn:rusty_tankard",
    display_name: "The Rusty Tankard",
    minor: null,
    poi_id: null,
  });

  // Every call named the acting user, and none broke the contract.
  for (const r of h.fake.requests) {
    if (r.route !== "/health") assert.equal(r.headers["x-user-id"], USER, `${r.method} ${r.path}`);
  }
  assertNoViolations(h.fake);
});

Deno.test("an active quest shows its details and tie from the side store", async () => {
  await using h = await harness({ DM_QUEST_COOLDOWN_TURNS: "0" });
  const id = await createCharacter(h);
  h.script.push(quietOutcome(
    "A call to adventure.",
    quest("start", {
      title: "Ashes of the Stair",
      summary: "Recover the ember-crown.",
      details: { objective: "Reach the summit", reward: null, difficulty: "hard" },
    }),
  ));
  assert.equal((await turn(h, id, "I listen to the old woman")).status, 200);
  const view = await getCharacter(h, id);
  assert.equal(view.body.quest.title, "Ashes of the Stair");
  assert.equal(view.body.quest.status, "active");
  assert.deepEqual(view.body.quest.details, { objective: "Reach the summit", difficulty: "hard" });
  assert.deepEqual(view.body.quest.progress, []);
  // The service's copy carries the objective where its other readers look.
  assert.deepEqual(h.fake.characters.get(id)!.doc.active_quest.requirements, ["Reach the summit"]);
  // Our reserved side-store record never leaks into plugin state.
  assert.deepEqual(Object.keys(view.body.extensions), []);
  assertNoViolations(h.fake);
});

Deno.test("past the 20 recent turns, the counters come from the service's narrative counts", async () => {
  // Cooldown 1 and a sure roll: turn 2 starts a (fallback) quest, which then stays active.
  await using h = await harness({ DM_QUEST_COOLDOWN_TURNS: "1", DM_POI_COOLDOWN_TURNS: "100" });
  const id = await createCharacter(h);
  let last: Json = null;
  for (let i = 1; i <= 24; i++) {
    last = await turn(h, id, `Step ${i}`);
    assert.equal(last.status, 200);
    if (i === 2) assert.equal(last.body.subsystem_summary.quest_change.action, "started");
  }
  const policy = (await h.server.app.store.getTurn(last.body.turn_id))!.policy as Json;
  assert.equal(policy.quest.turns_since_last_quest, 21, "turns 3-23 came after the quest start");
  assert.equal(policy.poi.turns_since_last_poi, 23, "every turn came after the origin place");
  const sinceQueries = h.fake.calls("GET", NARRATIVE).map((r) => r.query);
  assert.ok(sinceQueries.length > 0);
  for (const q of sinceQueries) assert.equal(q.n, "1");
  assert.equal((await getCharacter(h, id)).body.turn_count, 24);
  assertNoViolations(h.fake);
});

Deno.test("the service's identity rules: at most 64 characters, one name/race/class per user", async () => {
  await using h = await harness();
  const long = await postJson(`${h.server.url}/characters`, {
    name: "N".repeat(80),
    race: "Elf",
    class_name: "Ranger",
  }, as(USER));
  assert.equal(long.status, 422);
  assert.equal(long.body.detail.error.type, "validation_error");
  assert.match(long.body.detail.error.message, /name: 1-64 characters/);
  assert.equal(h.fake.calls("POST", "/characters").length, 0, "refused before any call");

  await createCharacter(h);
  const twin = await postJson(`${h.server.url}/characters`, {
    name: "Aria",
    race: "Elf",
    class_name: "Ranger",
  }, as(USER));
  assert.equal(twin.status, 422);
  assert.match(twin.body.detail.error.message, /already exists/);
  // Another user may have a character of the same name, race and class.
  await createCharacter(h, "player-2");
  assertNoViolations(h.fake);
});

// ------------------------------------------------------------ error mapping

Deno.test("a character the service does not know is 404 character_not_found before any model call", async () => {
  await using h = await harness();
  const res = await turn(h, crypto.randomUUID(), "Hello?");
  assert.equal(res.status, 404);
  assert.equal(res.body.detail.error.type, "character_not_found");
  assert.equal(h.llm.requests.length, 0);
  assert.equal(h.fake.calls("GET", CONTEXT).length, 1, "a 404 is an answer, not retried");
  assertNoViolations(h.fake);
});

Deno.test("a scripted 404 on the context is character_not_found; the model is never asked", async () => {
  await using h = await harness();
  const id = await createCharacter(h);
  const before = h.llm.requests.length;
  h.fake.fault({ method: "GET", route: CONTEXT, status: 404 });
  const res = await turn(h, id, "I look around");
  assert.equal(res.status, 404);
  assert.equal(res.body.detail.error.type, "character_not_found");
  assert.equal(h.llm.requests.length, before);
  assertNoViolations(h.fake);
});

Deno.test("another user's character is not found: the service scopes characters by X-User-Id", async () => {
  await using h = await harness();
  const id = await createCharacter(h, "owner");
  const before = h.llm.requests.length;
  const res = await turn(h, id, "I take the sword", as("intruder"));
  assert.equal(res.status, 404);
  assert.equal(res.body.detail.error.type, "character_not_found");
  assert.equal(h.llm.requests.length, before);
  const probe = h.fake.calls("GET", CONTEXT).at(-1)!;
  assert.equal(probe.headers["x-user-id"], "intruder");
  assert.equal(probe.status, 403);
  assert.equal((await getCharacter(h, id, "intruder")).status, 404);
  assert.equal((await getCharacter(h, id, "owner")).status, 200);
  assertNoViolations(h.fake);
});

Deno.test("a context slower than the timeout is 504 journey_log_timeout after the retries", async () => {
  await using h = await harness({ DM_JOURNEY_LOG_TIMEOUT_MS: "150", DM_JOURNEY_LOG_RETRIES: "1" });
  const id = await createCharacter(h);
  const before = h.llm.requests.length;
  h.fake.fault({ method: "GET", route: CONTEXT, delayMs: 2000 });
  const res = await turn(h, id, "I wait");
  assert.equal(res.status, 504);
  assert.equal(res.body.detail.error.type, "journey_log_timeout");
  assert.equal(h.fake.calls("GET", CONTEXT).length, 2, "one attempt plus one retry");
  assert.equal(h.llm.requests.length, before);
  assertNoViolations(h.fake);
});

Deno.test("a context answering 500 is 502 journey_log_error after every retry", async () => {
  await using h = await harness();
  const id = await createCharacter(h);
  h.fake.fault({ method: "GET", route: CONTEXT, status: 500 });
  const res = await turn(h, id, "I wait");
  assert.equal(res.status, 502);
  assert.equal(res.body.detail.error.type, "journey_log_error");
  assert.equal(h.fake.calls("GET", CONTEXT).length, 3, "one attempt plus DM_JOURNEY_LOG_RETRIES=2");
  assertNoViolations(h.fake);
});

Deno.test("a transient 500 is retried and the turn goes on", async () => {
  await using h = await harness();
  const id = await createCharacter(h);
  h.fake.fault({ method: "GET", route: CONTEXT, status: 500, times: 1 });
  const res = await turn(h, id, "I wait");
  assert.equal(res.status, 200);
  assert.equal(h.fake.calls("GET", CONTEXT).length, 2);
  assertNoViolations(h.fake);
});

Deno.test("a malformed context body is 502 journey_log_error, not retried and not a crash", async () => {
  for (const malformed of ['{"character_id": 42}', "<html>oops</html>"]) {
    await using h = await harness();
    const id = await createCharacter(h);
    h.fake.fault({ method: "GET", route: CONTEXT, malformed });
    const res = await turn(h, id, "I wait");
    assert.equal(res.status, 502, malformed);
    assert.equal(res.body.detail.error.type, "journey_log_error");
    assert.equal(h.fake.calls("GET", CONTEXT).length, 1);
    assertNoViolations(h.fake);
  }
});

Deno.test("an unreachable service is 502, and /ready says the store is not ready", async () => {
  const fake = await FakeJourneyLog.start();
  await using h = await harness({}, { fake });
  const id = await createCharacter(h);
  assert.equal((await fetch(`${h.server.url}/ready`).then((r) => r.json())).store, true);
  await fake.close();
  const res = await turn(h, id, "Anyone there?");
  assert.equal(res.status, 502);
  assert.equal(res.body.detail.error.type, "journey_log_error");
  const ready = await fetch(`${h.server.url}/ready`);
  assert.equal(ready.status, 503);
  assert.equal((await ready.json()).store, false);
  assertNoViolations(fake);
});

// ------------------------------------------------------------------- writes

Deno.test("a failed combat write in the middle: quest before it and POI and narrative after it land", async () => {
  await using h = await harness({ DM_QUEST_COOLDOWN_TURNS: "0", DM_POI_COOLDOWN_TURNS: "0" });
  const id = await createCharacter(h);
  h.fake.fault({ method: "PUT", route: COMBAT, status: 500 });
  h.script.push(quietOutcome("Everything happens at once.", {
    ...quest("start", { title: "Storm the Keep", summary: "Take the keep before dawn." }),
    ...combat("start", ["Keep Guard"]),
    ...poi("create", "The Black Keep", ["keep"]),
  }));
  const res = await turn(h, id, "I charge the keep");
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const s = res.body.subsystem_summary;
  assert.deepEqual(s.quest_change, { action: "started", success: true, error: null });
  assert.equal(s.combat_change.action, "skipped");
  assert.equal(s.combat_change.success, false);
  assert.match(
    s.combat_change.error,
    /PUT \/characters\/\{character_id\}\/combat answered HTTP 500/,
  );
  assert.deepEqual(s.poi_change, { action: "created", success: true, error: null });
  assert.equal(s.narrative_persisted, true);

  // Order of the writes as the service saw them: quest, combat (retried: a
  // full replace is idempotent), POI, narrative.
  const writes = h.fake.requests.filter((r) => r.method !== "GET").slice(3);
  assert.deepEqual(writes.map((r) => `${r.method} ${r.route} ${r.status}`), [
    `PUT ${QUEST} 200`,
    `PUT ${COMBAT} 500`,
    `PUT ${COMBAT} 500`,
    `PUT ${COMBAT} 500`,
    `POST ${POIS} 201`,
    `POST ${NARRATIVE} 201`,
  ]);
  const stored = h.fake.characters.get(id)!;
  assert.equal(stored.doc.active_quest.name, "Storm the Keep");
  assert.equal(stored.doc.combat_state, null);
  assert.equal(stored.turns.at(-1)!.player_action, "I charge the keep");
  const record = await h.server.app.store.getTurn(res.body.turn_id);
  assert.equal(record!.status, "completed");
  assert.equal((record!.subsystem_summary as Json).combat_change.success, false);
  assertNoViolations(h.fake);
});

Deno.test("a quest start the service refuses with 409 is reported as skipped", async () => {
  await using h = await harness({ DM_QUEST_COOLDOWN_TURNS: "0" });
  const id = await createCharacter(h);
  h.fake.fault({ method: "PUT", route: QUEST, status: 409, times: 1 });
  h.script.push(quietOutcome("A stranger asks for help.", {
    ...quest("start", { title: "The Stranger's Favour", summary: "Help the stranger." }),
    ...combat("start", ["Thug"]),
  }));
  const res = await turn(h, id, "I agree to help");
  assert.equal(res.status, 200);
  assert.deepEqual(res.body.subsystem_summary.quest_change, {
    action: "skipped",
    success: false,
    error: "a quest is already active in the journey log",
  });
  assert.equal(res.body.subsystem_summary.combat_change.action, "started");
  assert.equal(h.fake.calls("PUT", QUEST).length, 1, "a quest start is never retried");
  assertNoViolations(h.fake);
});

Deno.test("non-idempotent writes are not retried: a failed narrative append is reported once", async () => {
  await using h = await harness({ DM_POI_COOLDOWN_TURNS: "0" });
  const id = await createCharacter(h);
  h.fake.fault({ method: "POST", route: NARRATIVE, status: 500 });
  h.fake.fault({ method: "POST", route: POIS, delayMs: 2000 });
  h.script.push(quietOutcome("A hidden door.", poi("create", "The Hidden Door", ["door"])));
  const res = await turn(h, id, "I push the wall");
  assert.equal(res.status, 200);
  const s = res.body.subsystem_summary;
  assert.equal(s.narrative_persisted, false);
  assert.match(
    s.narrative_error,
    /POST \/characters\/\{character_id\}\/narrative answered HTTP 500/,
  );
  assert.equal(s.poi_change.action, "skipped");
  assert.match(s.poi_change.error, /timed out/);
  // One intro append and one turn append; one origin POI and one turn POI.
  assert.equal(h.fake.calls("POST", NARRATIVE).length, 2);
  assert.equal(h.fake.calls("POST", POIS).length, 2);
  assertNoViolations(h.fake);
});

// ------------------------------------------------------ headers and tracing

Deno.test("every call sends X-User-Id and the W3C traceparent of its own CLIENT span", async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  try {
    await using h = await harness({ DM_QUEST_COOLDOWN_TURNS: "0" }, { tracer: provider });
    const id = await createCharacter(h);
    h.script.push(quietOutcome("Steel rings.", {
      ...quest("start", { title: "Duel", summary: "Win the duel." }),
      ...combat("start", ["Duellist"]),
    }));
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const res = await turn(h, id, "I draw my blade", {
      traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
    });
    assert.equal(res.status, 200);

    const spans = exporter.getFinishedSpans();
    const clientSpans = spans.filter((s) =>
      s.kind === SpanKind.CLIENT && "url.full" in s.attributes
    );
    assert.ok(clientSpans.length >= 6);
    for (const r of h.fake.requests) {
      if (r.route === "/health") continue;
      assert.equal(r.headers["x-user-id"], USER);
      // The traceparent names the CLIENT span of exactly this request.
      const [, trace, spanId] = r.headers.traceparent.split("-");
      const span = clientSpans.find((s) => s.spanContext().spanId === spanId);
      assert.ok(span, `${r.method} ${r.path} has a client span`);
      assert.equal(span.spanContext().traceId, trace);
      assert.equal(span.attributes["http.request.method"], r.method);
      assert.equal(span.attributes["server.address"], "127.0.0.1");
      assert.equal(span.attributes["http.response.status_code"], r.status);
      assert.equal(new URL(span.attributes["url.full"] as string).pathname, r.path);
    }
    // The turn's writes belong to the client's trace, under the apply stages.
    for (const route of [QUEST, COMBAT, NARRATIVE]) {
      const write = h.fake.requests.find((r) =>
        r.method !== "GET" && r.route === route && r.headers.traceparent.includes(traceId)
      );
      assert.ok(write, `${route} carries the client's trace id`);
      const spanId = write.headers.traceparent.split("-")[2];
      const span = clientSpans.find((s) => s.spanContext().spanId === spanId)!;
      const parent = spans.find((s) => s.spanContext().spanId === span.parentSpanContext?.spanId);
      assert.match(parent!.name, /^stage /);
    }
    assertNoViolations(h.fake);
  } finally {
    await provider.shutdown();
    context.disable();
    propagation.disable();
  }
});

// -------------------------------------------- side store: resume, idempotency

Deno.test("idempotency keys and turn records live in the side store: a retried turn writes nothing twice", async () => {
  await using h = await harness();
  const id = await createCharacter(h);
  const key = { "Idempotency-Key": "turn-0001" };
  const first = await turn(h, id, "I open the door", key);
  assert.equal(first.status, 200);
  const appends = h.fake.calls("POST", NARRATIVE).length;
  const again = await turn(h, id, "I open the door", key);
  assert.equal(again.status, 200);
  assert.equal(again.body.turn_id, first.body.turn_id);
  assert.equal(again.body.narrative, first.body.narrative);
  assert.equal(h.fake.calls("POST", NARRATIVE).length, appends, "no second append");
  const reused = await turn(h, id, "I close the door", key);
  assert.equal(reused.status, 422);
  assert.equal(reused.body.detail.error.type, "idempotency_key_reused");

  const record = (await getJson(h, `/turns/${first.body.turn_id}`)).body;
  assert.equal(record.status, "completed");
  assert.equal(record.character_id, id);
  const events = await h.server.app.store.getEvents(first.body.turn_id, 0);
  assert.equal(events[0].type, "start");
  assert.equal(events.at(-1)!.type, "complete");
  // Resuming after a seq replays only what came later.
  const tail = await h.server.app.store.getEvents(first.body.turn_id, events.length - 1);
  assert.deepEqual(tail.map((e) => e.seq), [events.length]);
  assertNoViolations(h.fake);
});

Deno.test("a restart keeps idempotency (side-store file) and cooldowns (derived from the service)", async () => {
  const dir = await Deno.makeTempDir();
  const fake = await FakeJourneyLog.start();
  try {
    const env = { DM_SQLITE_PATH: `${dir}/side.sqlite` };
    let id: string;
    let firstTurn: string;
    {
      await using h = await harness(env, { fake });
      id = await createCharacter(h);
      const res = await turn(h, id, "I set out", { "Idempotency-Key": "before-restart" });
      assert.equal(res.status, 200);
      firstTurn = res.body.turn_id;
      assert.equal((await turn(h, id, "I walk on")).status, 200);
    }
    {
      await using h = await harness(env, { fake });
      const again = await turn(h, id, "I set out", { "Idempotency-Key": "before-restart" });
      assert.equal(again.body.turn_id, firstTurn);
      const next = await turn(h, id, "I keep walking");
      assert.equal(next.status, 200);
      const policy = (await h.server.app.store.getTurn(next.body.turn_id))!.policy as Json;
      assert.equal(policy.quest.turns_since_last_quest, 2);
      assert.equal(policy.poi.turns_since_last_poi, 2);
    }
    {
      // A fresh side store still derives the same counters from the service.
      await using h = await harness({ DM_SQLITE_PATH: ":memory:" }, { fake });
      const next = await turn(h, id, "I rest by the road");
      const policy = (await h.server.app.store.getTurn(next.body.turn_id))!.policy as Json;
      assert.equal(policy.quest.turns_since_last_quest, 3);
    }
    assertNoViolations(fake);
  } finally {
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});

// ------------------------------------------------------------- the fake itself

Deno.test("the contract fake rejects requests outside the contract and records them", async () => {
  await using fake = await FakeJourneyLog.start();
  const cases: { init: RequestInit; path: string }[] = [
    {
      path: "/characters",
      init: {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "A", race: "B", class: "C", adventure_prompt: "D" }),
      },
    },
    {
      path: "/characters",
      init: {
        method: "POST",
        headers: { "content-type": "application/json", "x-user-id": "u" },
        body: JSON.stringify({ name: "A", race: "B", class: "C", adventure_prompt: "D", x: 1 }),
      },
    },
    { path: `/characters/not-a-uuid/context`, init: { headers: { "x-user-id": "u" } } },
    {
      path: `/characters/${crypto.randomUUID()}/context?recent_n=500`,
      init: { headers: { "x-user-id": "u" } },
    },
    { path: "/journeys", init: {} },
  ];
  for (const c of cases) {
    const res = await fetch(`${fake.url}${c.path}`, c.init);
    await res.body?.cancel();
    assert.ok(res.status === 422 || res.status === 404, `${c.path}: ${res.status}`);
  }
  assert.equal(fake.violations.length, cases.length);
  assert.match(fake.violations[0].problem, /X-User-Id is required/);
  assert.match(fake.violations[1].problem, /invalid body/);
});
