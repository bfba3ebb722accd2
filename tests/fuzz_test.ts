/**
 * Fuzz: well over a thousand generated malformed requests across every
 * route and transport, against a real server on 127.0.0.1.
 *
 * - HTTP (fetch, and raw TCP for what fetch refuses): every answer is a 4xx
 *   in the error envelope with a catalogue type (the one the oracle
 *   predicts), or a documented success a case sends on purpose. Never a
 *   5xx, a hang or a closed connection the HTTP parser did not cause.
 * - WebSocket: every bad message gets an `error` message with a catalogue
 *   `error_type` and the socket stays open, except the documented closes
 *   (1009 for messages over 64 KiB; under `DM_AUTH=jwt`, 4401 when the
 *   first message is not a valid `auth` or none comes within 10 s).
 * - `DM_AUTH=jwt`: bad `Authorization` headers and `?access_token=` values
 *   are 401 on every authenticated route; another user's valid token sees
 *   404s, exactly like missing resources.
 * - Nothing is stored: the whole SQLite database, the characters' views,
 *   the turn records and the policy are the same before and after.
 * - The server survives: `/health`, a full set of streams and a valid turn
 *   at the end; no error-level log line during the fuzz.
 *
 * The cases come from a seeded PRNG: `DM_FUZZ_SEED=<n>` replays a run.
 */
import assert from "node:assert/strict";
import { ERROR_CATALOGUE, isErrorType } from "../src/shared/errors.ts";
import { createLogger } from "../src/log.ts";
import { startTelemetry } from "../src/telemetry/sdk.ts";
import { type Json, startTestServer, type TestServer } from "./helpers/server.ts";
import { RawWsClient, WsClient } from "./helpers/ws.ts";
import { checkAnswer, diffDb, snapshotDb, Tally } from "./fuzz/check.ts";
import { CaseFactory } from "./fuzz/http_cases.ts";
import { jwtCases, makeTokens } from "./fuzz/jwt_cases.ts";
import { type Expectation, type FuzzWorld, headerAsSeen, mirrorRouter } from "./fuzz/oracle.ts";
import { parseSeed, Rng } from "./fuzz/prng.ts";
import { rawCases } from "./fuzz/raw_cases.ts";
import { rawRequest } from "./fuzz/raw_http.ts";
import { HANG_MS, pool, send, type Sent } from "./fuzz/send.ts";
import { type WsCase, wsCase, type WsExpect } from "./fuzz/ws_cases.ts";
import { encodeFrame, writeAll } from "./fuzz/ws_frames.ts";
import { bogusTraceparent, bytesFrom } from "./fuzz/values.ts";

const SEED = parseSeed(Deno.env.get("DM_FUZZ_SEED"), 20_261_123);
console.log(`fuzz seed: ${SEED} (replay with DM_FUZZ_SEED=${SEED})`);

const ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdef";
const JWT_SECRET = "fuzz-jwt-secret-that-is-long-enough-for-hs256";
const MAX_STREAMS_PER_USER = 20;

/** Failures collected across a run, reported together. */
class Failures {
  readonly list: string[] = [];

  add(where: string, problems: string[]): void {
    for (const p of problems) this.list.push(`${where}: ${p}`);
  }

  assertNone(what: string): void {
    if (this.list.length === 0) return;
    assert.fail(
      `${this.list.length} fuzz failure(s) in ${what} (seed ${SEED}):\n` +
        this.list.slice(0, 40).join("\n"),
    );
  }
}

const outcome = (s: Sent) => (s.hung ? "hang" : s.status === null ? "closed" : String(s.status));

async function json(res: Response): Promise<Json> {
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** Everything the fuzz must leave unchanged, read over HTTP and from the database. */
async function snapshot(t: TestServer, dbPath: string, world: FuzzWorld, auth: HeadersInit = {}) {
  const views: Record<string, Json> = {};
  for (const id of world.characters) {
    const res = await fetch(`${t.url}/characters/${id}`, { headers: auth });
    assert.equal(res.status, 200);
    views[id] = await json(res);
  }
  const turns: Record<string, Json> = {};
  for (const id of world.turns) {
    const res = await fetch(`${t.url}/turns/${id}`, { headers: auth });
    assert.equal(res.status, 200);
    turns[id] = await json(res);
  }
  return { db: snapshotDb(dbPath), views, turns };
}

function assertUnchanged(
  before: Awaited<ReturnType<typeof snapshot>>,
  after: Awaited<ReturnType<typeof snapshot>>,
): void {
  assert.deepEqual(diffDb(before.db, after.db), [], "the fuzz changed the database");
  for (const id of Object.keys(before.views)) {
    assert.deepEqual(after.views[id], before.views[id], `character ${id} changed`);
  }
  for (const id of Object.keys(before.turns)) {
    assert.deepEqual(after.turns[id], before.turns[id], `turn ${id} changed`);
  }
}

/** Error-level log lines written since `mark`. */
function errorLogs(t: TestServer, mark: number): string[] {
  return t.logs.slice(mark).filter((line) => /"level":"error"/.test(line));
}

// ------------------------------------------------------------- WebSocket

/** The next message, or "closed" / "timeout". */
async function nextMessage(ws: WsClient, ms = HANG_MS): Promise<Json | "closed" | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      ws.next(),
      ws.closed.then(() => "closed" as const),
      new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const STACK = /\bat .+:\d+:\d+|file:\/\/|node_modules/;

/** Problems with a server message answering a bad client message. */
async function checkWsReplyOn(ws: WsClient, m: Json | "closed" | "timeout", expect: WsExpect) {
  if (expect.kind !== "close" || m !== "closed") return checkWsReply(m, expect);
  const { code } = await ws.closed;
  return code === expect.code ? [] : [`closed with ${code}, expected ${expect.code}`];
}

/** Problems with a server message answering a bad client message. */
function checkWsReply(m: Json | "closed" | "timeout", expect: WsExpect): string[] {
  if (expect.kind === "close") return [`expected close ${expect.code}, got ${m}`];
  if (m === "closed") return ["the socket closed"];
  if (m === "timeout") return ["no answer (hang)"];
  if (expect.kind === "pong") {
    return m.type === "pong" ? [] : [`expected pong, got ${JSON.stringify(m).slice(0, 200)}`];
  }
  if (expect.kind === "authenticated") {
    return m.type === "authenticated" && m.user_id === expect.user_id
      ? []
      : [`expected authenticated as ${expect.user_id}, got ${JSON.stringify(m).slice(0, 200)}`];
  }
  const problems: string[] = [];
  const shown = JSON.stringify(m).slice(0, 240);
  if (m.type !== "error") return [`expected an error message, got ${shown}`];
  if (!isErrorType(m.error_type)) return [`error_type ${m.error_type} not in the catalogue`];
  if (m.error_type !== expect.error_type) {
    problems.push(`error_type ${m.error_type}, expected ${expect.error_type}: ${shown}`);
  }
  if (m.recoverable !== ERROR_CATALOGUE[m.error_type as keyof typeof ERROR_CATALOGUE].recoverable) {
    problems.push(`recoverable ${m.recoverable} for ${m.error_type}`);
  }
  if (m.turn_id !== null || m.seq !== 0) problems.push(`turn_id/seq ${m.turn_id}/${m.seq}`);
  if (m.in_reply_to !== expect.in_reply_to) {
    problems.push(
      `in_reply_to ${JSON.stringify(m.in_reply_to)}, expected ${
        JSON.stringify(expect.in_reply_to)
      }`,
    );
  }
  if (typeof m.message !== "string" || m.message === "" || STACK.test(m.message)) {
    problems.push(`message ${JSON.stringify(m.message)}`);
  }
  if (typeof m.timestamp !== "string" || Number.isNaN(Date.parse(m.timestamp))) {
    problems.push(`timestamp ${m.timestamp}`);
  }
  if (typeof m.details !== "object" || m.details === null || Array.isArray(m.details)) {
    problems.push("details is not an object");
  }
  return problems;
}

function sendWs(ws: WsClient, data: string | Uint8Array<ArrayBuffer>): void {
  ws.socket.send(data);
}

/** Await a turn's events and `done` on a socket; problems if they do not come in order. */
async function followToDone(
  ws: WsClient,
  firstSeq = 1,
): Promise<{ events: Json[]; problems: string[] }> {
  const events: Json[] = [];
  while (true) {
    const m = await nextMessage(ws);
    if (m === "closed" || m === "timeout") return { events, problems: [`${m} before done`] };
    if (m.type === "done") break;
    events.push(m);
  }
  const problems: string[] = [];
  events.forEach((e, i) => {
    if (e.seq !== firstSeq + i) problems.push(`event ${i} has seq ${e.seq}`);
  });
  return { events, problems };
}

/**
 * The WebSocket fuzz: sequential bad messages (each awaited), a burst sent
 * at once, resumes while a replay streams, oversize messages and raw frames.
 */
async function fuzzWebSocket(
  t: TestServer,
  world: FuzzWorld,
  rng: Rng,
  tally: Tally,
  failures: Failures,
  sizes: { sequential: number; burst: number },
): Promise<void> {
  // 1. One message at a time; a ping every 25 proves the socket is alive.
  let ws = await WsClient.connect(t.url);
  for (let i = 0; i < sizes.sequential; i++) {
    const c = wsCase(rng, world);
    sendWs(ws, c.data);
    const reply = await nextMessage(ws);
    const problems = await checkWsReplyOn(ws, reply, c.expect);
    tally.add(c.family, problems.length ? "FAILED" : c.expect.kind);
    failures.add(`WS #${i} ${c.family} [${c.note}]`, problems);
    if (reply === "closed" || reply === "timeout") {
      await ws.close();
      ws = await WsClient.connect(t.url);
    }
    if (i % 25 === 24) {
      sendWs(ws, '{"type":"ping"}');
      failures.add(`WS ping after #${i}`, checkWsReply(await nextMessage(ws), { kind: "pong" }));
      tally.add("ws: keep-alive ping", "pong");
    }
  }
  await ws.close();

  // 2. Many messages at once: answered in order, and the socket stays open.
  const burst: WsCase[] = [];
  while (burst.length < sizes.burst) {
    const c = wsCase(rng, world);
    if (c.sync) burst.push(c);
  }
  ws = await WsClient.connect(t.url);
  for (const c of burst) sendWs(ws, c.data);
  sendWs(ws, '{"type":"ping"}');
  for (const [i, c] of burst.entries()) {
    const problems = checkWsReply(await nextMessage(ws), c.expect);
    tally.add(
      "ws: burst",
      problems.length ? "FAILED" : c.expect.kind === "pong" ? "pong" : "error",
    );
    failures.add(`WS burst #${i} ${c.family} [${c.note}]`, problems);
    if (problems.some((p) => /closed|hang/.test(p))) break;
  }
  failures.add("WS burst final ping", checkWsReply(await nextMessage(ws), { kind: "pong" }));
  tally.add("ws: burst", "pong");
  await ws.close();

  // 3. Valid replays of a finished turn (read-only, accounted for), and a
  //    second resume while the first still streams: turn_in_progress, or
  //    turn_not_found if the replay had already ended.
  ws = await WsClient.connect(t.url);
  for (const turn of world.turns.slice(0, 3)) {
    sendWs(ws, JSON.stringify({ type: "resume", turn_id: turn.toUpperCase(), after_seq: -0 }));
    sendWs(ws, JSON.stringify({ type: "resume", turn_id: rng.uuid() }));
    sendWs(ws, '{"type":"ping"}');
    const seen: Json[] = [];
    while (
      !(seen.some((m) => m.type === "done") && seen.some((m) => m.type === "pong") &&
        seen.some((m) => m.type === "error" && m.turn_id === null))
    ) {
      const m = await nextMessage(ws);
      if (m === "closed" || m === "timeout") {
        failures.add("WS resume while streaming", [
          `${m} after ${JSON.stringify(seen.map((s) => s.type))}`,
        ]);
        break;
      }
      seen.push(m);
    }
    const refusal = seen.find((m) => m.type === "error" && m.turn_id === null);
    if (refusal && !["turn_in_progress", "turn_not_found"].includes(refusal.error_type)) {
      failures.add("WS resume while streaming", [`refused with ${refusal.error_type}`]);
    }
    const events = seen.filter((m) => m.turn_id === turn && m.type !== "done");
    if (events.length === 0 || events.some((e, i) => e.seq !== i + 1)) {
      failures.add("WS replay", [`seqs ${events.map((e) => e.seq).join(",")}`]);
    }
    tally.add("ws: resume while streaming", refusal?.error_type ?? "none");
    tally.add("ws: valid replay (accounted)", "done");
    tally.add("ws: keep-alive ping", "pong");
    // A cursor past the end gives just `done`.
    sendWs(ws, JSON.stringify({ type: "resume", turn_id: turn, after_seq: 9_007_199_254_740_991 }));
    const { events: none, problems } = await followToDone(ws);
    failures.add(
      "WS resume past the end",
      none.length ? [...problems, `${none.length} events`] : problems,
    );
    tally.add("ws: valid replay (accounted)", "done");
  }
  await ws.close();

  // 4. Size limits: over 64 KiB closes with 1009; exactly 64 KiB does not.
  const oversize: [string, string | Uint8Array<ArrayBuffer>, number | "error" | "pong"][] = [
    ["65537 ASCII bytes", "a".repeat(65_537), 1009],
    ["65538 UTF-8 bytes in 21846 chars", "€".repeat(21_846), 1009],
    ["70000-byte binary frame", new Uint8Array(70_000), 1009],
    ["1 MiB text", "x".repeat(1 << 20), 1009],
    ["exactly 65536 ASCII bytes (not JSON)", "a".repeat(65_536), "error"],
    ["65536 bytes with 3-byte chars (not JSON)", "€".repeat(21_845) + "a", "error"],
    ["a ping padded to exactly 65536 bytes", '{"type":"ping"}' + " ".repeat(65_536 - 15), "pong"],
  ];
  for (const [note, data, expected] of oversize) {
    const s = await WsClient.connect(t.url);
    sendWs(s, data);
    if (typeof expected === "number") {
      const m = await nextMessage(s);
      const code = m === "closed" ? (await s.closed).code : null;
      if (code !== expected) {
        failures.add(`WS oversize ${note}`, [
          `expected close ${expected}, got ${code ?? JSON.stringify(m).slice(0, 120)}`,
        ]);
      }
      tally.add("ws: oversize message", `close ${code}`);
    } else {
      const want: WsExpect = expected === "pong"
        ? { kind: "pong" }
        : { kind: "error", error_type: "validation_error", in_reply_to: null };
      failures.add(`WS size ${note}`, checkWsReply(await nextMessage(s), want));
      sendWs(s, '{"type":"ping"}');
      failures.add(
        `WS size ${note} then ping`,
        checkWsReply(await nextMessage(s), { kind: "pong" }),
      );
      tally.add("ws: 64 KiB boundary", expected);
    }
    await s.close();
  }

  // 5. Frames the WebSocket API cannot send. These are refused by Deno's
  //    WebSocket layer (connection dropped or closed 1002/1007/1009); the
  //    server must neither crash nor answer 1011.
  const enc = new TextEncoder();
  const frames: [string, Uint8Array<ArrayBuffer>[]][] = [
    ["invalid UTF-8 in a text frame", [
      encodeFrame({
        opcode: 1,
        payload: bytesFrom('{"type":"', new Uint8Array([0xff, 0xfe]), '"}'),
      }),
    ]],
    ["invalid UTF-8 split across fragments", [
      encodeFrame({ opcode: 1, payload: new Uint8Array([0x7b, 0xe2]), fin: false }),
      encodeFrame({ opcode: 0, payload: new Uint8Array([0x82, 0x7d]) }),
    ]],
    ["reserved bits set", [
      encodeFrame({ opcode: 1, payload: enc.encode('{"type":"ping"}'), rsv: rng.int(1, 7) }),
    ]],
    ["unknown data opcode", [encodeFrame({ opcode: rng.int(3, 7), payload: enc.encode("x") })]],
    ["unknown control opcode", [
      encodeFrame({ opcode: rng.int(0xb, 0xf), payload: enc.encode("x") }),
    ]],
    ["control frame over 125 bytes", [encodeFrame({ opcode: 9, payload: new Uint8Array(200) })]],
    ["continuation without a start", [encodeFrame({ opcode: 0, payload: enc.encode("x") })]],
    ["close with an invalid code", [
      encodeFrame({ opcode: 8, payload: new Uint8Array([0x03, 0xe7]) }),
    ]],
    ["close with a 1-byte payload", [encodeFrame({ opcode: 8, payload: new Uint8Array([0x03]) })]],
    ["fragments adding up to over 64 KiB", [
      encodeFrame({ opcode: 1, payload: new Uint8Array(40_000).fill(0x61), fin: false }),
      encodeFrame({ opcode: 0, payload: new Uint8Array(40_000).fill(0x61) }),
    ]],
    ["a 4 GiB length header", [new Uint8Array([0x81, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4])]],
  ];
  for (const [note, parts] of frames) {
    const raw = await RawWsClient.connect(t.url);
    if (raw.status !== 101) {
      failures.add(`WS raw ${note}`, [`handshake answered ${raw.status}`]);
      raw.close();
      continue;
    }
    try {
      for (const p of parts) await writeAll(raw.conn, p);
    } catch { /* the server may already have dropped us */ }
    let code: number | null = null;
    let ended = false;
    const timer = setTimeout(() => raw.close(), HANG_MS);
    try {
      while (true) {
        const f = await raw.nextFrame();
        if (f === null) {
          ended = true;
          break;
        }
        if (f.opcode === 8) {
          code = f.payload.byteLength >= 2 ? (f.payload[0] << 8) | f.payload[1] : 1005;
          ended = true;
          break;
        }
      }
    } catch {
      ended = true;
    } finally {
      clearTimeout(timer);
      raw.close();
    }
    const problems = [];
    if (!ended) problems.push("the connection neither closed nor answered");
    if (code !== null && ![1002, 1007, 1009].includes(code)) problems.push(`closed with ${code}`);
    failures.add(`WS raw ${note}`, problems);
    tally.add("ws: raw frames", code === null ? "dropped" : `close ${code}`);
  }
}

/**
 * WebSocket under `DM_AUTH=jwt`: the first message must be a valid `auth`,
 * anything else first closes the socket with 4401; once authenticated the
 * socket behaves as without auth, and another user sees 404s.
 */
async function fuzzJwtWebSocket(
  t: TestServer,
  world: FuzzWorld,
  tokens: Awaited<ReturnType<typeof makeTokens>>,
  rng: Rng,
  tally: Tally,
  failures: Failures,
): Promise<void> {
  // 1. Bad first messages, each on a fresh socket.
  const firsts: [string, string | Uint8Array<ArrayBuffer>][] = [];
  for (const [name, token] of tokens.invalid) {
    firsts.push([`auth with token: ${name}`, JSON.stringify({ type: "auth", token })]);
  }
  firsts.push([
    "auth with a Bearer prefix",
    JSON.stringify({ type: "auth", token: `Bearer ${tokens.alice}` }),
  ]);
  firsts.push(["ping before auth", '{"type":"ping"}']);
  firsts.push([
    "turn before auth",
    JSON.stringify({ type: "turn", character_id: world.characters[0], user_action: "I sneak in" }),
  ]);
  firsts.push(["resume before auth", JSON.stringify({ type: "resume", turn_id: world.turns[0] })]);
  while (firsts.length < tokens.invalid.length + 30) {
    const c = wsCase(rng, world);
    if (c.expect.kind !== "close") firsts.push([`${c.family} [${c.note}]`, c.data]);
  }
  for (const [note, data] of firsts) {
    const ws = await WsClient.connect(t.url);
    sendWs(ws, data);
    const m = await nextMessage(ws);
    const code = m === "closed" ? (await ws.closed).code : null;
    // The code answers a binary frame before it checks identity (a
    // validation error, socket open); the docs say anything but auth
    // first closes with 4401. Either keeps the socket from playing.
    const binaryAnswered = typeof data !== "string" && typeof m === "object" &&
      m.type === "error" && m.error_type === "validation_error";
    if (code !== 4401 && !binaryAnswered) {
      failures.add(`jwt WS first message ${note}`, [
        `expected close 4401, got ${code ?? JSON.stringify(m).slice(0, 160)}`,
      ]);
    }
    tally.add("jwt ws: bad first message", code !== null ? `close ${code}` : "error (binary)");
    await ws.close();
  }

  // 2. Authenticated as alice: the usual bad messages get error messages.
  const alice = await WsClient.connect(t.url);
  sendWs(alice, JSON.stringify({ type: "auth", token: tokens.alice }));
  failures.add(
    "jwt WS auth",
    checkWsReply(await nextMessage(alice), { kind: "authenticated", user_id: "alice" }),
  );
  tally.add("jwt ws: auth", "authenticated");
  const aliceWorld = { ...world, wsUser: "alice" };
  let ws = alice;
  for (let i = 0; i < 60; i++) {
    const c = wsCase(rng, aliceWorld);
    sendWs(ws, c.data);
    const m = await nextMessage(ws);
    const problems = await checkWsReplyOn(ws, m, c.expect);
    tally.add("jwt ws: authenticated", problems.length ? "FAILED" : c.expect.kind);
    failures.add(`jwt WS (alice) ${c.family} [${c.note}]`, problems);
    if (m === "closed" || m === "timeout") {
      await ws.close();
      ws = await WsClient.connect(t.url);
      sendWs(ws, JSON.stringify({ type: "auth", token: tokens.alice }));
      await nextMessage(ws);
    }
  }
  await ws.close();

  // 3. Another user's socket: alice's character and turn are 404s.
  const mallory = await WsClient.connect(t.url);
  sendWs(mallory, JSON.stringify({ type: "auth", token: tokens.mallory }));
  failures.add(
    "jwt WS auth (mallory)",
    checkWsReply(await nextMessage(mallory), { kind: "authenticated", user_id: "mallory" }),
  );
  sendWs(mallory, JSON.stringify({ type: "resume", turn_id: world.turns[0] }));
  failures.add(
    "jwt WS mallory resumes alice's turn",
    checkWsReply(await nextMessage(mallory), {
      kind: "error",
      error_type: "turn_not_found",
      in_reply_to: "resume",
    }),
  );
  sendWs(
    mallory,
    JSON.stringify({ type: "turn", character_id: world.characters[0], user_action: "I steal" }),
  );
  failures.add(
    "jwt WS mallory plays alice's character",
    checkWsReply(await nextMessage(mallory), {
      kind: "error",
      error_type: "character_not_found",
      in_reply_to: "turn",
    }),
  );
  tally.add("jwt ws: another user", "404 × 2");
  await mallory.close();
}

// ------------------------------------------------------------------ tests

Deno.test({
  name: "fuzz: malformed HTTP, SSE and WebSocket input never gets a 5xx, a hang or a stored change",
  // The telemetry SDK keeps timers of its own until shutdown.
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const rng = new Rng(SEED);
  const dir = await Deno.makeTempDir({ prefix: "dm-fuzz-" });
  const dbPath = `${dir}/fuzz.db`;
  const telemetry = await startTelemetry({}, {
    logger: createLogger("error", () => {}),
    metricsEnabled: true,
  });
  const t = await startTestServer({
    DM_ADMIN_TOKEN: ADMIN_TOKEN,
    DM_SQLITE_PATH: dbPath,
    DM_MAX_STREAMS_PER_USER: String(MAX_STREAMS_PER_USER),
    DM_LOG_LEVEL: "info",
  }, {
    routes: (router) => router.add("GET", "/metrics", () => telemetry.metricsResponse()),
  });
  const tally = new Tally();
  const failures = new Failures();
  try {
    // ---- Explicit valid setup: two characters, one turn, and turns with
    // bogus traceparents (a traceparent only matters once a turn runs).
    const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${t.url}${path}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
    const characters: string[] = [];
    for (const name of ["Aria", "Brann"]) {
      const res = await post("/characters", { name, race: "Elf", class_name: "Ranger" });
      assert.equal(res.status, 201);
      characters.push((await json(res)).character_id);
    }
    const turns: string[] = [];
    const first = await post("/turn", {
      character_id: characters[0],
      user_action: "I light a torch",
    }, {
      "Idempotency-Key": "fuzz-setup-1",
    });
    assert.equal(first.status, 200);
    turns.push((await json(first)).turn_id);
    for (let i = 0; i < 9; i++) {
      let traceparent = bogusTraceparent(rng);
      // A WebSocket message's traceparent is at most 512 characters (a longer
      // one is a validation error, fuzzed below); over HTTP it is ignored.
      if (i % 3 === 2) traceparent = traceparent.slice(0, 512);
      const body = { character_id: characters[1], user_action: `I walk on (${i})` };
      const transport = ["http", "sse", "websocket"][i % 3];
      let turnId: string;
      if (transport === "websocket") {
        const ws = await WsClient.connect(t.url);
        sendWs(ws, JSON.stringify({ type: "turn", ...body, traceparent }));
        const { events, problems } = await followToDone(ws);
        failures.add(`traceparent ${JSON.stringify(traceparent)} over WS`, problems);
        assert.equal(events.at(-1)?.type, "complete", JSON.stringify(events.at(-1)));
        turnId = events[0].turn_id;
        await ws.close();
      } else {
        const headers: Record<string, string> = /^[\t\x20-\x7e]*$/.test(traceparent)
          ? { traceparent }
          : {};
        const res = await post(transport === "http" ? "/turn" : "/turn/stream", body, headers);
        assert.equal(res.status, 200, `traceparent ${JSON.stringify(traceparent)}`);
        turnId = res.headers.get("x-turn-id")!;
        const text = await res.text();
        if (transport === "sse") assert.match(text, /"type":"complete"[\s\S]*data: \[DONE\]/);
      }
      turns.push(turnId);
      tally.add("setup: turns with bogus traceparent", transport);
    }
    const policyRes = await fetch(`${t.url}/admin/policy`, {
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    assert.equal(policyRes.status, 200);
    const policy = await json(policyRes);

    const names = t.app.plugins.names;
    const world: FuzzWorld = {
      base: t.url,
      characters,
      turns,
      adminToken: ADMIN_TOKEN,
      web: names.includes("web"),
      webAssets: names.includes("web") ? ["app.css", "app.js", "client.js", "index.html"] : [],
      metrics: true,
    };
    // index.html is deliberately not served under /static/ (only at /).
    world.webAssets = world.webAssets.filter((n) => n !== "index.html");
    const before = await snapshot(t, dbPath, world);
    const logMark = t.logs.length;

    // ---- Generate every HTTP case up front: one seed, one list.
    const factory = new CaseFactory(rng, world, mirrorRouter(world));
    const plan: [() => void, number][] = [
      [() => factory.characters(), 90],
      [() => factory.turn("/turn"), 110],
      [() => factory.turn("/turn/stream"), 100],
      [() => factory.getById("characters"), 60],
      [() => factory.getById("turns"), 60],
      [() => factory.events(), 120],
      [() => factory.adminGet(), 40],
      [() => factory.adminPut(policy), 90],
      [() => factory.wsHttp(), 30],
      [() => factory.methods(), 150],
      [() => factory.unknownRoutes(), 80],
      [() => factory.web(), 40],
      [() => factory.preflight(), 5],
    ];
    for (const [make, n] of plan) for (let i = 0; i < n; i++) make();
    factory.upperCaseIds();
    const raws = rawCases(rng, world, 130);

    // A body that never finishes arriving: 408 after the 10 s body deadline.
    // It runs alongside everything else, so it costs no extra time.
    const url = new URL(t.url);
    const slow = (async () => {
      const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
      try {
        await writeAll(
          conn,
          bytesFrom(
            `POST /characters HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\n` +
              `Content-Length: 100\r\nConnection: close\r\n\r\n{"name":`,
          ),
        );
        const buf = new Uint8Array(4096);
        let text = "";
        const timer = setTimeout(() => conn.close(), 20_000);
        try {
          while (!/\r\n\r\n[\s\S]*\}\}\}$/.test(text)) {
            const n = await conn.read(buf);
            if (n === null) break;
            text += new TextDecoder().decode(buf.subarray(0, n));
          }
        } catch {
          /* closed by the timer */
        } finally {
          clearTimeout(timer);
        }
        return text;
      } finally {
        try {
          conn.close();
        } catch { /* closed */ }
      }
    })();

    // ---- HTTP over fetch (raw TCP where fetch refuses the request).
    await pool(factory.cases, 8, async (c) => {
      const s = await send(t.url, c);
      const problems = s.hung
        ? ["no answer within the time limit (hang)"]
        : checkAnswer(s, c.expect);
      // X-Request-Id is echoed exactly when it is safe, else replaced by a UUID.
      const sentId = c.headers.find(([k]) => k.toLowerCase() === "x-request-id")?.[1];
      const gotId = s.header("x-request-id");
      if (sentId !== undefined && gotId !== null && s.via === "fetch") {
        const seen = headerAsSeen(sentId);
        const want = /^[A-Za-z0-9._:-]{1,128}$/.test(seen) ? seen : null;
        if (want !== null ? gotId !== want : !/^[0-9a-f-]{36}$/.test(gotId)) {
          problems.push(
            `X-Request-Id ${JSON.stringify(sentId)} answered as ${JSON.stringify(gotId)}`,
          );
        }
      }
      if (!s.hung && c.okCheck && s.status !== null && s.status < 300) {
        const p = c.okCheck(s.body);
        if (p) problems.push(p);
      }
      tally.add(`http ${c.family}`, problems.length ? `FAILED(${outcome(s)})` : outcome(s));
      failures.add(
        `#${c.n} ${c.family} ${c.method} ${c.target.slice(0, 80)} via ${s.via} [${c.note}]`,
        problems,
      );
    });

    // ---- Raw TCP malformations.
    await pool(raws, 4, async (c) => {
      const a = await rawRequest(url.hostname, Number(url.port), c.bytes, {
        method: c.method,
        timeoutMs: HANG_MS,
      });
      const answer = {
        status: a.status,
        header: (name: string) => a.headers.find(([k]) => k === name)?.[1] ?? null,
        body: a.body,
        method: c.method,
      };
      const problems = a.timedOut
        ? ["no answer within the time limit (hang)"]
        : checkAnswer(answer, c.expect);
      if (
        !a.timedOut && a.status !== null && c.check && a.headers.some(([k]) => k === "x-request-id")
      ) {
        const p = c.check(a);
        if (p) problems.push(p);
      }
      const result = a.timedOut ? "hang" : a.status === null ? "closed" : String(a.status);
      tally.add(c.family, problems.length ? `FAILED(${result})` : result);
      failures.add(`raw ${c.family} [${c.note}]`, problems);
    });

    // ---- WebSocket.
    await fuzzWebSocket(t, world, rng, tally, failures, { sequential: 260, burst: 200 });

    // ---- The slow body.
    const slowAnswer = await slow;
    const slowStatus = Number(/^HTTP\/1\.1 (\d{3})/.exec(slowAnswer)?.[1]);
    if (slowStatus !== 408 || !/"request_timeout"/.test(slowAnswer)) {
      failures.add("slow body", [`expected 408 request_timeout, got ${slowAnswer.slice(0, 200)}`]);
    }
    tally.add("raw: body never finishes", String(slowStatus));

    console.log(
      tally.render(`fuzz counts (seed ${SEED}; ${factory.discarded} valid drafts redrawn):`),
    );
    const httpTotal = tally.total("http ") + tally.total("raw");
    const wsTotal = tally.total("ws:");
    console.log(`HTTP requests: ${httpTotal}, WebSocket messages: ${wsTotal}`);
    assert.ok(httpTotal + wsTotal >= 1000, `only ${httpTotal + wsTotal} requests and messages`);
    failures.assertNone("the DM_AUTH=none run");

    // ---- Nothing stored, nothing logged as an error, still serving.
    const after = await snapshot(t, dbPath, world);
    assertUnchanged(before, after);
    const policyAfter = await json(
      await fetch(`${t.url}/admin/policy`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } }),
    );
    assert.deepEqual(policyAfter, policy, "the policy changed");
    assert.deepEqual(errorLogs(t, logMark), [], "error-level log lines during the fuzz");

    const health = await fetch(`${t.url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok" });
    // No stream slot leaked: a full set of sockets still opens (the server
    // releases slots when it sees a close, so allow it a moment).
    let open: WsClient[] = [];
    for (let attempt = 0; attempt < 50; attempt++) {
      open = [];
      try {
        for (let i = 0; i < MAX_STREAMS_PER_USER; i++) open.push(await WsClient.connect(t.url));
        break;
      } catch {
        await Promise.all(open.map((s) => s.close()));
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.equal(open.length, MAX_STREAMS_PER_USER, "stream slots leaked during the fuzz");
    for (const s of open) {
      sendWs(s, '{"type":"ping"}');
      assert.deepEqual(await nextMessage(s), { type: "pong" });
    }
    await Promise.all(open.map((s) => s.close()));
    const turn = await post("/turn", { character_id: characters[0], user_action: "I go on" });
    assert.equal(turn.status, 200);
    assert.equal(typeof (await json(turn)).narrative, "string");
    const view = await json(await fetch(`${t.url}/characters/${characters[0]}`));
    assert.equal(view.turn_count, before.views[characters[0]].turn_count + 1);
  } finally {
    await t.close();
    await telemetry.shutdown();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "fuzz: DM_AUTH=jwt refuses bad Authorization headers and ?access_token= values with 401",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const rng = new Rng(SEED ^ 0x5a5a5a5a);
  const dir = await Deno.makeTempDir({ prefix: "dm-fuzz-jwt-" });
  const dbPath = `${dir}/fuzz.db`;
  const t = await startTestServer({
    DM_AUTH: "jwt",
    DM_JWT_SECRET: JWT_SECRET,
    DM_ADMIN_TOKEN: ADMIN_TOKEN,
    DM_SQLITE_PATH: dbPath,
    DM_LOG_LEVEL: "info",
  });
  const tally = new Tally();
  const failures = new Failures();
  try {
    const tokens = await makeTokens(JWT_SECRET);
    const alice = { Authorization: `Bearer ${tokens.alice}`, "Content-Type": "application/json" };
    const created = await fetch(`${t.url}/characters`, {
      method: "POST",
      headers: alice,
      body: JSON.stringify({ name: "Aria", race: "Elf", class_name: "Ranger" }),
    });
    assert.equal(created.status, 201);
    const character = (await json(created)).character_id;
    const played = await fetch(`${t.url}/turn`, {
      method: "POST",
      headers: alice,
      body: JSON.stringify({ character_id: character, user_action: "I look around" }),
    });
    assert.equal(played.status, 200);
    const turn = (await json(played)).turn_id;
    const world: FuzzWorld = {
      base: t.url,
      characters: [character],
      turns: [turn],
      adminToken: ADMIN_TOKEN,
      web: false,
      webAssets: [],
      metrics: false,
    };
    const before = await snapshot(t, dbPath, world, { Authorization: `Bearer ${tokens.alice}` });
    const logMark = t.logs.length;
    // A socket that never authenticates is closed with 4401 after 10 s; it
    // waits alongside the rest, so it costs little extra time.
    const idleSocket = WsClient.connect(t.url).then(async (ws) => (await ws.closed).code);

    const cases = jwtCases(rng, { character, turn, tokens }, 240);
    await pool(cases, 8, async (c) => {
      const s = await send(t.url, c);
      const expect: Expectation = s.via === "raw" && c.expect.kind === "error"
        ? { kind: "protocol", types: c.expect.types }
        : c.expect;
      const problems = s.hung ? ["no answer within the time limit (hang)"] : checkAnswer(s, expect);
      tally.add(c.family, problems.length ? `FAILED(${outcome(s)})` : outcome(s));
      failures.add(`${c.family} ${c.target.slice(0, 60)} [${c.note}]`, problems);
    });

    // A valid ?access_token= on the events route is the documented way in.
    const replay = await fetch(`${t.url}/turns/${turn}/events?access_token=${tokens.alice}`);
    assert.equal(replay.status, 200);
    assert.match(await replay.text(), /data: \[DONE\]/);
    tally.add("jwt: GET /turns/{id}/events", "200 (valid ?access_token=, accounted)");

    await fuzzJwtWebSocket(t, world, tokens, rng, tally, failures);
    const idle = await idleSocket;
    if (idle !== 4401) failures.add("jwt WS idle without auth", [`closed with ${idle}, not 4401`]);
    tally.add("jwt ws: no auth within 10 s", `close ${idle}`);

    console.log(tally.render(`fuzz counts, DM_AUTH=jwt (seed ${SEED ^ 0x5a5a5a5a}):`));
    failures.assertNone("the DM_AUTH=jwt run");

    const after = await snapshot(t, dbPath, world, { Authorization: `Bearer ${tokens.alice}` });
    assertUnchanged(before, after);
    assert.deepEqual(errorLogs(t, logMark), [], "error-level log lines during the fuzz");
    assert.equal((await fetch(`${t.url}/health`)).status, 200);
    const again = await fetch(`${t.url}/turn`, {
      method: "POST",
      headers: alice,
      body: JSON.stringify({ character_id: character, user_action: "I go on" }),
    });
    assert.equal(again.status, 200);
    await again.body?.cancel();
  } finally {
    await t.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
