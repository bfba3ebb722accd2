/**
 * The `/metrics` exposition as Prometheus will see it: every service metric
 * under its Prometheus name with its label set, no id-like label values, and
 * accepted by `promtool check metrics` (the linter Prometheus ships).
 *
 * promtool is required, not optional: CI installs it
 * (`apt-get install -y prometheus`), and a missing binary fails the test
 * rather than skipping it, so the check can never silently stop running.
 */
import assert from "node:assert/strict";
import { runFixture } from "./fixtures/telemetry_run.ts";
import { looksLikeId, parseExposition, promtoolCheck } from "./helpers/prometheus.ts";

/** Prometheus name → [TYPE, label names (sorted, without `le`)]. */
const EXPECTED: Record<string, ["counter" | "gauge" | "histogram", string[]]> = {
  dm_turns_total: ["counter", ["outcome", "transport"]],
  dm_turn_duration_seconds: ["histogram", ["transport"]],
  dm_time_to_first_token_seconds: ["histogram", []],
  dm_stage_duration_seconds: ["histogram", ["stage"]],
  dm_llm_tokens_total: ["counter", ["direction"]],
  dm_active_streams: ["gauge", ["transport"]],
  dm_client_disconnects_total: ["counter", ["transport"]],
  dm_outcome_parse_failures_total: ["counter", []],
  dm_subsystem_writes_total: ["counter", ["result", "subsystem"]],
  dm_policy_rolls_total: ["counter", ["policy", "result"]],
  dm_http_requests_total: ["counter", ["route", "status"]],
};

Deno.test("the id detector flags ids and passes label words", () => {
  for (
    const id of [
      "0b9f6a6e-4e2f-4f57-9d4b-2b1d6f1d2c3a",
      "4bf92f3577b34da6",
      "1732400000",
      "/v1/characters/42/turns",
      "chr_01h9x2k",
      "turn-8f2c",
    ]
  ) {
    assert.ok(looksLikeId(id), id);
  }
  for (
    const word of [
      "quest_poi_reference",
      "memory_spark",
      "/v1/characters/:id/turns",
      "200",
      "llm_unavailable",
      "websocket",
    ]
  ) {
    assert.ok(!looksLikeId(word), word);
  }
});

async function exposition(env: Record<string, string> = {}) {
  const r = await runFixture("telemetry_metrics.ts", env);
  assert.equal(r.code, 0, `fixture failed:\n${r.stdout}\n${r.stderr}`);
  const nl = r.stdout.indexOf("\n");
  const [status, ...contentType] = r.stdout.slice(0, nl).split(" ");
  return {
    status: Number(status),
    contentType: contentType.join(" "),
    body: r.stdout.slice(nl + 1),
  };
}

Deno.test("every service metric is exposed under its Prometheus name and labels", async () => {
  const { status, contentType, body } = await exposition();
  assert.equal(status, 200);
  assert.equal(contentType, "text/plain; version=0.0.4; charset=utf-8");
  const { types, samples } = parseExposition(body);

  for (const [name, [type, labelNames]] of Object.entries(EXPECTED)) {
    assert.equal(types.get(name), type, `# TYPE of ${name}`);
    const own = type === "histogram"
      ? samples.filter((s) => [`${name}_bucket`, `${name}_sum`, `${name}_count`].includes(s.name))
      : samples.filter((s) => s.name === name);
    assert.ok(own.length > 0, `no samples for ${name}`);
    for (const s of own) {
      const keys = Object.keys(s.labels).filter((k) => !(s.name.endsWith("_bucket") && k === "le"))
        .sort();
      assert.deepEqual(keys, labelNames, `labels of ${s.name}${JSON.stringify(s.labels)}`);
    }
  }

  // Unit suffixes appear exactly once, counters end in _total exactly once.
  for (const name of types.keys()) {
    assert.doesNotMatch(name, /_seconds_seconds|_total_total/, name);
  }
  // Only our metrics and the exporter's target_info: no scope labels, no strays.
  const families = new Set(types.keys());
  families.delete("target_info");
  assert.deepEqual([...families].sort(), Object.keys(EXPECTED).sort());

  for (const s of samples) {
    if (s.name === "target_info") continue;
    for (const [k, v] of Object.entries(s.labels)) {
      assert.ok(!looksLikeId(v), `id-like label value ${k}="${v}" on ${s.name}`);
    }
  }

  const value = (name: string, labels: Record<string, string> = {}) =>
    samples.find((s) =>
      s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) &&
      Object.keys(s.labels).length === Object.keys(labels).length
    )?.value;
  assert.equal(value("dm_turns_total", { outcome: "completed", transport: "sse" }), 1);
  assert.equal(value("dm_policy_rolls_total", { policy: "quest", result: "passed" }), 1);
  assert.equal(value("dm_llm_tokens_total", { direction: "output" }), 120);
  assert.equal(value("dm_active_streams", { transport: "sse" }), 1);
  // Recorded once before the SDK started (lost) and once after.
  assert.equal(value("dm_outcome_parse_failures_total"), 1);
  assert.equal(value("dm_time_to_first_token_seconds_count"), 1);
  // Buckets come from the advice in metrics.ts (5 ms … 60 s), not SDK defaults.
  const les = samples.filter((s) => s.name === "dm_time_to_first_token_seconds_bucket")
    .map((s) => s.labels.le);
  assert.deepEqual(les, [
    "0.005",
    "0.01",
    "0.025",
    "0.05",
    "0.1",
    "0.25",
    "0.5",
    "1",
    "2.5",
    "5",
    "10",
    "20",
    "30",
    "60",
    "+Inf",
  ]);
  assert.equal(
    value("dm_turn_duration_seconds_bucket", { transport: "sse", le: "60" }),
    1,
    "the 61 s turn falls in +Inf only",
  );
});

Deno.test("promtool check metrics accepts the exposition", async () => {
  const { body } = await exposition();
  const result = await promtoolCheck(body);
  assert.equal(result.code, 0, `promtool check metrics failed:\n${result.output}\n---\n${body}`);
  assert.equal(result.output.trim(), "", `promtool reported problems:\n${result.output}`);
});

Deno.test("DM_METRICS_ENABLED=false answers 404 on /metrics", async () => {
  const { status } = await exposition({ DM_METRICS_ENABLED: "false" });
  assert.equal(status, 404);
});

Deno.test("with OTEL_SDK_DISABLED=true /metrics still answers a valid, empty exposition", async () => {
  const { status, body } = await exposition({ OTEL_SDK_DISABLED: "true" });
  assert.equal(status, 200);
  assert.equal(parseExposition(body).samples.length, 0);
  const result = await promtoolCheck(body);
  assert.equal(result.code, 0, result.output);
});

Deno.test("the promtool linter really rejects a bad exposition", async () => {
  // Guards against a promtool that accepts anything (wrong binary, no input).
  const result = await promtoolCheck(
    "# HELP dm_bad A counter without _total.\n# TYPE dm_bad counter\ndm_bad 1\n",
  );
  assert.notEqual(result.code, 0, result.output);
  assert.match(result.output, /_total/);
});
