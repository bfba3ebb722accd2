/**
 * The trace of a turn, as an operator's collector receives it: the real
 * service process exports OTLP/HTTP to a real receiver while the real openai
 * SDK talks to the fake OpenAI server.
 */
import assert from "node:assert/strict";
import { FakeOpenAI } from "./fakes/fake_openai.ts";
import { OtlpReceiver, type ReceivedSpan } from "./fakes/otlp_receiver.ts";
import { spawnService } from "./helpers/process.ts";
import { createCharacter, postJson } from "./helpers/server.ts";
import { quietOutcome } from "./helpers/recording_llm.ts";
import { openSse } from "./helpers/sse.ts";
import { WsClient } from "./helpers/ws.ts";

const STAGES = [
  "memory-sparks",
  "llm-stream",
  "outcome-parser",
  "quest",
  "combat",
  "poi",
  "narrative",
];
const CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN = "00f067aa0ba902b7";
/**
 * The SDK anchors each span's start on a millisecond wall clock and adds a
 * monotonic duration, so ends of different spans can disagree by up to 1 ms.
 */
const CLOCK_SLACK_NS = 1_000_000n;
const SSE_TRACE = "5bf92f3577b34da6a3ce929d0e0e4737";
const WS_TRACE = "6bf92f3577b34da6a3ce929d0e0e4738";

/** Assert the tree under one `turn` span and return it. */
export function assertTurnTree(spans: ReceivedSpan[], transport: string): ReceivedSpan {
  const turns = spans.filter((s) =>
    s.name === "turn" && s.attributes["dm.transport"] === transport
  );
  assert.equal(turns.length, 1, `one ${transport} turn span`);
  const turn = turns[0];
  const trace = spans.filter((s) => s.traceId === turn.traceId);
  const children = trace.filter((s) => s.parentSpanId === turn.spanId);
  const stages = children.filter((s) => s.name.startsWith("stage "));
  assert.deepEqual(
    stages.sort((a, b) => a.startTimeUnixNano.localeCompare(b.startTimeUnixNano)).map((s) =>
      s.name
    ),
    STAGES.map((s) => `stage ${s}`),
  );
  for (const stage of stages) {
    assert.equal(stage.attributes["dm.stage"], stage.name.slice(6));
    assert.equal(stage.attributes["dm.turn_id"], turn.attributes["dm.turn_id"]);
    assert.equal(stage.attributes["dm.character_id"], turn.attributes["dm.character_id"]);
    assert.ok(
      BigInt(stage.endTimeUnixNano) <= BigInt(turn.endTimeUnixNano) + CLOCK_SLACK_NS,
      "stages end within the turn",
    );
  }
  const llmStage = stages.find((s) => s.name === "stage llm-stream")!;
  const llm = trace.filter((s) => s.parentSpanId === llmStage.spanId && s.name.startsWith("chat "));
  assert.equal(llm.length, 1, "one LLM client span under stage llm-stream");
  assert.equal(llm[0].kind, 3, "CLIENT");
  assert.equal(llm[0].attributes["gen_ai.system"], "openai");
  assert.equal(llm[0].attributes["gen_ai.request.model"], "gpt-test");
  assert.equal(typeof llm[0].attributes["gen_ai.usage.input_tokens"], "number");
  assert.equal(typeof llm[0].attributes["gen_ai.usage.output_tokens"], "number");
  assert.ok(llm[0].events.some((e) => e.name === "first_token"));
  assert.ok(turn.events.some((e) => e.name === "first_token"));
  const db = trace.filter((s) => s.attributes["db.system"] === "sqlite");
  assert.ok(
    db.some((s) =>
      s.attributes["db.operation.name"] === "commitTurn" && s.parentSpanId === turn.spanId
    ),
  );
  assert.ok(
    db.some((s) =>
      s.attributes["db.operation.name"] === "randomPois" ||
      s.attributes["db.operation.name"] === "beginTurn"
    ),
  );
  assert.ok(typeof turn.attributes["dm.turn_id"] === "string");
  assert.equal(turn.resource["service.name"], "dungeon-master");
  return turn;
}

Deno.test("a turn over POST /turn, SSE and WebSocket is one trace each: turn → 7 stages, LLM and store spans", async () => {
  const receiver = await OtlpReceiver.start();
  const fake = await FakeOpenAI.start();
  fake.script(() => ({
    text: JSON.stringify(quietOutcome("The door groans open.")),
    chunkSize: 6,
  }));
  const dir = await Deno.makeTempDir();
  const service = await spawnService({
    DM_SQLITE_PATH: `${dir}/dm.sqlite`,
    DM_LLM: "openai",
    OPENAI_API_KEY: "sk-test",
    OPENAI_BASE_URL: fake.url,
    DM_LLM_MODEL: "gpt-test",
    DM_MEMORY_SPARK_PROB: "1",
    DM_TURN_RATE_PER_SECOND: "100",
    DM_TURN_BURST: "10",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: "50",
  });
  try {
    const id = await createCharacter(service.url);
    const res = await postJson(`${service.url}/turn`, {
      character_id: id,
      user_action: "I open the door",
    }, {
      traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`,
    });
    assert.equal(res.status, 200);

    const sse = await openSse(`${service.url}/turn/stream`, {
      body: { character_id: id, user_action: "I light a torch" },
      headers: { traceparent: `00-${SSE_TRACE}-${CLIENT_SPAN}-01` },
    });
    assert.equal(sse.response.status, 200);
    for (let frame = await sse.next(); frame && frame.data !== "[DONE]"; frame = await sse.next()) {
      // Read the whole stream.
    }

    const ws = await WsClient.connect(service.url);
    ws.send({
      type: "turn",
      character_id: id,
      user_action: "I listen",
      traceparent: `00-${WS_TRACE}-${CLIENT_SPAN}-01`,
    });
    const wsEvents = await ws.turn();
    assert.equal(wsEvents.at(-1).type, "complete");
    await ws.close();

    assert.equal((await service.stop()).code, 0, "clean exit flushes spans");
    const turn = assertTurnTree(receiver.spans, "http");
    assert.equal(turn.traceId, CLIENT_TRACE, "continues the client's trace");
    assert.equal(turn.parentSpanId, CLIENT_SPAN);
    assert.equal(turn.attributes["dm.character_id"], id);
    for (const [transport, traceId] of [["sse", SSE_TRACE], ["websocket", WS_TRACE]]) {
      const streamed = assertTurnTree(receiver.spans, transport);
      assert.equal(streamed.traceId, traceId, `${transport} continues the client's trace`);
      // The turn span lasts until the last event, not until response headers:
      // it covers every stage (span start times are only millisecond-precise
      // here, so allow 1 ms).
      const stages = receiver.spans.filter((s) =>
        s.parentSpanId === streamed.spanId && s.name.startsWith("stage ")
      );
      const lastStageEnd = stages.map((s) => BigInt(s.endTimeUnixNano)).reduce((
        a,
        b,
      ) => (a > b ? a : b));
      assert.ok(BigInt(streamed.endTimeUnixNano) + CLOCK_SLACK_NS >= lastStageEnd);
    }
    const sentTraces = fake.requests.map((r) => (r.headers["traceparent"] ?? "").split("-")[1]);
    for (const trace of [CLIENT_TRACE, SSE_TRACE, WS_TRACE]) {
      assert.ok(sentTraces.includes(trace), `the model request carries trace ${trace}`);
    }
  } finally {
    await service.stop();
    await fake.close();
    await receiver.close();
    await Deno.remove(dir, { recursive: true });
  }
});
