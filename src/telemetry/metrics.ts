/**
 * The service's metric instruments, made through `@opentelemetry/api` so
 * they are no-ops until the SDK registers a MeterProvider. Ids never become
 * label values: labels are small closed sets.
 *
 * @module
 */
import { metrics } from "@opentelemetry/api";

/** Histogram boundaries in seconds, spanning 5 ms to 60 s for LLM latencies. */
export const LATENCY_BUCKETS_S = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  20,
  30,
  60,
];

type Meter = ReturnType<typeof metrics.getMeter>;

/**
 * Memoise an instrument per registered MeterProvider. The metrics API has no
 * proxy provider: an instrument made before the SDK registers stays a no-op
 * forever, and one made before a restart of the SDK (tests start and stop it
 * in one process) records into a provider that was shut down.
 */
function perProvider<T>(make: (meter: Meter) => T): () => T {
  let provider: unknown = null;
  let instrument: T | null = null;
  return () => {
    const current = metrics.getMeterProvider();
    if (instrument === null || current !== provider) {
      provider = current;
      instrument = make(current.getMeter("dungeon-master"));
    }
    return instrument;
  };
}

// The Prometheus exporter (0.301) appends `_total` to monotonic counters but
// never a unit suffix, so histogram names carry `_seconds` themselves while
// counter names stay without `_total`. If a later exporter starts adding unit
// suffixes, tests/metrics_promtool_test.ts catches the doubled `_seconds`.
function histogram(name: string, description: string) {
  const get = perProvider((m) =>
    m.createHistogram(name, {
      description,
      unit: "s",
      advice: { explicitBucketBoundaries: LATENCY_BUCKETS_S },
    })
  );
  return (value: number, attrs?: Record<string, string>) => get().record(value, attrs);
}

function counter(name: string, description: string) {
  const get = perProvider((m) => m.createCounter(name, { description }));
  return (attrs?: Record<string, string>, value = 1) => get().add(value, attrs);
}

function upDown(name: string, description: string) {
  const get = perProvider((m) => m.createUpDownCounter(name, { description }));
  return (delta: number, attrs?: Record<string, string>) => get().add(delta, attrs);
}

// Instruments are created on first use (see perProvider) so that a
// MeterProvider registered after import (the SDK starts in main) receives them.
const turns = counter("dm_turns", "Turns finished, by outcome and transport.");
const turnDuration = histogram(
  "dm_turn_duration_seconds",
  "Turn duration from accept to last event.",
);
const ttft = histogram(
  "dm_time_to_first_token_seconds",
  "Time from accept to the first prose token.",
);
const stageDuration = histogram("dm_stage_duration_seconds", "Duration of one pipeline stage.");
const tokens = counter("dm_llm_tokens", "LLM tokens, by direction (input|output).");
const streams = upDown("dm_active_streams", "Open streaming connections, by transport.");
const disconnects = counter("dm_client_disconnects", "Client disconnects during a turn.");
const parseFailures = counter("dm_outcome_parse_failures", "Model outputs that failed validation.");
const writes = counter("dm_subsystem_writes", "Subsystem writes, by subsystem and result.");
const rolls = counter("dm_policy_rolls", "Policy rolls, by policy and result.");
const httpRequests = counter("dm_http_requests", "HTTP requests, by route pattern and status.");

/** Typed recorders for every service metric. */
export const dmMetrics = {
  turnFinished(outcome: string, transport: string, durationS: number): void {
    turns({ outcome, transport });
    turnDuration(durationS, { transport });
  },
  timeToFirstToken(seconds: number): void {
    ttft(seconds);
  },
  stage(stage: string, seconds: number): void {
    stageDuration(seconds, { stage });
  },
  llmTokens(direction: "input" | "output", count: number): void {
    if (count > 0) tokens({ direction }, count);
  },
  streamOpened(transport: string): void {
    streams(1, { transport });
  },
  streamClosed(transport: string): void {
    streams(-1, { transport });
  },
  clientDisconnect(transport: string): void {
    disconnects({ transport });
  },
  parseFailure(): void {
    parseFailures();
  },
  subsystemWrite(subsystem: string, result: string): void {
    writes({ subsystem, result });
  },
  policyRoll(policy: string, result: "passed" | "failed" | "ineligible"): void {
    rolls({ policy, result });
  },
  httpRequest(route: string, status: number): void {
    httpRequests({ route, status: String(status) });
  },
};
