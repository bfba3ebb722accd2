/**
 * The telemetry SDK against a real OTLP/HTTP receiver. Every SDK start runs
 * in a subprocess fixture (tests/fixtures/telemetry_*.ts) because NodeSDK
 * registers process-wide globals; settings parsing and traceparent handling
 * need no SDK and run here.
 */
import assert from "node:assert/strict";
import { trace } from "@opentelemetry/api";
import { OtlpReceiver, type ReceivedSpan } from "./fakes/otlp_receiver.ts";
import { runJsonFixture } from "./fixtures/telemetry_run.ts";
import { ConfigError } from "../src/config.ts";
import { readOtelSettings } from "../src/telemetry/otel_env.ts";
import { parentContextFromTraceparent, traceparentFromContext } from "../src/telemetry/sdk.ts";

interface SpansFixtureOutput {
  traceId: string;
  turnSpanId: string;
  stageSpanIds: Record<string, string>;
  traceparent: string | null;
  recording: boolean;
  activeAfterTurn: boolean;
  shutdownMs: number;
  enabled: boolean;
  tracesExported: boolean;
  logs: { msg: string; trace_id: string | null; span_id: string | null }[];
}

const byName = (spans: readonly ReceivedSpan[], name: string): ReceivedSpan => {
  const s = spans.find((x) => x.name === name);
  assert.ok(s, `no span named "${name}" in ${JSON.stringify(spans.map((x) => x.name))}`);
  return s;
};

Deno.test("spans reach the OTLP receiver with parentage, events, status and resource", async () => {
  await using receiver = await OtlpReceiver.start();
  const out = await runJsonFixture<SpansFixtureOutput>("telemetry_spans.ts", {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
  });
  assert.equal(out.enabled, true);
  assert.equal(out.tracesExported, true);

  // shutdown() in the fixture flushed the batch processor before exit.
  const spans = await receiver.waitForSpans((s) => s.length >= 4, 2000);
  assert.equal(spans.length, 4, JSON.stringify(spans.map((s) => s.name)));
  const turn = byName(spans, "turn");
  const sparks = byName(spans, "stage memory-sparks");
  const llmStage = byName(spans, "stage llm-stream");
  const chat = byName(spans, "chat test-model");

  for (const s of spans) assert.equal(s.traceId, out.traceId);
  assert.equal(turn.spanId, out.turnSpanId);
  assert.equal(turn.parentSpanId, "");
  assert.equal(sparks.parentSpanId, turn.spanId);
  assert.equal(llmStage.parentSpanId, turn.spanId);
  // The child span was active across an await inside its stage.
  assert.equal(chat.parentSpanId, llmStage.spanId);
  assert.equal(out.stageSpanIds["llm-stream"], llmStage.spanId);

  assert.equal(chat.kind, 3, "client kind");
  assert.deepEqual(chat.events.map((e) => e.name), ["first_token"]);
  assert.equal(chat.attributes["gen_ai.usage.output_tokens"], 12);
  assert.equal(sparks.attributes["dm.stage"], "memory-sparks");
  assert.equal(turn.attributes["dm.turn_id"], "t-1");
  assert.deepEqual(turn.status, { code: 2, message: "boom" });

  assert.equal(turn.resource["service.name"], "dungeon-master");
  assert.equal(turn.resource["service.version"], "0.0.0-test");
  assert.equal(turn.resource["telemetry.sdk.name"], "opentelemetry");

  // Log lines inside the turn carry its ids.
  const line = out.logs.find((l) => l.msg === "inside turn");
  assert.equal(line?.trace_id, out.traceId);
  assert.equal(line?.span_id, out.turnSpanId);
  assert.equal(out.traceparent, `00-${out.traceId}-${out.turnSpanId}-01`);
  assert.equal(out.activeAfterTurn, false, "no span leaks out of startActiveSpan");
});

Deno.test("shutdown is bounded when the collector is unreachable, and says so", async () => {
  // Port 1 on loopback refuses connections; the exporter would retry ~10 s.
  const out = await runJsonFixture<SpansFixtureOutput>("telemetry_spans.ts", {
    OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:1",
    FIXTURE_SHUTDOWN_TIMEOUT_MS: "300",
  });
  assert.ok(out.shutdownMs < 2000, `shutdown took ${out.shutdownMs} ms`);
  assert.ok(
    out.logs.some((l) => l.msg.startsWith("telemetry:") || l.msg.startsWith("otel:")),
    `a warning about the lost spans: ${JSON.stringify(out.logs)}`,
  );
});

Deno.test("OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES shape the resource", async () => {
  await using receiver = await OtlpReceiver.start();
  await runJsonFixture<SpansFixtureOutput>("telemetry_spans.ts", {
    // The signal-specific endpoint is used as given, without appending /v1/traces.
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces`,
    OTEL_SERVICE_NAME: "dm-canary",
    OTEL_RESOURCE_ATTRIBUTES: "service.name=ignored,deployment.environment.name=staging,team=a%2Cb",
  });
  const spans = await receiver.waitForSpans((s) => s.length >= 4, 2000);
  const resource = byName(spans, "turn").resource;
  assert.equal(resource["service.name"], "dm-canary");
  assert.equal(resource["deployment.environment.name"], "staging");
  assert.equal(resource["team"], "a,b");
});

Deno.test("a client's traceparent becomes the turn's parent", async () => {
  await using receiver = await OtlpReceiver.start();
  const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const clientSpan = "00f067aa0ba902b7";
  const out = await runJsonFixture<SpansFixtureOutput>("telemetry_spans.ts", {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    FIXTURE_TRACEPARENT: `00-${clientTrace}-${clientSpan}-01`,
  });
  const spans = await receiver.waitForSpans((s) => s.length >= 4, 2000);
  const turn = byName(spans, "turn");
  assert.equal(out.traceId, clientTrace);
  assert.equal(turn.traceId, clientTrace);
  assert.equal(turn.parentSpanId, clientSpan);
});

Deno.test("a client's unsampled traceparent is respected by the parent-based sampler", async () => {
  await using receiver = await OtlpReceiver.start();
  const out = await runJsonFixture<SpansFixtureOutput>("telemetry_spans.ts", {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    FIXTURE_TRACEPARENT: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
  });
  assert.equal(out.recording, false);
  assert.equal(receiver.spans.length, 0);
});

Deno.test("OTEL_SDK_DISABLED=true registers nothing and exports nothing", async () => {
  await using receiver = await OtlpReceiver.start();
  const out = await runJsonFixture<SpansFixtureOutput>("telemetry_spans.ts", {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_SDK_DISABLED: "true",
  });
  assert.equal(out.enabled, false);
  assert.equal(out.tracesExported, false);
  assert.equal(out.recording, false);
  assert.equal(out.logs.find((l) => l.msg === "inside turn")?.trace_id, null);
  // The fixture has exited, so anything it was going to send has been sent.
  assert.equal(receiver.requests, 0);
  assert.equal(receiver.spans.length, 0);
});

Deno.test("OTEL_TRACES_SAMPLER=always_off exports nothing", async () => {
  await using receiver = await OtlpReceiver.start();
  const out = await runJsonFixture<SpansFixtureOutput>("telemetry_spans.ts", {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_TRACES_SAMPLER: "always_off",
  });
  assert.equal(out.recording, false);
  assert.equal(receiver.spans.length, 0);
});

Deno.test("without an endpoint spans are not exported but logs still carry trace ids", async () => {
  const out = await runJsonFixture<SpansFixtureOutput>("telemetry_spans.ts", {});
  assert.equal(out.enabled, true);
  assert.equal(out.tracesExported, false);
  const line = out.logs.find((l) => l.msg === "inside turn");
  assert.match(line?.trace_id ?? "", /^[0-9a-f]{32}$/);
  assert.equal(line?.span_id, out.turnSpanId);
});

Deno.test("telemetry can be started again after shutdown, and not twice at once", async () => {
  await using receiver = await OtlpReceiver.start();
  const out = await runJsonFixture<
    { doubleStart: string; firstCount: number; secondCount: number }
  >(
    "telemetry_restart.ts",
    { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url },
  );
  assert.match(out.doubleStart, /already started/);
  assert.equal(out.firstCount, 1);
  // Cumulative within one SDK run; a restart starts from zero.
  assert.equal(out.secondCount, 2);
  await receiver.waitForSpans((s) => s.some((x) => x.name === "second run"), 2000);
  assert.deepEqual(receiver.spans.map((s) => s.name).sort(), ["first run", "second run"]);
});

Deno.test("settings: endpoints, sampler, defaults", () => {
  const d = readOtelSettings({});
  assert.equal(d.disabled, false);
  assert.equal(d.metricsEnabled, true);
  assert.equal(d.tracesUrl, null);
  assert.equal(d.sampler, "parentbased_always_on");
  assert.equal(d.resourceAttributes["service.name"], "dungeon-master");

  assert.equal(
    readOtelSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/" }).tracesUrl,
    "http://c:4318/v1/traces",
  );
  assert.equal(
    readOtelSettings({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://t:9999/custom",
    }).tracesUrl,
    "http://t:9999/custom",
  );
  assert.equal(
    readOtelSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_TRACES_EXPORTER: "none" })
      .tracesUrl,
    null,
  );
  const ratio = readOtelSettings({
    OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
    OTEL_TRACES_SAMPLER_ARG: "0.25",
  });
  assert.equal(ratio.samplerRatio, 0.25);
  assert.equal(readOtelSettings({ DM_METRICS_ENABLED: "false" }).metricsEnabled, false);
  assert.equal(readOtelSettings({ OTEL_SDK_DISABLED: "TRUE" }).disabled, true);
  assert.equal(
    readOtelSettings({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }).warnings.length,
    1,
    "an unsupported protocol is reported",
  );
});

Deno.test("settings: a bad value stops start-up naming the variable", () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ OTEL_DENO: "true" }, /OTEL_DENO/],
    [{ OTEL_TRACES_SAMPLER: "sometimes" }, /OTEL_TRACES_SAMPLER: allowed/],
    [{ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "2" }, /SAMPLER_ARG/],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" }, /OTEL_EXPORTER_OTLP_ENDPOINT/],
    [{ OTEL_RESOURCE_ATTRIBUTES: "a=b=c" }, /OTEL_RESOURCE_ATTRIBUTES/],
    [{ OTEL_SDK_DISABLED: "maybe" }, /OTEL_SDK_DISABLED/],
    [{ OTEL_TRACES_EXPORTER: "zipkin" }, /OTEL_TRACES_EXPORTER/],
    [{ OTEL_BSP_SCHEDULE_DELAY: "-1" }, /OTEL_BSP_SCHEDULE_DELAY/],
    [{ OTEL_LOG_LEVEL: "loud" }, /OTEL_LOG_LEVEL/],
  ];
  for (const [env, re] of bad) {
    assert.throws(() => readOtelSettings(env), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `ConfigError for ${JSON.stringify(env)}`);
      assert.match(e.message, re);
      return true;
    });
  }
});

Deno.test("parentContextFromTraceparent accepts W3C headers and ignores junk", () => {
  const ctx = parentContextFromTraceparent(
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "vendor=x",
  );
  const sc = trace.getSpanContext(ctx);
  assert.equal(sc?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
  assert.equal(sc?.spanId, "00f067aa0ba902b7");
  assert.equal(sc?.isRemote, true);
  assert.equal(sc?.traceState?.get("vendor"), "x");
  assert.equal(
    traceparentFromContext(ctx),
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  );

  for (
    const junk of [
      null,
      "",
      "garbage",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // all-zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // all-zero span id
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
      `00-${"a".repeat(600)}`,
    ]
  ) {
    assert.equal(trace.getSpanContext(parentContextFromTraceparent(junk)), undefined, String(junk));
  }
});

Deno.test("the OTLP receiver takes gzip'd JSON and refuses protobuf with 415", async () => {
  await using receiver = await OtlpReceiver.start();
  const request = {
    resourceSpans: [{
      resource: { attributes: [{ key: "service.name", value: { stringValue: "x" } }] },
      scopeSpans: [{
        scope: { name: "s" },
        spans: [{
          traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
          spanId: "00f067aa0ba902b7",
          name: "gz",
          kind: 2,
          attributes: [{ key: "n", value: { intValue: "7" } }, {
            key: "list",
            value: { arrayValue: { values: [{ boolValue: true }, { doubleValue: 1.5 }] } },
          }],
        }],
      }],
    }],
  };
  const gz = new Response(
    new Blob([JSON.stringify(request)]).stream().pipeThrough(new CompressionStream("gzip")),
  );
  const ok = await fetch(`${receiver.url}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "application/json", "content-encoding": "gzip" },
    body: await gz.arrayBuffer(),
  });
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  assert.equal(receiver.spans[0].name, "gz");
  assert.equal(receiver.spans[0].parentSpanId, "");
  assert.deepEqual(receiver.spans[0].attributes, { n: 7, list: [true, 1.5] });
  assert.deepEqual(receiver.spans[0].resource, { "service.name": "x" });

  const proto = await fetch(`${receiver.url}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "application/x-protobuf" },
    body: new Uint8Array([0x0a, 0x00]),
  });
  assert.equal(proto.status, 415);
  await proto.body?.cancel();
  const metrics = await fetch(`${receiver.url}/v1/metrics`, { method: "POST", body: "{}" });
  assert.equal(metrics.status, 404);
  await metrics.body?.cancel();
  assert.equal(receiver.spans.length, 1);
});
