/**
 * The end-to-end benchmark: `deno task bench` (full) or
 * `deno task bench --quick` (under a minute on 2 cores).
 *
 * Every part runs as its own process on 127.0.0.1:
 *
 * - the fake model (`bench/fake_llm_server.ts`: the tests' OpenAI fake with a
 *   set time to first token, delay between deltas and deltas per turn),
 * - dungeon-master itself (`src/main.ts`, started as the real `deno` binary so
 *   its PID is the server's) with `DM_LLM=openai` pointed at the fake, SQLite
 *   on a temp file, metrics on and traces exported to
 * - an OTLP sink (`bench/otlp_sink.ts`),
 * - the bare relay (`bench/baseline_relay.ts`) as the baseline,
 * - the load generator (`bench/load.ts`) with real SSE and WebSocket clients.
 *
 * Three phases, each against both servers (fresh processes per phase):
 *
 * 1. latency: `players` concurrent streaming turns against a model with a
 *    realistic time to first token; client TTFT minus the model's.
 * 2. throughput: a zero-delay model, players in a closed loop; turns per
 *    second and server CPU per turn; dungeon-master also with telemetry off.
 * 3. streams: `C` streams held open by a slow model; RSS before and while
 *    open, per stream.
 *
 * Prints a markdown table and writes `bench/results/latest.json` (full mode)
 * or `bench/results/quick.json`. Flags: `--quick`, `--profile` or
 * `--profile=latency` (adds a throughput or latency run of dungeon-master
 * under `--cpu-prof` and lists its top functions), `--only=latency,throughput,streams`, `--out=<path>`,
 * `--set=<phase>.<param>=<number>` (e.g. `--set=streams.count=2000`),
 * `--dm-root=<dir>` (run dungeon-master from another checkout, to compare
 * versions with the same harness).
 *
 * @module
 */
import { SqliteStore } from "../src/store/sqlite/mod.ts";
import { LOCAL_USER } from "../src/http/auth.ts";
import { type Child, freePort, spawnDeno, waitForHttp } from "./lib/child.ts";
import { captureDmRequest } from "./lib/dm_request.ts";
import { outcomeText } from "./lib/outcome.ts";
import { fileLimit, loadAvg, machineInfo, memoryKiB } from "./lib/proc.ts";
import { round } from "./lib/stats.ts";
import type { LoadConfig } from "./load.ts";
import { summarizeProfile } from "./profile_top.ts";

const ROOT = new URL("..", import.meta.url).pathname;
/** Where dungeon-master is run from (`--dm-root=<checkout>` compares another version). */
let DM_ROOT = ROOT;
const DENO_RUN = [
  "run",
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-sys",
];

/** The parameters of one mode. */
export interface BenchParams {
  latency: {
    players: number;
    turns: number;
    warmupTurns: number;
    wsShare: number;
    modelTtftMs: number;
    deltaMs: number;
    deltas: number;
  };
  throughput: {
    players: number;
    turns: number;
    warmupTurns: number;
    wsShare: number;
    deltas: number;
    /** Runs of each server, interleaved (relay, dm, dm without telemetry, …); medians are reported. */
    repeats: number;
  };
  streams: {
    count: number;
    wsShare: number;
    connectConcurrency: number;
    modelTtftMs: number;
    /** Delay after the first delta: longer than the hold, so streams stay open. */
    deltaMs: number;
    settleMs: number;
    rampTimeoutMs: number;
  };
}

/** Quick mode: small enough to finish within 60 s on 2 cores. */
export const QUICK: BenchParams = {
  latency: {
    players: 20,
    turns: 3,
    warmupTurns: 1,
    wsShare: 0.5,
    modelTtftMs: 100,
    deltaMs: 25,
    deltas: 10,
  },
  throughput: { players: 8, turns: 25, warmupTurns: 1, wsShare: 0.5, deltas: 30, repeats: 1 },
  streams: {
    count: 200,
    wsShare: 0.5,
    connectConcurrency: 50,
    modelTtftMs: 20,
    deltaMs: 120_000,
    settleMs: 1000,
    rampTimeoutMs: 20_000,
  },
};

/** Full mode: the targets' loads (100 concurrent streaming turns, 10,000 open streams). */
export const FULL: BenchParams = {
  latency: {
    players: 100,
    turns: 8,
    warmupTurns: 1,
    wsShare: 0.5,
    modelTtftMs: 100,
    deltaMs: 50,
    deltas: 30,
  },
  throughput: { players: 32, turns: 40, warmupTurns: 2, wsShare: 0.5, deltas: 30, repeats: 5 },
  streams: {
    count: 10_000,
    wsShare: 0.5,
    connectConcurrency: 200,
    modelTtftMs: 20,
    deltaMs: 300_000,
    settleMs: 3000,
    rampTimeoutMs: 180_000,
  },
};

/** File descriptors a server keeps besides its streams (stdio, SQLite, epoll, pools). */
const FD_HEADROOM = 1000;

type Target = "dm" | "baseline";

interface Fleet {
  llm: Child;
  llmUrl: string;
}

function log(message: string): void {
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);
}

function parseJsonLine<T>(line: string): T {
  return JSON.parse(line) as T;
}

async function startFakeLlm(ttftMs: number, deltaMs: number, deltas: number): Promise<Fleet> {
  const llm = spawnDeno("fake-llm", [
    "run",
    "--allow-net",
    "bench/fake_llm_server.ts",
    "--ttft-ms",
    String(ttftMs),
    "--delta-ms",
    String(deltaMs),
    "--deltas",
    String(deltas),
  ], { cwd: ROOT });
  const line = await llm.waitForLine((l) => l.includes('"listening"'), 30_000);
  return { llm, llmUrl: parseJsonLine<{ url: string }>(line).url };
}

interface Sink {
  sink: Child;
  /** `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  url: string;
  /** Per-turn span timings since the last call (see `bench/otlp_sink.ts`). */
  stats(): Promise<Json>;
}

async function startSink(): Promise<Sink> {
  const sink = spawnDeno("otlp-sink", ["run", "--allow-net", "bench/otlp_sink.ts"], {
    cwd: ROOT,
  });
  const line = await sink.waitForLine((l) => l.includes('"listening"'), 30_000);
  const { url, stats_url } = parseJsonLine<{ url: string; stats_url: string }>(line);
  return {
    sink,
    url,
    stats: async () => await (await fetch(stats_url)).json(),
  };
}

interface DmOptions {
  llmUrl: string;
  sqlitePath: string;
  otlpUrl: string | null;
  telemetry: boolean;
  llmSlots: number;
  /** `DM_DISCONNECT_POLICY`; `cancel` frees a model slot as soon as its client leaves. */
  disconnect?: "continue" | "cancel";
  cpuProfDir?: string;
}

/** Counts of the server's warn/error log lines by message (and error type). */
type LogCounts = Record<string, number>;

function countLogLine(counts: LogCounts, line: string): void {
  if (!line.startsWith("{")) return;
  try {
    const entry = JSON.parse(line) as { level?: string; msg?: string; error_type?: string };
    if (entry.level !== "warn" && entry.level !== "error") return;
    const key = `${entry.level}:${entry.msg}${entry.error_type ? `:${entry.error_type}` : ""}`;
    counts[key] = (counts[key] ?? 0) + 1;
  } catch { /* not a log line */ }
}

async function startDm(o: DmOptions): Promise<{ child: Child; url: string; logs: LogCounts }> {
  const port = freePort();
  const env: Record<string, string> = {
    DM_HOST: "127.0.0.1",
    DM_PORT: String(port),
    DM_LLM: "openai",
    OPENAI_BASE_URL: o.llmUrl,
    OPENAI_API_KEY: "bench",
    DM_LLM_MAX_RETRIES: "0",
    DM_LLM_TIMEOUT_MS: "600000",
    DM_SQLITE_PATH: o.sqlitePath,
    DM_LOG_LEVEL: "warn",
    DM_RNG_SEED: "bench",
    DM_TURN_RATE_PER_SECOND: "1000000",
    DM_TURN_BURST: "1000",
    DM_TURN_RATE_PER_USER_PER_SECOND: "1000000",
    DM_MAX_STREAMS: "1000000",
    DM_MAX_STREAMS_PER_USER: "100000",
    DM_MAX_STREAMS_PER_IP: "1000000",
    DM_MAX_CONCURRENT_LLM: String(o.llmSlots),
    DM_LLM_QUEUE_TIMEOUT_MS: "600000",
    DM_SHUTDOWN_GRACE_MS: "2000",
    DM_DISCONNECT_POLICY: o.disconnect ?? "continue",
    DM_METRICS_ENABLED: "true",
    OTEL_SERVICE_NAME: "dungeon-master",
  };
  if (!o.telemetry) env.OTEL_SDK_DISABLED = "true";
  else if (o.otlpUrl) env.OTEL_EXPORTER_OTLP_ENDPOINT = o.otlpUrl;
  const args = [...DENO_RUN];
  if (o.cpuProfDir) args.push(`--cpu-prof-dir=${o.cpuProfDir}`);
  args.push("src/main.ts");
  const logs: LogCounts = {};
  const child = spawnDeno("dungeon-master", args, {
    env,
    cwd: DM_ROOT,
    onLine: (line) => countLogLine(logs, line),
  });
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/ready`, 60_000, child);
  return { child, url, logs };
}

/** The model request dungeon-master makes, for the relay to send too (set in `main`). */
let relayRequestFile: string | null = null;

async function startRelay(
  llmUrl: string,
  slots: number,
  noModel = false,
): Promise<{ child: Child; url: string; logs: LogCounts }> {
  const child = spawnDeno("baseline-relay", [...DENO_RUN, "bench/baseline_relay.ts"], {
    cwd: ROOT,
    env: {
      OPENAI_BASE_URL: llmUrl,
      OPENAI_API_KEY: "bench",
      RELAY_PORT: "0",
      RELAY_MAX_UPSTREAM: String(slots),
      ...(relayRequestFile ? { RELAY_REQUEST_FILE: relayRequestFile } : {}),
      ...(noModel ? { RELAY_NO_MODEL: "true" } : {}),
    },
  });
  const line = await child.waitForLine((l) => l.includes('"listening"'), 30_000);
  const url = parseJsonLine<{ url: string }>(line).url;
  await waitForHttp(`${url}/health`, 30_000, child);
  return { child, url, logs: {} };
}

/** Create `n` characters straight in the store (setup, not measured). */
async function seedCharacters(path: string, n: number): Promise<string[]> {
  const store = new SqliteStore(path);
  const ids: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const c = await store.createCharacter(LOCAL_USER, {
        name: `Bench ${i}`,
        race: "Elf",
        class_name: "Ranger",
        custom_prompt: null,
      }, {
        narrative: "You wake to the smell of rain at The Sunken Chapel.",
        location: {
          id: "place:the_sunken_chapel",
          display_name: "The Sunken Chapel",
          minor: null,
          poi_id: null,
        },
        origin: {
          name: "The Sunken Chapel",
          description: "A half-flooded chapel whose bells still ring beneath the water.",
          tags: ["origin"],
        },
      });
      ids.push(c.character_id);
    }
  } finally {
    await store.close();
  }
  return ids;
}

function loadConfig(partial: Partial<LoadConfig>): LoadConfig {
  return {
    kind: "turns",
    target: "dm",
    url: "",
    characters: [],
    wsShare: 0.5,
    modelTtftMs: 0,
    modelUrl: null,
    staggerMs: 0,
    cpuPids: {},
    players: 1,
    turns: 1,
    warmupTurns: 0,
    turnTimeoutMs: 60_000,
    deadlineMs: 120_000,
    streams: 0,
    connectConcurrency: 100,
    expectStreaming: 0,
    rampTimeoutMs: 60_000,
    holdTimeoutMs: 120_000,
    ...partial,
  };
}

function spawnLoad(cfg: LoadConfig): Child {
  // Thousands of character ids do not fit in an argument list: pass a file.
  const file = Deno.makeTempFileSync({ prefix: "dm-bench-load-", suffix: ".json" });
  Deno.writeTextFileSync(file, JSON.stringify(cfg));
  const child = spawnDeno(
    `load-${cfg.target}`,
    ["run", "--allow-all", "bench/load.ts", `@${file}`],
    { cwd: ROOT, stdin: cfg.kind === "hold" },
  );
  child.process.status.finally(() => Deno.remove(file).catch(() => {}));
  return child;
}

// deno-lint-ignore no-explicit-any -- load results are JSON read back from the child; fields are read by name.
type Json = any;

async function runLoad(cfg: LoadConfig, timeoutMs: number): Promise<Json> {
  const load = spawnLoad(cfg);
  try {
    const line = await load.waitForLine((l) => l.includes('"kind":"result"'), timeoutMs);
    return JSON.parse(line);
  } finally {
    await load.stop(5000);
  }
}

function tempDb(label: string): string {
  const dir = Deno.makeTempDirSync({ prefix: `dm-bench-${label}-` });
  return `${dir}/dm.sqlite`;
}

function removeDb(path: string): void {
  try {
    Deno.removeSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  } catch { /* already gone */ }
}

const mib = (kib: number | undefined) => (kib === undefined ? NaN : round(kib / 1024, 1));

/** Apply one `--set=phase.key=number` override, e.g. `--set=latency.players=50`. */
function setParam(params: BenchParams, assignment: string): void {
  const [path, raw] = assignment.split("=");
  const [phase, key] = path.split(".") as [keyof BenchParams, string];
  const group = params[phase] as Record<string, number> | undefined;
  const value = Number(raw);
  if (!group || !(key in group) || !Number.isFinite(value)) {
    throw new Error(
      `--set=${assignment}: expected <phase>.<key>=<number> of an existing parameter`,
    );
  }
  group[key] = value;
}

// ------------------------------------------------------------------ phases

type LatencyRun = "dm" | "dm_telemetry_off" | "baseline" | "dm_profile";

async function latencyPhase(p: BenchParams, sink: Sink, profileDir?: string) {
  const l = p.latency;
  const fleet = await startFakeLlm(l.modelTtftMs, l.deltaMs, l.deltas);
  const out: Record<LatencyRun, Json> = {
    dm: null,
    dm_telemetry_off: null,
    baseline: null,
    dm_profile: null,
  };
  const runs: LatencyRun[] = ["dm", "baseline", "dm_telemetry_off"];
  if (profileDir) runs.push("dm_profile");
  const slots = Math.max(64, l.players * 2);
  try {
    for (const run of runs) {
      const target: Target = run === "baseline" ? "baseline" : "dm";
      const telemetry = run === "dm" || run === "dm_profile";
      log(`latency: ${run}, ${l.players} players × ${l.turns} turns`);
      const db = tempDb("latency");
      const characters = target === "dm" ? await seedCharacters(db, l.players) : [];
      const server = target === "dm"
        ? await startDm({
          llmUrl: fleet.llmUrl,
          sqlitePath: db,
          otlpUrl: sink.url,
          telemetry,
          llmSlots: slots,
          cpuProfDir: run === "dm_profile" ? profileDir : undefined,
        })
        : await startRelay(fleet.llmUrl, slots);
      try {
        if (run === "dm") await sink.stats(); // start afresh
        const load0 = loadAvg();
        const result = await runLoad(
          loadConfig({
            kind: "turns",
            target,
            url: server.url,
            characters,
            wsShare: l.wsShare,
            modelTtftMs: l.modelTtftMs,
            modelUrl: fleet.llmUrl,
            // One turn's length: starts spread evenly, as independent players' would be.
            staggerMs: l.modelTtftMs + outcomeText(l.deltas).totalDeltas * l.deltaMs,
            cpuPids: {
              server: server.child.pid,
              fake_llm: fleet.llm.pid,
              otlp_sink: sink.sink.pid,
            },
            players: l.players,
            turns: l.turns,
            warmupTurns: l.warmupTurns,
          }),
          300_000,
        );
        const mem = memoryKiB(server.child.pid);
        out[run] = {
          ...result,
          server_log: server.logs,
          peak_rss_mib: mib(mem?.hwm),
          loadavg_before: load0,
          loadavg_after: loadAvg(),
        };
      } finally {
        await server.child.stop();
        removeDb(db);
      }
      if (run === "dm") {
        // Stopping the service flushed its last spans; let the sink take them in.
        await new Promise((r) => setTimeout(r, 800));
        out.dm.span_timings_ms = await sink.stats();
      }
    }
  } finally {
    await fleet.llm.stop();
  }
  return out;
}

interface ThroughputRun {
  target: Target;
  telemetry: boolean;
  profileDir?: string;
}

async function throughputPhase(p: BenchParams, sink: Sink, runs: ThroughputRun[]) {
  const otlpUrl = sink.url;
  const t = p.throughput;
  const fleet = await startFakeLlm(0, 0, t.deltas);
  const out: Json[] = [];
  const slots = Math.max(64, t.players * 2);
  try {
    for (const run of runs) {
      const label = `${run.target}${
        run.target === "dm" && !run.telemetry ? " (telemetry off)" : ""
      }${run.profileDir ? " (cpu profile)" : ""}`;
      log(`throughput: ${label}, ${t.players} players × ${t.turns} turns, zero-delay model`);
      const db = tempDb("throughput");
      const characters = run.target === "dm" ? await seedCharacters(db, t.players) : [];
      const server = run.target === "dm"
        ? await startDm({
          llmUrl: fleet.llmUrl,
          sqlitePath: db,
          otlpUrl,
          telemetry: run.telemetry,
          llmSlots: slots,
          cpuProfDir: run.profileDir,
        })
        : await startRelay(fleet.llmUrl, slots);
      try {
        const load0 = loadAvg();
        const result = await runLoad(
          loadConfig({
            kind: "turns",
            target: run.target,
            url: server.url,
            characters,
            wsShare: t.wsShare,
            modelTtftMs: 0,
            cpuPids: {
              server: server.child.pid,
              fake_llm: fleet.llm.pid,
              otlp_sink: sink.sink.pid,
            },
            players: t.players,
            turns: t.turns,
            warmupTurns: t.warmupTurns,
          }),
          300_000,
        );
        const mem = memoryKiB(server.child.pid);
        out.push({
          ...run,
          label,
          ...result,
          server_log: server.logs,
          peak_rss_mib: mib(mem?.hwm),
          loadavg_before: load0,
          loadavg_after: loadAvg(),
        });
      } finally {
        await server.child.stop(20_000);
        removeDb(db);
      }
    }
  } finally {
    await fleet.llm.stop();
  }
  return out;
}

type StreamsRun = "dm" | "baseline" | "deno_floor";

async function streamsPhase(p: BenchParams, otlpUrl: string) {
  const s = p.streams;
  const fleet = await startFakeLlm(s.modelTtftMs, s.deltaMs, 4);
  const out: Record<StreamsRun, Json> = { dm: null, baseline: null, deno_floor: null };
  // Each stream with a model call holds two sockets in the server (client and
  // model); the hard limit on open files caps how many can call the model at once.
  const limit = fileLimit().hard;
  const slots = Math.max(1, Math.min(s.count, limit - s.count - FD_HEADROOM));
  try {
    for (const run of ["dm", "baseline", "deno_floor"] as const) {
      // The floor is the relay calling no model: what an open stream costs Deno itself.
      const target: Target = run === "dm" ? "dm" : "baseline";
      const runSlots = run === "deno_floor" ? s.count : slots;
      log(`streams: ${run}, ${s.count} streams (${runSlots} with a model call)`);
      const db = tempDb("streams");
      const warmChars = 20;
      const characters = target === "dm" ? await seedCharacters(db, s.count + warmChars) : [];
      const server = target === "dm"
        ? await startDm({
          llmUrl: fleet.llmUrl,
          sqlitePath: db,
          otlpUrl,
          telemetry: true,
          llmSlots: slots,
          // Like the relay, stop the model call when the client leaves, so
          // the warm-up streams give their model slots back.
          disconnect: "cancel",
        })
        : await startRelay(fleet.llmUrl, slots, run === "deno_floor");
      const pid = server.child.pid;
      try {
        // Warm up with a few streams so code is compiled and pools exist,
        // then measure the resting RSS.
        const warm = spawnLoad(loadConfig({
          kind: "hold",
          target,
          url: server.url,
          characters: characters.slice(s.count),
          wsShare: s.wsShare,
          streams: warmChars,
          connectConcurrency: warmChars,
          expectStreaming: warmChars,
          rampTimeoutMs: 30_000,
          holdTimeoutMs: 30_000,
        }));
        await warm.waitForLine((l) => l.includes('"kind":"holding"'), 40_000);
        await warm.write("release\n");
        await warm.waitForLine((l) => l.includes('"kind":"result"'), 10_000);
        await warm.stop(5000);
        await new Promise((r) => setTimeout(r, 1000));
        const before = memoryKiB(pid);
        const load0 = loadAvg();

        const hold = spawnLoad(loadConfig({
          kind: "hold",
          target,
          url: server.url,
          characters: characters.slice(0, s.count),
          wsShare: s.wsShare,
          streams: s.count,
          connectConcurrency: s.connectConcurrency,
          expectStreaming: runSlots,
          rampTimeoutMs: s.rampTimeoutMs,
          holdTimeoutMs: s.rampTimeoutMs + 60_000,
        }));
        let holding: Json;
        let during: ReturnType<typeof memoryKiB> = null;
        let result: Json;
        try {
          holding = JSON.parse(
            await hold.waitForLine(
              (l) => l.includes('"kind":"holding"'),
              s.rampTimeoutMs + 30_000,
            ),
          );
          await new Promise((r) => setTimeout(r, s.settleMs));
          during = memoryKiB(pid);
          await hold.write("release\n");
          result = JSON.parse(
            await hold.waitForLine((l) => l.includes('"kind":"result"'), 30_000),
          );
        } finally {
          await hold.stop(10_000);
        }
        const open = result.still_open_at_release as number;
        const perStreamKiB = before && during && open > 0 ? (during.rss - before.rss) / open : NaN;
        out[run] = {
          ...result,
          server_log: server.logs,
          model_slots: run === "deno_floor" ? 0 : slots,
          streaming_at_hold: holding.streaming,
          rss_before_mib: mib(before?.rss),
          rss_during_mib: mib(during?.rss),
          peak_rss_mib: mib(during?.hwm),
          kib_per_stream: round(perStreamKiB, 1),
          loadavg_before: load0,
          loadavg_after: loadAvg(),
        };
      } finally {
        await server.child.stop(30_000);
        removeDb(db);
      }
    }
  } finally {
    await fleet.llm.stop();
  }
  return out;
}

/** Summarise the CPU profile written to `dir`, keep a copy in bench/results, remove `dir`. */
function collectProfile(dir: string, phase: string): Json {
  const files = [...Deno.readDirSync(dir)].filter((f) => f.name.endsWith(".cpuprofile"));
  let summary: Json = null;
  if (files.length > 0) {
    const path = `${dir}/${files[0].name}`;
    summary = { phase, ...summarizeProfile(JSON.parse(Deno.readTextFileSync(path)), 25) };
    summary.file = `bench/results/dm-${phase}.cpuprofile`;
    Deno.copyFileSync(path, `${ROOT}${summary.file}`);
  }
  Deno.removeSync(dir, { recursive: true });
  return summary;
}

// ---------------------------------------------------------------- reporting

/**
 * The run with the median turns/s, with every run's turns/s and CPU per turn
 * beside it so the spread is visible.
 */
function medianRun(runs: Json[]): Json | undefined {
  if (runs.length === 0) return undefined;
  const sorted = [...runs].sort((a, b) => a.turns_per_s - b.turns_per_s);
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  return {
    ...median,
    runs: runs.map((r) => ({
      turns_per_s: r.turns_per_s,
      cpu_ms_per_turn: r.cpu_ms_per_turn?.server,
      other_load_cores: r.other_load_cores,
    })),
  };
}

interface TargetRow {
  name: string;
  goal: string;
  value: number;
  unit: string;
  met: boolean;
  /** False when this run's load is below the load the goal is stated for (quick mode). */
  at_goal_load: boolean;
}

const fmt = (v: unknown, digits = 1): string =>
  typeof v === "number" && Number.isFinite(v)
    ? v.toLocaleString("en-US", { maximumFractionDigits: digits })
    : "–";

function ratio(a: number, b: number): number {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? round(a / b, 3) : NaN;
}

async function main(): Promise<number> {
  const args = Deno.args;
  const quick = args.includes("--quick");
  // `--profile` profiles a throughput run; `--profile=latency` a latency run.
  const profileArg = args.find((a) => a === "--profile" || a.startsWith("--profile="));
  const profilePhase = profileArg === undefined
    ? null
    : profileArg.includes("=")
    ? profileArg.slice(10)
    : "throughput";
  const only = args.find((a) => a.startsWith("--only="))?.slice(7).split(",") ??
    ["latency", "throughput", "streams"];
  const outPath = args.find((a) => a.startsWith("--out="))?.slice(6) ??
    `${ROOT}bench/results/${quick ? "quick" : "latest"}.json`;
  const params: BenchParams = structuredClone(quick ? QUICK : FULL);
  const dmRoot = args.find((a) => a.startsWith("--dm-root="))?.slice(10);
  if (dmRoot) DM_ROOT = dmRoot.endsWith("/") ? dmRoot : `${dmRoot}/`;
  for (const a of args.filter((a) => a.startsWith("--set="))) setParam(params, a.slice(6));
  const started = performance.now();
  const machine = machineInfo();
  log(
    `mode ${quick ? "quick" : "full"}; ${machine.nproc} cores, ${machine.cpu_model}, ` +
      `load ${machine.loadavg_start.join(" ")}`,
  );
  const modelRequest = await captureDmRequest();
  relayRequestFile = Deno.makeTempFileSync({ prefix: "dm-bench-request-", suffix: ".json" });
  Deno.writeTextFileSync(relayRequestFile, JSON.stringify(modelRequest));
  const sinkHandle = await startSink();
  const { sink, url: otlpUrl } = sinkHandle;

  let latency: Record<LatencyRun, Json> | null = null;
  let throughput: Json[] = [];
  let streams: Record<StreamsRun, Json> | null = null;
  let profileTop: Json = null;
  try {
    if (only.includes("latency")) {
      const profileDir = profilePhase === "latency"
        ? Deno.makeTempDirSync({ prefix: "dm-bench-prof-" })
        : undefined;
      latency = await latencyPhase(params, sinkHandle, profileDir);
      if (profileDir) profileTop = collectProfile(profileDir, "latency");
    }
    if (only.includes("throughput")) {
      const runs: ThroughputRun[] = [];
      for (let i = 0; i < params.throughput.repeats; i++) {
        runs.push(
          { target: "baseline", telemetry: false },
          { target: "dm", telemetry: true },
          { target: "dm", telemetry: false },
        );
      }
      let profileDir: string | undefined;
      if (profilePhase === "throughput") {
        profileDir = Deno.makeTempDirSync({ prefix: "dm-bench-prof-" });
        runs.push({ target: "dm", telemetry: true, profileDir });
      }
      throughput = await throughputPhase(params, sinkHandle, runs);
      if (profileDir) profileTop = collectProfile(profileDir, "throughput");
    }
    if (only.includes("streams")) streams = await streamsPhase(params, otlpUrl);
  } finally {
    await sink.stop(5000);
    Deno.removeSync(relayRequestFile);
  }
  const sinkLine = sink.stdout.find((l) => l.includes('"stopped"'));
  const spansExported = sinkLine ? JSON.parse(sinkLine).spans as number : null;

  const tpOf = (target: Target, telemetry: boolean) =>
    medianRun(
      throughput.filter((r) => r.target === target && r.telemetry === telemetry && !r.profileDir),
    );
  const tpDm = tpOf("dm", true);
  const tpDmOff = tpOf("dm", false);
  const tpBase = tpOf("baseline", false);

  const server = (target: Target) => ({
    latency: latency?.[target] ?? null,
    throughput: target === "dm" ? tpDm ?? null : tpBase ?? null,
    ...(target === "dm"
      ? {
        latency_telemetry_off: latency?.dm_telemetry_off ?? null,
        throughput_telemetry_off: tpDmOff ?? null,
      }
      : {}),
    streams: streams?.[target] ?? null,
  });
  const servers = {
    dm: server("dm"),
    baseline: server("baseline"),
    deno_floor: { streams: streams?.deno_floor ?? null },
  };

  const telemetryCostPct = tpDm && tpDmOff
    ? round((1 - tpDm.turns_per_s / tpDmOff.turns_per_s) * 100, 1)
    : NaN;
  const ratios = {
    throughput_turns_per_s: ratio(tpDm?.turns_per_s, tpBase?.turns_per_s),
    throughput_cpu_ms_per_turn: ratio(
      tpDm?.cpu_ms_per_turn?.server,
      tpBase?.cpu_ms_per_turn?.server,
    ),
    throughput_peak_rss: ratio(tpDm?.peak_rss_mib, tpBase?.peak_rss_mib),
    latency_added_ttft_p50: ratio(
      latency?.dm?.added_ttft_ms?.p50,
      latency?.baseline?.added_ttft_ms?.p50,
    ),
    latency_added_ttft_p95: ratio(
      latency?.dm?.added_ttft_ms?.p95,
      latency?.baseline?.added_ttft_ms?.p95,
    ),
    latency_added_ttft_p99: ratio(
      latency?.dm?.added_ttft_ms?.p99,
      latency?.baseline?.added_ttft_ms?.p99,
    ),
    latency_cpu_ms_per_turn: ratio(
      latency?.dm?.cpu_ms_per_turn?.server,
      latency?.baseline?.cpu_ms_per_turn?.server,
    ),
    streams_kib_per_stream: ratio(
      streams?.dm?.kib_per_stream,
      streams?.baseline?.kib_per_stream,
    ),
    telemetry_on_vs_off_turns_per_s: ratio(tpDm?.turns_per_s, tpDmOff?.turns_per_s),
  };

  const latencyAtGoal = params.latency.players >= 100;
  const streamsAtGoal = params.streams.count >= 10_000;
  const targets: TargetRow[] = [
    {
      name: `added TTFT p50, ${params.latency.players} concurrent streaming turns`,
      goal: "≤ 2 ms",
      value: latency?.dm?.added_ttft_ms?.p50 ?? NaN,
      unit: "ms",
      met: (latency?.dm?.added_ttft_ms?.p50 ?? Infinity) <= 2,
      at_goal_load: latencyAtGoal,
    },
    {
      name: `added TTFT p99, ${params.latency.players} concurrent streaming turns`,
      goal: "≤ 10 ms",
      value: latency?.dm?.added_ttft_ms?.p99 ?? NaN,
      unit: "ms",
      met: (latency?.dm?.added_ttft_ms?.p99 ?? Infinity) <= 10,
      at_goal_load: latencyAtGoal,
    },
    {
      name: "throughput with a zero-delay model vs the bare relay",
      goal: "≥ 50 %",
      value: round(ratios.throughput_turns_per_s * 100, 1),
      unit: "%",
      met: ratios.throughput_turns_per_s >= 0.5,
      at_goal_load: true,
    },
    {
      name: "concurrent open streams in one process",
      goal: "≥ 10,000",
      value: streams?.dm?.still_open_at_release ?? NaN,
      unit: "streams",
      met: (streams?.dm?.still_open_at_release ?? 0) >= 10_000,
      at_goal_load: streamsAtGoal,
    },
    {
      name: "RSS per open stream",
      goal: "≤ 64 KiB",
      value: streams?.dm?.kib_per_stream ?? NaN,
      unit: "KiB",
      met: (streams?.dm?.kib_per_stream ?? Infinity) <= 64,
      at_goal_load: streamsAtGoal,
    },
    {
      name: "telemetry cost of throughput (on vs OTEL_SDK_DISABLED)",
      goal: "≤ 10 %",
      value: telemetryCostPct,
      unit: "%",
      met: telemetryCostPct <= 10,
      at_goal_load: true,
    },
  ];

  const results = {
    mode: quick ? "quick" : "full",
    date: new Date().toISOString(),
    duration_s: round((performance.now() - started) / 1000, 1),
    machine: { ...machine, loadavg_end: loadAvg() },
    params,
    notes: {
      delta: "one model delta = 16 characters (~4 tokens); TTFT = request sent → first token event",
      model_ttft:
        "the fake model's first-delta delay, counted from its opening events; subtracted to give the added TTFT",
      cpu:
        "utime+stime of the server PID from /proc/<pid>/stat over the measured part (10 ms ticks)",
      baseline:
        "bench/baseline_relay.ts: openai SDK → SSE/WebSocket relay, no store/pipeline/telemetry; " +
        "it sends the model the same instructions, prompt and JSON schema dungeon-master sends",
      model_request_bytes: JSON.stringify(modelRequest).length,
      spans_exported: spansExported,
    },
    servers,
    ratios,
    targets,
    profile: profileTop,
  };
  await Deno.mkdir(outPath.slice(0, outPath.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(outPath, JSON.stringify(results, null, 2) + "\n");
  console.log(markdown(results, params));
  log(`wrote ${outPath} in ${results.duration_s} s`);
  return 0;
}

// deno-lint-ignore no-explicit-any -- the results object is plain JSON built above.
function markdown(r: any, p: BenchParams): string {
  const dm = r.servers.dm;
  const base = r.servers.baseline;
  const t = (name: string) => r.targets.find((x: TargetRow) => x.name.startsWith(name));
  const mark = (row: TargetRow | undefined) =>
    row
      ? `${row.goal} ${row.met ? "✅" : "❌"}${row.at_goal_load ? "" : " (below goal load)"}`
      : "";
  const rows: string[][] = [];
  const add = (
    figure: string,
    a: unknown,
    b: unknown,
    ratioValue: unknown,
    target = "",
    digits = 1,
  ) => rows.push([figure, fmt(a, digits), fmt(b, digits), fmt(ratioValue, 2), target]);
  const L = p.latency;
  const T = p.throughput;
  const S = p.streams;
  add(
    `turns/s, zero-delay model, ${T.players} players (${T.deltas} prose deltas/turn), ` +
      `median of ${T.repeats}`,
    dm.throughput?.turns_per_s,
    base.throughput?.turns_per_s,
    r.ratios.throughput_turns_per_s,
    mark(t("throughput")),
  );
  // The spread of the repeated runs, so noise is visible next to the medians.
  const spread = (x: Json) => {
    const v = (x?.runs ?? []).map((run: Json) => run.turns_per_s as number);
    return v.length > 1 ? `${fmt(Math.min(...v))}–${fmt(Math.max(...v))}` : "–";
  };
  rows.push([
    "turns/s range over the repeated runs",
    spread(dm.throughput),
    spread(base.throughput),
    "",
    "",
  ]);
  add(
    "server CPU ms/turn (zero-delay model)",
    dm.throughput?.cpu_ms_per_turn?.server,
    base.throughput?.cpu_ms_per_turn?.server,
    r.ratios.throughput_cpu_ms_per_turn,
    "",
    2,
  );
  add(
    "peak RSS MiB (zero-delay model)",
    dm.throughput?.peak_rss_mib,
    base.throughput?.peak_rss_mib,
    r.ratios.throughput_peak_rss,
  );
  add(
    "turns/s with telemetry off (OTEL_SDK_DISABLED); ratio on/off",
    dm.throughput_telemetry_off?.turns_per_s,
    undefined,
    r.ratios.telemetry_on_vs_off_turns_per_s,
    mark(t("telemetry")),
  );
  rows[rows.length - 1][1] += ` (${spread(dm.throughput_telemetry_off)})`;
  add(
    "server CPU ms/turn with telemetry off; ratio on/off",
    dm.throughput_telemetry_off?.cpu_ms_per_turn?.server,
    undefined,
    ratio(
      dm.throughput?.cpu_ms_per_turn?.server,
      dm.throughput_telemetry_off?.cpu_ms_per_turn?.server,
    ),
    "",
    2,
  );
  for (const q of ["p50", "p95", "p99"] as const) {
    add(
      `added TTFT ${q} ms, ${L.players} concurrent turns (model TTFT ${L.modelTtftMs} ms)`,
      dm.latency?.added_ttft_ms?.[q],
      base.latency?.added_ttft_ms?.[q],
      r.ratios[`latency_added_ttft_${q}`],
      q === "p50" ? mark(t("added TTFT p50")) : q === "p99" ? mark(t("added TTFT p99")) : "",
      2,
    );
  }
  const off = dm.latency_telemetry_off?.added_ttft_ms;
  rows.push([
    "added TTFT p50 / p99 ms with telemetry off (OTEL_SDK_DISABLED)",
    off ? `${fmt(off.p50, 2)} / ${fmt(off.p99, 2)}` : "–",
    "",
    "",
    "",
  ]);
  add(
    `turns/s, ${L.players} players, model ${L.modelTtftMs} ms + ${L.deltas}×${L.deltaMs} ms`,
    dm.latency?.turns_per_s,
    base.latency?.turns_per_s,
    ratio(dm.latency?.turns_per_s, base.latency?.turns_per_s),
  );
  add(
    "server CPU ms/turn (streaming model)",
    dm.latency?.cpu_ms_per_turn?.server,
    base.latency?.cpu_ms_per_turn?.server,
    r.ratios.latency_cpu_ms_per_turn,
    "",
    2,
  );
  add(
    `open streams held (of ${S.count} requested)`,
    dm.streams?.still_open_at_release,
    base.streams?.still_open_at_release,
    ratio(dm.streams?.still_open_at_release, base.streams?.still_open_at_release),
    mark(t("concurrent open streams")),
    0,
  );
  add(
    "RSS per open stream KiB",
    dm.streams?.kib_per_stream,
    base.streams?.kib_per_stream,
    r.ratios.streams_kib_per_stream,
    mark(t("RSS per open stream")),
  );
  rows.push([
    "RSS per open stream KiB, Deno alone (relay calling no model)",
    fmt(r.servers.deno_floor?.streams?.kib_per_stream),
    "",
    "",
    "",
  ]);
  add(
    "RSS MiB before → while streams open",
    dm.streams?.rss_before_mib,
    base.streams?.rss_before_mib,
    undefined,
  );
  rows[rows.length - 1][1] = `${fmt(dm.streams?.rss_before_mib)} → ${
    fmt(dm.streams?.rss_during_mib)
  }`;
  rows[rows.length - 1][2] = `${fmt(base.streams?.rss_before_mib)} → ${
    fmt(base.streams?.rss_during_mib)
  }`;
  const head = ["figure", "dungeon-master", "baseline relay", "ratio", "target"];
  const lines = [
    `## dungeon-master benchmark (${r.mode} mode, ${r.date})`,
    "",
    `Machine: ${r.machine.nproc} × ${r.machine.cpu_model}, ${r.machine.mem_total_mib} MiB, ` +
    `Deno ${r.machine.deno}; load average ${r.machine.loadavg_start.join(" ")} at start, ` +
    `${r.machine.loadavg_end.join(" ")} at end.`,
    "",
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ];
  const errors = [
    ["dm latency", dm.latency?.errors],
    ["baseline latency", base.latency?.errors],
    ["dm throughput", dm.throughput?.errors],
    ["dm throughput (telemetry off)", dm.throughput_telemetry_off?.errors],
    ["baseline throughput", base.throughput?.errors],
    ["dm streams", dm.streams?.errors],
    ["baseline streams", base.streams?.errors],
  ].filter(([, e]) => e && Object.keys(e).length > 0);
  if (errors.length > 0) {
    lines.push("", "Errors: " + errors.map(([n, e]) => `${n} ${JSON.stringify(e)}`).join("; "));
  }
  const spans = dm.latency?.span_timings_ms;
  if (spans) {
    const q = (x: Json) => `p50 ${fmt(x.p50, 2)}, p99 ${fmt(x.p99, 2)}`;
    lines.push(
      "",
      `Where dungeon-master's TTFT goes (its own spans, ${L.players} concurrent turns): ` +
        `turn start → model call ${q(spans.pre_model_ms)} ms; model call → first delta ` +
        `${q(spans.model_first_token_ms)} ms (model TTFT ${L.modelTtftMs} ms); first delta → ` +
        `first token event ${q(spans.emit_ms)} ms. Span clocks are anchored to Date.now, so ` +
        "cross-span differences carry up to 1 ms of error.",
    );
  }
  const noise = [dm.latency, base.latency, dm.throughput, base.throughput]
    .map((x) => x?.other_load_cores)
    .filter((x) => typeof x === "number");
  if (noise.length > 0) {
    lines.push(
      "",
      `Other work on the machine during the measured parts: up to ${
        fmt(Math.max(...noise), 2)
      } cores (from /proc/stat minus the benchmark's own processes).`,
    );
  }
  if (r.profile) {
    lines.push("", `CPU profile (dungeon-master, ${r.profile.phase} run) — top self time:`, "");
    lines.push("| self % | self ms | function | location |", "| --- | --- | --- | --- |");
    for (const e of r.profile.top.slice(0, 15)) {
      lines.push(`| ${fmt(e.self_pct)} | ${fmt(e.self_ms, 0)} | ${e.function} | ${e.location} |`);
    }
  }
  return lines.join("\n");
}

if (import.meta.main) {
  Deno.exit(await main());
}
