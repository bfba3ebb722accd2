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
      BigInt(stage.endTimeUnixNano) <= BigInt(turn.endTimeUnixNano),
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

Deno.test("a turn over POST /turn is one trace: turn → 7 stages, LLM and store spans", async () => {
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
    assert.equal((await service.stop()).code, 0, "clean exit flushes spans");
    const turn = assertTurnTree(receiver.spans, "http");
    assert.equal(turn.traceId, CLIENT_TRACE, "continues the client's trace");
    assert.equal(turn.parentSpanId, CLIENT_SPAN);
    assert.equal(turn.attributes["dm.character_id"], id);
    const llmRequest = fake.requests.at(-1)!;
    assert.match(llmRequest.headers["traceparent"] ?? "", new RegExp(`^00-${CLIENT_TRACE}-`));
  } finally {
    await service.stop();
    await fake.close();
    await receiver.close();
    await Deno.remove(dir, { recursive: true });
  }
});
