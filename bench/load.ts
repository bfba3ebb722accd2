/**
 * The load generator of the benchmark, a process of its own so that its CPU
 * is not the server's. Real clients: SSE over `fetch` streaming
 * (`POST /turn/stream`) and WebSocket (`GET /ws`, one socket per player
 * playing its turns one after another).
 *
 * ```sh
 * deno run --allow-all bench/load.ts '<LoadConfig JSON>'   # or @<file with the JSON>
 * ```
 *
 * (`--allow-all` because Deno lets a program read `/proc/<pid>/stat` only with it.)
 *
 * Two kinds of run:
 *
 * - `turns`: `players` concurrent players each play `warmupTurns` unmeasured
 *   turns, wait for each other, then play `turns` measured turns back to back
 *   (a closed loop). Reports turns per second, client time to first token
 *   (request sent → first `token` event) minus the model's, and the CPU time
 *   the processes in `cpuPids` used during the measured part.
 * - `hold`: open `streams` streams (at most `connectConcurrency` connecting
 *   at once) against a slow model, print `{"kind":"holding",…}` once all are
 *   open, keep them open until a `release` line arrives on stdin (or
 *   `holdTimeoutMs`), then close them all.
 *
 * Progress lines and the final `{"kind":"result",…}` line are JSON on
 * stdout. Every wait is bounded (`turnTimeoutMs`, `deadlineMs`,
 * `rampTimeoutMs`, `holdTimeoutMs`).
 *
 * @module
 */
import { cpuMs, machineBusyMs } from "./lib/proc.ts";
import { round, summarize, type Summary } from "./lib/stats.ts";

/** What to run; passed as JSON in the first argument. */
export interface LoadConfig {
  kind: "turns" | "hold";
  /** `dm` speaks the service's protocol; `baseline` the relay's (the same frames, fewer fields). */
  target: "dm" | "baseline";
  /** Base URL, `http://127.0.0.1:<port>`. */
  url: string;
  /** One character per player (turns) or per stream (hold); ignored by the relay. */
  characters: string[];
  /** Share of players (or streams) on WebSocket, 0–1; the rest use SSE. */
  wsShare: number;
  /** The model's configured time to first token. */
  modelTtftMs: number;
  /**
   * The model's base URL (`…/v1`). When set, the model's time to first token
   * is first measured by calling it directly (sequential raw streaming
   * requests, at rest) and that median is subtracted to give the added TTFT;
   * otherwise `modelTtftMs` is.
   */
  modelUrl: string | null;
  /** Each player waits a random 0–`staggerMs` before its first measured turn. */
  staggerMs: number;
  /** Processes whose CPU time is measured over the measured part, by label. */
  cpuPids: Record<string, number>;
  players: number;
  turns: number;
  warmupTurns: number;
  /** Longest one turn may take before it counts as failed. */
  turnTimeoutMs: number;
  /** Longest the measured part may take; turns not started by then are skipped. */
  deadlineMs: number;
  streams: number;
  connectConcurrency: number;
  /** Streams expected to receive tokens while held (the rest wait for a model slot). */
  expectStreaming: number;
  /** Longest the ramp to `streams` open streams may take. */
  rampTimeoutMs: number;
  /** Longest streams are held without a `release`. */
  holdTimeoutMs: number;
}

/** One played turn as the client saw it. */
interface TurnSample {
  transport: "sse" | "ws";
  ok: boolean;
  /** Request sent → first token event, ms. */
  ttftMs: number | null;
  totalMs: number;
  tokens: number;
  error: string | null;
}

const ACTIONS = [
  "I open the crypt door",
  "I search the room for hidden levers",
  "I ask the innkeeper about the missing bellringer",
  "I climb the stairs and listen",
];

const TOKEN_PREFIX = '{"type":"token"';
const ERROR_PREFIX = '{"type":"error"';
const REQUEST_ERROR_PREFIX = '{"type":"error","turn_id":null';
const DONE_PREFIX = '{"type":"done"';

function errorTypeOf(data: string): string {
  return data.match(/"error_type":"([a-z_]+)"/)?.[1] ?? "error_event";
}

function errorName(e: unknown): string {
  if (e instanceof DOMException && (e.name === "TimeoutError" || e.name === "AbortError")) {
    return "timeout";
  }
  const message = e instanceof Error ? e.message : String(e);
  if (/EMFILE|too many open files/i.test(message)) return "emfile";
  if (/connection refused/i.test(message)) return "connection_refused";
  if (/reset|closed|broken pipe/i.test(message)) return "connection_reset";
  return e instanceof Error ? e.name : "error";
}

function turnBody(character_id: string, n: number): string {
  return JSON.stringify({ character_id, user_action: ACTIONS[n % ACTIONS.length] });
}

/** Frames of an SSE body: calls `onData` with each `data:` payload; resolves at `[DONE]` or EOF. */
async function readSse(
  body: ReadableStream<Uint8Array>,
  onData: (data: string) => void,
): Promise<boolean> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const at = frame.indexOf("data: ");
        if (at === -1) continue; // a heartbeat comment
        const data = frame.slice(at + 6);
        if (data === "[DONE]") return true;
        onData(data);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/** One turn over SSE. */
async function sseTurn(cfg: LoadConfig, character: string, n: number): Promise<TurnSample> {
  const t0 = performance.now();
  let ttftMs: number | null = null;
  let tokens = 0;
  let error: string | null = null;
  try {
    const response = await fetch(`${cfg.url}/turn/stream`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: turnBody(character, n),
      signal: AbortSignal.timeout(cfg.turnTimeoutMs),
    });
    if (!response.ok || !response.body) {
      const text = await response.text();
      error = `http_${response.status}_${text.match(/"type":"([a-z_]+)"/)?.[1] ?? "error"}`;
    } else {
      const done = await readSse(response.body, (data) => {
        if (data.startsWith(TOKEN_PREFIX)) {
          tokens++;
          ttftMs ??= performance.now() - t0;
        } else if (data.startsWith(ERROR_PREFIX)) {
          error ??= errorTypeOf(data);
        }
      });
      if (!done) error ??= "stream_ended_without_done";
    }
  } catch (e) {
    error = errorName(e);
  }
  return {
    transport: "sse",
    ok: error === null,
    ttftMs,
    totalMs: performance.now() - t0,
    tokens,
    error,
  };
}

/** A WebSocket player: one socket, turns one after another. */
class WsPlayer {
  #socket: WebSocket | null = null;
  #onMessage: ((data: string) => void) | null = null;
  #onClose: (() => void) | null = null;

  constructor(readonly url: string) {}

  /** Open (or reopen) the socket. */
  async connect(timeoutMs: number): Promise<void> {
    this.close();
    const socket = new WebSocket(this.url.replace(/^http/, "ws") + "/ws");
    this.#socket = socket;
    const opened = Promise.withResolvers<void>();
    const timer = setTimeout(() => opened.reject(new Error("ws connect timeout")), timeoutMs);
    socket.onopen = () => opened.resolve();
    socket.onerror = () => opened.reject(new Error("ws connection failed"));
    socket.onclose = () => {
      opened.reject(new Error("ws closed before open"));
      this.#onClose?.();
    };
    socket.onmessage = (e) => {
      if (typeof e.data === "string") this.#onMessage?.(e.data);
    };
    try {
      await opened.promise;
    } finally {
      clearTimeout(timer);
    }
  }

  get open(): boolean {
    return this.#socket?.readyState === WebSocket.OPEN;
  }

  /** Send one turn and wait for `done` (or a request error, the socket closing, the timeout). */
  async turn(character: string, n: number, timeoutMs: number): Promise<TurnSample> {
    const t0 = performance.now();
    let ttftMs: number | null = null;
    let tokens = 0;
    let error: string | null = null;
    try {
      if (!this.open) await this.connect(timeoutMs);
      const finished = Promise.withResolvers<void>();
      const timer = setTimeout(() => {
        error ??= "timeout";
        finished.resolve();
      }, timeoutMs);
      this.#onMessage = (data) => {
        if (data.startsWith(TOKEN_PREFIX)) {
          tokens++;
          ttftMs ??= performance.now() - t0;
        } else if (data.startsWith(DONE_PREFIX)) {
          finished.resolve();
        } else if (data.startsWith(REQUEST_ERROR_PREFIX)) {
          error ??= `request_${errorTypeOf(data)}`;
          finished.resolve();
        } else if (data.startsWith(ERROR_PREFIX)) {
          error ??= errorTypeOf(data);
        }
      };
      this.#onClose = () => {
        error ??= "ws_closed";
        finished.resolve();
      };
      this.#socket!.send(JSON.stringify({ type: "turn", ...JSON.parse(turnBody(character, n)) }));
      await finished.promise;
      clearTimeout(timer);
      // A timed-out socket may still deliver the old turn; start afresh next time.
      if (error === "timeout") this.close();
    } catch (e) {
      error ??= errorName(e);
    } finally {
      this.#onMessage = null;
      this.#onClose = null;
    }
    return {
      transport: "ws",
      ok: error === null,
      ttftMs,
      totalMs: performance.now() - t0,
      tokens,
      error,
    };
  }

  close(): void {
    const socket = this.#socket;
    this.#socket = null;
    if (!socket) return;
    socket.onclose = null;
    socket.onmessage = null;
    socket.onerror = null;
    try {
      socket.close();
    } catch { /* already closed */ }
  }
}

function cpuSnapshot(pids: Record<string, number>): Record<string, number | null> {
  const out: Record<string, number | null> = { load: cpuMs(Deno.pid), machine: machineBusyMs() };
  for (const [label, pid] of Object.entries(pids)) out[label] = cpuMs(pid);
  return out;
}

function cpuDelta(
  before: Record<string, number | null>,
  after: Record<string, number | null>,
): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const key of Object.keys(before)) {
    const a = before[key];
    const b = after[key];
    out[key] = a === null || b === null ? null : b - a;
  }
  return out;
}

function emit(value: unknown): void {
  console.log(JSON.stringify(value));
}

function roundSummary(s: Summary): Summary {
  return {
    n: s.n,
    mean: round(s.mean),
    p50: round(s.p50),
    p95: round(s.p95),
    p99: round(s.p99),
    max: round(s.max),
  };
}

/** Median time to the first delta when calling the model directly, ms. */
async function directModelTtft(modelUrl: string, runs: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const response = await fetch(`${modelUrl}/responses`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer bench" },
      body: JSON.stringify({ model: "calibration", input: "hi", stream: true }),
      signal: AbortSignal.timeout(30_000),
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      if (buffer.includes("response.output_text.delta")) {
        out.push(performance.now() - t0);
        break;
      }
    }
    await reader.cancel();
  }
  return out;
}

function describe(samples: TurnSample[], modelTtftMs: number) {
  const ok = samples.filter((s) => s.ok);
  const ttft = ok.map((s) => s.ttftMs).filter((v): v is number => v !== null);
  return {
    turns_ok: ok.length,
    turns_failed: samples.length - ok.length,
    ttft_ms: roundSummary(summarize(ttft)),
    added_ttft_ms: roundSummary(summarize(ttft.map((v) => v - modelTtftMs))),
    turn_ms: roundSummary(summarize(ok.map((s) => s.totalMs))),
    tokens_per_turn: ok.length ? round(ok.reduce((a, s) => a + s.tokens, 0) / ok.length, 1) : 0,
  };
}

function countErrors(samples: TurnSample[]): Record<string, number> {
  const errors: Record<string, number> = {};
  for (const s of samples) if (s.error) errors[s.error] = (errors[s.error] ?? 0) + 1;
  return errors;
}

/** The `turns` run. */
async function runTurns(cfg: LoadConfig): Promise<void> {
  const wsPlayers = Math.round(cfg.players * cfg.wsShare);
  const players = Array.from({ length: cfg.players }, (_, i) => ({
    character: cfg.characters[i % Math.max(1, cfg.characters.length)] ??
      crypto.randomUUID(),
    ws: i < wsPlayers ? new WsPlayer(cfg.url) : null,
    n: 0,
  }));
  const play = async (p: typeof players[number], count: number, deadline: number) => {
    const samples: TurnSample[] = [];
    for (let t = 0; t < count && performance.now() < deadline; t++) {
      samples.push(
        p.ws
          ? await p.ws.turn(p.character, p.n++, cfg.turnTimeoutMs)
          : await sseTurn(cfg, p.character, p.n++),
      );
    }
    return samples;
  };

  // The model's own time to first token, as a client calling it directly sees it.
  let modelTtft = cfg.modelTtftMs;
  let direct: Summary | null = null;
  if (cfg.modelUrl) {
    direct = roundSummary(summarize(await directModelTtft(cfg.modelUrl, 15)));
    modelTtft = direct.p50;
  }

  // Warm-up: connect sockets, compile hot paths, fill pools; not measured.
  const warmDeadline = performance.now() + cfg.deadlineMs;
  const warm = (await Promise.all(players.map(async (p) => {
    if (cfg.staggerMs > 0) await new Promise((r) => setTimeout(r, Math.random() * cfg.staggerMs));
    return play(p, cfg.warmupTurns, warmDeadline);
  }))).flat();
  emit({ kind: "warmed", turns: warm.length, errors: countErrors(warm) });

  const cpu0 = cpuSnapshot(cfg.cpuPids);
  const t0 = performance.now();
  const deadline = t0 + cfg.deadlineMs;
  const samples = (await Promise.all(players.map(async (p) => {
    // Spread the first turns so players do not all start together every round.
    if (cfg.staggerMs > 0) await new Promise((r) => setTimeout(r, Math.random() * cfg.staggerMs));
    return play(p, cfg.turns, deadline);
  }))).flat();
  const wallMs = performance.now() - t0;
  const cpu = cpuDelta(cpu0, cpuSnapshot(cfg.cpuPids));
  for (const p of players) p.ws?.close();
  // What else kept the machine busy meanwhile (other users' work): noise.
  const ours = Object.entries(cpu).filter(([k]) => k !== "machine")
    .reduce((a, [, v]) => a + (v ?? 0), 0);
  const otherCores = cpu.machine === null ? null : round((cpu.machine - ours) / wallMs, 2);

  const all = describe(samples, modelTtft);
  emit({
    kind: "result",
    target: cfg.target,
    players: cfg.players,
    ws_players: wsPlayers,
    wall_s: round(wallMs / 1000, 3),
    model_ttft_ms: { configured: cfg.modelTtftMs, subtracted: modelTtft, direct },
    turns_per_s: round(all.turns_ok / (wallMs / 1000), 1),
    ...all,
    errors: countErrors(samples),
    by_transport: {
      sse: describe(samples.filter((s) => s.transport === "sse"), modelTtft),
      ws: describe(samples.filter((s) => s.transport === "ws"), modelTtft),
    },
    cpu_ms: cpu,
    /** Cores busy with work other than the processes measured here, on average. */
    other_load_cores: otherCores,
    cpu_ms_per_turn: Object.fromEntries(
      Object.entries(cpu).map((
        [k, v],
      ) => [k, v === null || all.turns_ok === 0 ? null : round(v / all.turns_ok, 3)]),
    ),
  });
}

/** A stream held open by the `hold` run. */
interface Held {
  close(): void;
}

/** The `hold` run. */
async function runHold(cfg: LoadConfig): Promise<void> {
  const t0 = performance.now();
  let open = 0;
  let streaming = 0;
  let failed = 0;
  let closedEarly = 0;
  const errors: Record<string, number> = {};
  const held: Held[] = [];
  const fail = (reason: string) => {
    failed++;
    errors[reason] = (errors[reason] ?? 0) + 1;
  };
  const wsStreams = Math.round(cfg.streams * cfg.wsShare);
  const rampDeadline = t0 + cfg.rampTimeoutMs;

  const openSse = async (character: string, n: number): Promise<void> => {
    const abort = new AbortController();
    held.push({ close: () => abort.abort() });
    const timer = setTimeout(() => abort.abort(), Math.max(0, rampDeadline - performance.now()));
    let response: Response;
    try {
      response = await fetch(`${cfg.url}/turn/stream`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: turnBody(character, n),
        signal: abort.signal,
      });
    } catch (e) {
      clearTimeout(timer);
      fail(errorName(e));
      return;
    }
    clearTimeout(timer);
    if (!response.ok || !response.body) {
      fail(`http_${response.status}`);
      await response.body?.cancel();
      return;
    }
    open++;
    // Read in the background; the stream stays open until released.
    let first = true;
    readSse(response.body, (data) => {
      if (first && data.startsWith(TOKEN_PREFIX)) {
        first = false;
        streaming++;
      }
    }).then(
      () => closedEarly++,
      () => {/* released */},
    );
  };

  const openWs = async (character: string, n: number): Promise<void> => {
    const socket = new WebSocket(cfg.url.replace(/^http/, "ws") + "/ws");
    held.push({
      close: () => {
        socket.onclose = null;
        try {
          socket.close();
        } catch { /* closed */ }
      },
    });
    const opened = Promise.withResolvers<boolean>();
    const timer = setTimeout(
      () => opened.resolve(false),
      Math.max(0, rampDeadline - performance.now()),
    );
    let first = true;
    let counted = false;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "turn", ...JSON.parse(turnBody(character, n)) }));
      counted = true;
      open++;
      opened.resolve(true);
    };
    socket.onerror = () => {};
    socket.onclose = () => {
      if (counted) closedEarly++;
      opened.resolve(false);
    };
    socket.onmessage = (e) => {
      if (first && typeof e.data === "string" && e.data.startsWith(TOKEN_PREFIX)) {
        first = false;
        streaming++;
      } else if (typeof e.data === "string" && e.data.startsWith(REQUEST_ERROR_PREFIX)) {
        errors[`request_${errorTypeOf(e.data)}`] = (errors[`request_${errorTypeOf(e.data)}`] ??
          0) + 1;
      }
    };
    const ok = await opened.promise;
    clearTimeout(timer);
    if (!ok) fail("ws_open_failed");
  };

  // Ramp with at most `connectConcurrency` streams being set up at once.
  let next = 0;
  const progress = setInterval(() => {
    emit({ kind: "progress", open, streaming, failed, ms: Math.round(performance.now() - t0) });
  }, 1000);
  const worker = async () => {
    while (next < cfg.streams && performance.now() < rampDeadline) {
      const i = next++;
      const character = cfg.characters[i % Math.max(1, cfg.characters.length)] ??
        crypto.randomUUID();
      await (i < wsStreams ? openWs(character, i) : openSse(character, i));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, cfg.connectConcurrency) }, worker));
  // Wait (bounded) for the streams that got a model slot to see their first token.
  while (
    streaming < Math.min(cfg.expectStreaming, open) && performance.now() < rampDeadline
  ) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const rampMs = performance.now() - t0;
  emit({ kind: "holding", open, streaming, failed, ramp_ms: Math.round(rampMs), errors });

  // Hold until `release` arrives on stdin (or the hold timeout).
  const released = Promise.withResolvers<string>();
  const holdTimer = setTimeout(() => released.resolve("timeout"), cfg.holdTimeoutMs);
  (async () => {
    const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return released.resolve("stdin_closed");
      text += value;
      if (text.includes("release")) return released.resolve("release");
    }
  })().catch(() => released.resolve("stdin_error"));
  const how = await released.promise;
  clearTimeout(holdTimer);
  clearInterval(progress);
  const stillOpen = open - closedEarly;
  for (const h of held) h.close();
  emit({
    kind: "result",
    target: cfg.target,
    requested: cfg.streams,
    ws_streams: wsStreams,
    open,
    streaming,
    failed,
    closed_early: closedEarly,
    still_open_at_release: stillOpen,
    ramp_ms: Math.round(rampMs),
    released_by: how,
    errors,
  });
}

if (import.meta.main) {
  const arg = Deno.args[0] ?? "{}";
  const cfg = JSON.parse(
    arg.startsWith("@") ? Deno.readTextFileSync(arg.slice(1)) : arg,
  ) as LoadConfig;
  if (cfg.kind === "hold") await runHold(cfg);
  else await runTurns(cfg);
  Deno.exit(0);
}
