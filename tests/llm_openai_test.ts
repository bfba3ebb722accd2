/**
 * The openai provider against the fake OpenAI server, through the real SDK
 * and real HTTP: both APIs, every fault the provider must map, retries,
 * timeouts, cancellation, the GenAI span and `traceparent` propagation.
 */
import assert from "node:assert/strict";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import OpenAI from "openai";
import { context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import {
  createOpenAiProvider,
  OpenAiProvider,
  type OpenAiProviderOptions,
} from "../src/llm/openai.ts";
import type { LlmChunk, LlmRequest } from "../src/llm/provider.ts";
import { DmError } from "../src/errors.ts";
import { loadConfig } from "../src/config.ts";
import { FakeOpenAI, type FakeRequest } from "./fakes/fake_openai.ts";

const APIS = ["responses", "chat"] as const;

const SCHEMA = {
  type: "object",
  properties: {
    narrative: { type: "string" },
    intents: { type: "object", properties: {}, additionalProperties: false, required: [] },
  },
  required: ["narrative", "intents"],
  additionalProperties: false,
};

const OUTCOME = JSON.stringify({
  narrative: 'The door groans open onto a stair that smells of rain. "Who\'s there?" — silence.',
  intents: {},
});

/** Run `fn` with a real context manager and W3C propagator registered globally. */
async function withGlobalTracing<T>(fn: () => Promise<T>): Promise<T> {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  try {
    return await fn();
  } finally {
    context.disable();
    propagation.disable();
  }
}

interface Harness {
  fake: FakeOpenAI;
  exporter: InMemorySpanExporter;
  tracerProvider: TracerProvider;
  sleeps: number[];
  make(overrides?: Partial<OpenAiProviderOptions>): OpenAiProvider;
  [Symbol.asyncDispose](): Promise<void>;
}

async function harness(api: "responses" | "chat"): Promise<Harness> {
  const fake = await FakeOpenAI.start();
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  const sleeps: number[] = [];
  return {
    fake,
    exporter,
    tracerProvider,
    sleeps,
    make: (overrides = {}) =>
      new OpenAiProvider({
        apiKey: "sk-test",
        baseURL: fake.url,
        model: "gpt-test",
        api,
        timeoutMs: 2_000,
        maxRetries: 2,
        maxOutputTokens: 1_000,
        tracer: tracerProvider.getTracer("test"),
        // Record the backoff instead of waiting it out.
        sleep: (ms) => {
          sleeps.push(ms);
          return Promise.resolve();
        },
        random: () => 0.5,
        ...overrides,
      }),
    async [Symbol.asyncDispose]() {
      await fake.close();
      await tracerProvider.shutdown();
    },
  };
}

function request(overrides: Partial<LlmRequest> = {}): LlmRequest {
  return {
    system: "You are the dungeon master. Answer in JSON.",
    prompt: "Kara opens the cellar door.",
    schema: { name: "dungeon_master_outcome", json: SCHEMA },
    scene: {
      user_action: "open the cellar door",
      character_name: "Kara",
      location: "The Sunken Chapel",
      in_combat: false,
      active_quest: null,
      allowed: {},
      sparks: [],
      intro: false,
    },
    max_output_tokens: 500,
    signal: new AbortController().signal,
    ...overrides,
  };
}

interface Collected {
  deltas: string[];
  usage: LlmChunk[];
  error: unknown;
}

/** Drain a stream, keeping what arrived before any error. */
async function collect(stream: AsyncIterable<LlmChunk>): Promise<Collected> {
  const out: Collected = { deltas: [], usage: [], error: null };
  try {
    for await (const chunk of stream) {
      if (chunk.type === "delta") out.deltas.push(chunk.text);
      else out.usage.push(chunk);
    }
  } catch (e) {
    out.error = e;
  }
  return out;
}

function assertDmError(error: unknown, type: string, pattern?: RegExp): DmError {
  assert.ok(error instanceof DmError, `expected DmError, got ${String(error)}`);
  assert.equal(error.type, type, error.message);
  if (pattern) assert.match(error.message, pattern);
  return error;
}

function llmSpan(exporter: InMemorySpanExporter): ReadableSpan {
  const spans = exporter.getFinishedSpans().filter((s) => s.name === "chat gpt-test");
  assert.equal(spans.length, 1, "one LLM span");
  return spans[0];
}

/** Wait until the fake has seen the client go away (or the exchange otherwise end). */
async function settled(record: FakeRequest, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (record.outcome === "pending" && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const api of APIS) {
  Deno.test(`${api}: streams deltas then usage, sending the strict schema`, async () => {
    await using h = await harness(api);
    h.fake.script({ text: OUTCOME, chunkSize: 5, usage: { input_tokens: 123, output_tokens: 45 } });
    const got = await collect(h.make().stream(request()));
    assert.equal(got.error, null);
    assert.equal(got.deltas.join(""), OUTCOME);
    assert.equal(got.deltas.length, Math.ceil(Array.from(OUTCOME).length / 5));
    assert.deepEqual(got.usage, [{
      type: "usage",
      usage: { input_tokens: 123, output_tokens: 45 },
    }]);

    assert.equal(h.fake.requests.length, 1);
    const sent = h.fake.requests[0];
    assert.equal(sent.method, "POST");
    assert.equal(sent.headers["authorization"], "Bearer sk-test");
    assert.equal(sent.body.model, "gpt-test");
    assert.equal(sent.body.stream, true);
    if (api === "responses") {
      assert.equal(sent.path, "/v1/responses");
      assert.equal(sent.body.instructions, "You are the dungeon master. Answer in JSON.");
      assert.equal(sent.body.input, "Kara opens the cellar door.");
      // The request's own limit wins when it is below DM_LLM_MAX_OUTPUT_TOKENS.
      assert.equal(sent.body.max_output_tokens, 500);
      assert.deepEqual(sent.body.text, {
        format: {
          type: "json_schema",
          name: "dungeon_master_outcome",
          schema: SCHEMA,
          strict: true,
        },
      });
    } else {
      assert.equal(sent.path, "/v1/chat/completions");
      assert.deepEqual(sent.body.messages, [
        { role: "system", content: "You are the dungeon master. Answer in JSON." },
        { role: "user", content: "Kara opens the cellar door." },
      ]);
      assert.deepEqual(sent.body.stream_options, { include_usage: true });
      assert.equal(sent.body.max_completion_tokens, 500);
      assert.deepEqual(sent.body.response_format, {
        type: "json_schema",
        json_schema: { name: "dungeon_master_outcome", schema: SCHEMA, strict: true },
      });
    }
  });

  Deno.test(`${api}: caps the request's token limit at DM_LLM_MAX_OUTPUT_TOKENS`, async () => {
    await using h = await harness(api);
    await collect(h.make({ maxOutputTokens: 300 }).stream(request({ max_output_tokens: 4000 })));
    const body = h.fake.requests[0].body;
    assert.equal(api === "responses" ? body.max_output_tokens : body.max_completion_tokens, 300);
  });

  Deno.test(`${api}: a CLIENT span under the active span, with GenAI attributes and traceparent`, async () => {
    await using h = await harness(api);
    h.fake.script({
      text: OUTCOME,
      model: "gpt-test-2026-01-01",
      usage: { input_tokens: 10, output_tokens: 20 },
    });
    const stageTracer = h.tracerProvider.getTracer("stage");
    await withGlobalTracing(async () => {
      const stage = stageTracer.startSpan("stage generate");
      // The caller starts the stream inside its stage span and reads it
      // later, after the span stopped being active: the parent must still be the stage.
      const stream = context.with(
        trace.setSpan(context.active(), stage),
        () => h.make().stream(request()),
      );
      const got = await collect(stream);
      assert.equal(got.error, null);
      stage.end();
    });

    const span = llmSpan(h.exporter);
    const stage = h.exporter.getFinishedSpans().find((s) => s.name === "stage generate")!;
    assert.equal(span.kind, SpanKind.CLIENT);
    assert.equal(span.parentSpanContext?.spanId, stage.spanContext().spanId);
    assert.equal(span.spanContext().traceId, stage.spanContext().traceId);
    assert.equal(span.status.code, SpanStatusCode.UNSET);
    assert.equal(span.attributes["gen_ai.system"], "openai");
    assert.equal(span.attributes["gen_ai.operation.name"], "chat");
    assert.equal(span.attributes["gen_ai.request.model"], "gpt-test");
    assert.equal(span.attributes["gen_ai.request.max_tokens"], 500);
    assert.equal(span.attributes["gen_ai.response.model"], "gpt-test-2026-01-01");
    assert.equal(span.attributes["gen_ai.usage.input_tokens"], 10);
    assert.equal(span.attributes["gen_ai.usage.output_tokens"], 20);
    assert.deepEqual(span.attributes["gen_ai.response.finish_reasons"], ["stop"]);
    assert.equal(span.attributes["server.address"], "127.0.0.1");
    assert.equal(span.events.filter((e) => e.name === "first_token").length, 1);

    const { traceId, spanId } = span.spanContext();
    assert.equal(h.fake.requests[0].headers["traceparent"], `00-${traceId}-${spanId}-01`);
  });

  Deno.test(`${api}: a slow but steady stream is not a timeout`, async () => {
    await using h = await harness(api);
    // Nine gaps of 30 ms: the whole stream outlasts the 200 ms timeout, no gap comes close.
    h.fake.script({ text: "0123456789", chunkSize: 1, tokenDelayMs: 30 });
    const got = await collect(h.make({ timeoutMs: 200 }).stream(request()));
    assert.equal(got.error, null);
    assert.equal(got.deltas.join(""), "0123456789");
  });

  Deno.test(`${api}: no first token within the timeout is llm_timeout, not retried`, async () => {
    await using h = await harness(api);
    h.fake.script({ firstTokenDelayMs: 5_000 });
    const started = performance.now();
    const got = await collect(h.make({ timeoutMs: 150 }).stream(request()));
    assertDmError(got.error, "llm_timeout", /DM_LLM_TIMEOUT_MS \(150 ms\).*first/);
    assert.ok(performance.now() - started < 2_000, "gave up near the timeout");
    assert.deepEqual(got.deltas, []);
    assert.equal(h.fake.requests.length, 1);
    await settled(h.fake.requests[0]);
    assert.equal(h.fake.requests[0].outcome, "client_aborted", "the upstream request was closed");
    const span = llmSpan(h.exporter);
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(span.attributes["error.type"], "llm_timeout");
  });

  Deno.test(`${api}: a server that never sends headers is llm_timeout`, async () => {
    await using h = await harness(api);
    h.fake.script({ headersDelayMs: 5_000 });
    const got = await collect(h.make({ timeoutMs: 150 }).stream(request()));
    assertDmError(got.error, "llm_timeout");
    assert.equal(h.fake.requests.length, 1);
  });

  Deno.test(`${api}: silence between tokens is llm_timeout after the deltas already sent`, async () => {
    await using h = await harness(api);
    h.fake.script({ text: "abcdefgh", chunkSize: 2, tokenDelayMs: 5_000 });
    const got = await collect(h.make({ timeoutMs: 150 }).stream(request()));
    assertDmError(got.error, "llm_timeout", /after its last one/);
    assert.deepEqual(got.deltas, ["ab"]);
    assert.equal(h.fake.requests.length, 1);
  });

  Deno.test(`${api}: a 429 is retried with backoff, then the stream succeeds`, async () => {
    await using h = await harness(api);
    h.fake.script({ status: 429 }, { text: OUTCOME });
    const got = await collect(h.make().stream(request()));
    assert.equal(got.error, null);
    assert.equal(got.deltas.join(""), OUTCOME);
    assert.equal(h.fake.requests.length, 2);
    // First step 500 ms, half of it jittered: 250 + 0.5 * 250.
    assert.deepEqual(h.sleeps, [375]);
    const span = llmSpan(h.exporter);
    assert.equal(span.attributes["dm.llm.attempts"], 2);
    assert.equal(span.events.filter((e) => e.name === "retry").length, 1);
  });

  Deno.test(`${api}: Retry-After from the server sets the wait`, async () => {
    await using h = await harness(api);
    h.fake.script({ status: 429, headers: { "retry-after": "2" } }, { text: OUTCOME });
    const got = await collect(h.make().stream(request()));
    assert.equal(got.error, null);
    assert.deepEqual(h.sleeps, [2_000]);
  });

  Deno.test(`${api}: 500s exhaust the retries into llm_error`, async () => {
    await using h = await harness(api);
    h.fake.script({ status: 500 }, { status: 500 }, { status: 503 }, { text: OUTCOME });
    const got = await collect(h.make({ maxRetries: 2 }).stream(request()));
    assertDmError(got.error, "llm_error", /HTTP 503.*after 3 attempts/);
    assert.equal(h.fake.requests.length, 3);
    assert.deepEqual(h.sleeps, [375, 750], "exponential backoff");
    assert.equal(h.fake.pending, 1, "the fourth reply was never asked for");
  });

  Deno.test(`${api}: 401 is llm_error naming OPENAI_API_KEY, without retry or the key`, async () => {
    await using h = await harness(api);
    const fake = await FakeOpenAI.start({ apiKey: "sk-right" });
    try {
      const got = await collect(
        h.make({ baseURL: fake.url, apiKey: "sk-wrong" }).stream(request()),
      );
      const error = assertDmError(got.error, "llm_error", /OPENAI_API_KEY/);
      assert.doesNotMatch(error.message, /sk-wrong|Incorrect API key/);
      assert.equal(fake.requests.length, 1);
      assert.deepEqual(h.sleeps, []);
      const span = llmSpan(h.exporter);
      assert.equal(span.status.code, SpanStatusCode.ERROR);
      assert.ok(span.events.some((e) => e.name === "exception"));
    } finally {
      await fake.close();
    }
  });

  Deno.test(`${api}: 403 is llm_error naming OPENAI_API_KEY`, async () => {
    await using h = await harness(api);
    h.fake.script({ status: 403 });
    const got = await collect(h.make().stream(request()));
    assertDmError(got.error, "llm_error", /HTTP 403.*OPENAI_API_KEY/);
    assert.equal(h.fake.requests.length, 1);
  });

  for (const status of [400, 404, 422]) {
    Deno.test(`${api}: ${status} is llm_error naming the model, API and base URL settings`, async () => {
      await using h = await harness(api);
      h.fake.script({ status });
      const got = await collect(h.make().stream(request()));
      assertDmError(
        got.error,
        "llm_error",
        new RegExp(
          `HTTP ${status}.*DM_LLM_MODEL \\(gpt-test\\).*DM_LLM_API \\(${api}\\).*OPENAI_BASE_URL`,
        ),
      );
      assert.equal(h.fake.requests.length, 1, "not retried");
    });
  }

  Deno.test(`${api}: a connection cut after the first delta is llm_error, not retried`, async () => {
    await using h = await harness(api);
    h.fake.script({ text: OUTCOME, chunkSize: 4, cutAfterChunks: 2 }, { text: OUTCOME });
    const got = await collect(h.make().stream(request()));
    assertDmError(got.error, "llm_error", /connection to the model was lost/);
    assert.equal(got.deltas.join(""), OUTCOME.slice(0, 8));
    assert.equal(h.fake.requests.length, 1);
    assert.equal(h.fake.requests[0].outcome, "cut");
  });

  Deno.test(`${api}: a connection cut before the first delta is retried`, async () => {
    await using h = await harness(api);
    h.fake.script({ cutAfterChunks: 0 }, { text: OUTCOME });
    const got = await collect(h.make().stream(request()));
    assert.equal(got.error, null);
    assert.equal(got.deltas.join(""), OUTCOME);
    assert.equal(h.fake.requests.length, 2);
  });

  Deno.test(`${api}: a clean close before the end, after a delta, is llm_error`, async () => {
    await using h = await harness(api);
    h.fake.script({ text: OUTCOME, chunkSize: 4, cutAfterChunks: 1, cutMode: "eof" });
    const got = await collect(h.make().stream(request()));
    assertDmError(got.error, "llm_error", /ended early/);
    assert.equal(got.deltas.length, 1);
    assert.equal(h.fake.requests.length, 1);
  });

  Deno.test(`${api}: unreachable server: retried, then llm_error naming OPENAI_BASE_URL`, async () => {
    await using h = await harness(api);
    const gone = await FakeOpenAI.start();
    const url = gone.url;
    await gone.close();
    const got = await collect(h.make({ baseURL: url }).stream(request()));
    assertDmError(got.error, "llm_error", /OPENAI_BASE_URL.*after 3 attempts/);
    assert.equal(h.sleeps.length, 2);
  });

  Deno.test(`${api}: an empty completion is llm_response_error`, async () => {
    await using h = await harness(api);
    h.fake.script({ text: "" });
    const got = await collect(h.make().stream(request()));
    assertDmError(got.error, "llm_response_error", /no text/);
  });

  Deno.test(`${api}: a refusal is llm_response_error`, async () => {
    await using h = await harness(api);
    h.fake.script({ refusal: "I can't help with that." });
    const got = await collect(h.make().stream(request()));
    assertDmError(got.error, "llm_response_error", /refused: I can't help with that\./);
  });

  Deno.test(`${api}: running out of tokens before any text names DM_LLM_MAX_OUTPUT_TOKENS`, async () => {
    await using h = await harness(api);
    h.fake.script({ text: "", streamFailure: { kind: "incomplete" } });
    const got = await collect(h.make().stream(request()));
    assertDmError(got.error, "llm_response_error", /DM_LLM_MAX_OUTPUT_TOKENS \(1000\)/);
  });

  Deno.test(`${api}: a truncated answer still reaches the parser, with its usage`, async () => {
    await using h = await harness(api);
    h.fake.script({
      text: OUTCOME,
      chunkSize: 10,
      streamFailure: { kind: "incomplete", afterChunks: 2 },
      usage: { input_tokens: 5, output_tokens: 6 },
    });
    const got = await collect(h.make().stream(request()));
    assert.equal(got.error, null);
    assert.equal(got.deltas.join(""), OUTCOME.slice(0, 20));
    assert.deepEqual(got.usage, [{ type: "usage", usage: { input_tokens: 5, output_tokens: 6 } }]);
    const reasons = llmSpan(h.exporter).attributes["gen_ai.response.finish_reasons"];
    assert.deepEqual(reasons, [api === "responses" ? "max_output_tokens" : "length"]);
  });

  Deno.test(`${api}: an error inside the stream is llm_error`, async () => {
    await using h = await harness(api);
    h.fake.script({
      text: OUTCOME,
      chunkSize: 10,
      streamFailure: { kind: "error", afterChunks: 1, message: "overloaded", code: "server_error" },
    });
    const got = await collect(h.make().stream(request()));
    assertDmError(got.error, "llm_error", /overloaded/);
    assert.equal(got.deltas.length, 1);
    assert.equal(h.fake.requests.length, 1);
  });

  Deno.test(`${api}: aborting the request signal cancels the upstream request`, async () => {
    await using h = await harness(api);
    h.fake.script({ firstTokenDelayMs: 5_000 });
    const abort = new AbortController();
    const stream = h.make().stream(request({ signal: abort.signal }));
    setTimeout(() => abort.abort(), 50);
    const started = performance.now();
    const got = await collect(stream);
    assertDmError(got.error, "cancelled");
    assert.ok(performance.now() - started < 2_000);
    assert.equal(h.fake.requests.length, 1);
    await settled(h.fake.requests[0]);
    assert.equal(h.fake.requests[0].outcome, "client_aborted");
  });

  Deno.test(`${api}: aborting mid-stream is cancelled, after the deltas already sent`, async () => {
    await using h = await harness(api);
    h.fake.script({ text: OUTCOME, chunkSize: 4, tokenDelayMs: 30 });
    const abort = new AbortController();
    const got: string[] = [];
    let error: unknown = null;
    try {
      for await (const chunk of h.make().stream(request({ signal: abort.signal }))) {
        if (chunk.type === "delta") got.push(chunk.text);
        if (got.length === 2) abort.abort();
      }
    } catch (e) {
      error = e;
    }
    assertDmError(error, "cancelled");
    assert.equal(got.length, 2);
    await settled(h.fake.requests[0]);
    assert.equal(h.fake.requests[0].outcome, "client_aborted");
  });

  Deno.test(`${api}: an already aborted signal sends nothing`, async () => {
    await using h = await harness(api);
    const got = await collect(h.make().stream(request({ signal: AbortSignal.abort() })));
    assertDmError(got.error, "cancelled");
    assert.equal(h.fake.requests.length, 0);
  });

  Deno.test(`${api}: cancelling during a retry backoff stops at once`, async () => {
    await using h = await harness(api);
    h.fake.script({ status: 500 }, { text: OUTCOME });
    const abort = new AbortController();
    // A backoff that never ends on its own: only the abort can end it.
    const provider = h.make({
      sleep: () => {
        abort.abort();
        return new Promise(() => {});
      },
    });
    const got = await collect(provider.stream(request({ signal: abort.signal })));
    assertDmError(got.error, "cancelled");
    assert.equal(h.fake.requests.length, 1);
  });

  Deno.test(`${api}: a consumer that stops reading closes the upstream request`, async () => {
    await using h = await harness(api);
    h.fake.script({ text: OUTCOME, chunkSize: 2, tokenDelayMs: 20 });
    for await (const chunk of h.make().stream(request())) {
      if (chunk.type === "delta") break;
    }
    await settled(h.fake.requests[0]);
    assert.equal(h.fake.requests[0].outcome, "client_aborted");
    const span = llmSpan(h.exporter);
    assert.equal(span.status.code, SpanStatusCode.UNSET);
  });
}

Deno.test("responses: response.failed is llm_error", async () => {
  await using h = await harness("responses");
  h.fake.script({ text: OUTCOME, streamFailure: { kind: "failed", message: "model crashed" } });
  const got = await collect(h.make().stream(request()));
  assertDmError(got.error, "llm_error", /model crashed/);
  assert.equal(h.fake.requests.length, 1);
});

Deno.test("chat: a content-filtered answer with no text is llm_response_error", async () => {
  await using h = await harness("chat");
  h.fake.script({ text: "", streamFailure: { kind: "content_filter" } });
  const got = await collect(h.make().stream(request()));
  assertDmError(got.error, "llm_response_error", /content_filter/);
});

Deno.test("without a context manager the span is a root span and traceparent still names it", async () => {
  await using h = await harness("responses");
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  try {
    const got = await collect(h.make().stream(request()));
    assert.equal(got.error, null);
  } finally {
    propagation.disable();
  }
  const span = llmSpan(h.exporter);
  assert.equal(span.parentSpanContext, undefined);
  const { traceId, spanId } = span.spanContext();
  assert.equal(h.fake.requests[0].headers["traceparent"], `00-${traceId}-${spanId}-01`);
});

Deno.test("ready() reflects configuration without touching the network", async () => {
  const base = {
    model: "gpt-5.1",
    api: "responses" as const,
    timeoutMs: 1000,
    maxRetries: 0,
    maxOutputTokens: 100,
    fetch: () => Promise.reject(new Error("ready() must not call the network")),
  };
  assert.equal(await new OpenAiProvider({ ...base, apiKey: "sk-x", baseURL: null }).ready(), true);
  assert.equal(
    await new OpenAiProvider({ ...base, apiKey: null, baseURL: "http://127.0.0.1:1/v1" }).ready(),
    true,
  );
  assert.equal(await new OpenAiProvider({ ...base, apiKey: null, baseURL: null }).ready(), false);
});

Deno.test("createOpenAiProvider maps the settings", async () => {
  await using fake = await FakeOpenAI.start();
  const config = loadConfig({
    DM_LLM: "openai",
    OPENAI_API_KEY: "sk-config",
    OPENAI_BASE_URL: fake.url,
    DM_LLM_MODEL: "gpt-config",
    DM_LLM_API: "chat",
    DM_LLM_MAX_OUTPUT_TOKENS: "64",
  });
  const llm = createOpenAiProvider(config);
  assert.equal(llm.system, "openai");
  assert.equal(llm.model, "gpt-config");
  assert.equal(await llm.ready(), true);
  const got = await collect(llm.stream(request()));
  assert.equal(got.error, null);
  const sent = fake.requests[0];
  assert.equal(sent.path, "/v1/chat/completions");
  assert.equal(sent.headers["authorization"], "Bearer sk-config");
  assert.equal(sent.body.model, "gpt-config");
  assert.equal(sent.body.max_completion_tokens, 64);
});

// The fake must be faithful enough for the SDK's own strict stream
// consumers, not just for our provider.
Deno.test("fake: the SDK's Responses stream helper accepts the event sequence", async () => {
  await using fake = await FakeOpenAI.start();
  fake.script({ text: OUTCOME, chunkSize: 3, usage: { input_tokens: 7, output_tokens: 9 } });
  const client = new OpenAI({ apiKey: "sk", baseURL: fake.url, maxRetries: 0 });
  const stream = client.responses.stream({ model: "gpt-test", input: "hi" });
  const types: string[] = [];
  for await (const event of stream) types.push(event.type);
  const final = await stream.finalResponse();
  assert.equal(final.output_text, OUTCOME);
  assert.equal(final.usage?.input_tokens, 7);
  assert.equal(final.usage?.output_tokens, 9);
  const distinct = types.filter((t, i) => types.indexOf(t) === i);
  assert.deepEqual(distinct, [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
  ]);
});

Deno.test("fake: the SDK's chat stream helper accepts the chunks and usage", async () => {
  await using fake = await FakeOpenAI.start();
  fake.script({ text: OUTCOME, chunkSize: 3, usage: { input_tokens: 7, output_tokens: 9 } });
  const client = new OpenAI({ apiKey: "sk", baseURL: fake.url, maxRetries: 0 });
  const stream = client.chat.completions.stream({
    model: "gpt-test",
    messages: [{ role: "user", content: "hi" }],
    stream_options: { include_usage: true },
  });
  const final = await stream.finalChatCompletion();
  assert.equal(final.choices[0].message.content, OUTCOME);
  assert.equal(final.choices[0].finish_reason, "stop");
  assert.equal(final.usage?.prompt_tokens, 7);
  assert.equal(final.usage?.completion_tokens, 9);
});

Deno.test("fake: non-streaming answers parse with the SDK", async () => {
  await using fake = await FakeOpenAI.start();
  const client = new OpenAI({ apiKey: "sk", baseURL: fake.url, maxRetries: 0 });
  fake.script({ text: OUTCOME }, { text: OUTCOME });
  const response = await client.responses.create({ model: "gpt-test", input: "hi" });
  assert.equal(response.output_text, OUTCOME);
  const chat = await client.chat.completions.create({
    model: "gpt-test",
    messages: [{ role: "user", content: "hi" }],
  });
  assert.equal(chat.choices[0].message.content, OUTCOME);
});

Deno.test("fake: a responder function decides per request, after the queue", async () => {
  await using fake = await FakeOpenAI.start();
  fake.script((req) => ({ text: `{"narrative":"${req.body.model}"}` }));
  fake.script({ status: 500 });
  const client = new OpenAI({ apiKey: "sk", baseURL: fake.url, maxRetries: 0 });
  await assert.rejects(client.responses.create({ model: "first", input: "x" }), /500/);
  const r = await client.responses.create({ model: "second", input: "x" });
  assert.equal(r.output_text, '{"narrative":"second"}');
});

Deno.test("fake: unknown paths get an OpenAI-style 404", async () => {
  await using fake = await FakeOpenAI.start();
  const res = await fetch(`${fake.url}/embeddings`, { method: "POST", body: "{}" });
  assert.equal(res.status, 404);
  const body = await res.json();
  assert.equal(body.error.type, "invalid_request_error");
});
