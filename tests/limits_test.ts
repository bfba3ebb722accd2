/** Exhaustion limits: concurrent model calls and per-user turn rates. */
import assert from "node:assert/strict";
import { limitConcurrency } from "../src/llm/limited.ts";
import type { LlmChunk, LlmProvider, LlmRequest } from "../src/llm/provider.ts";
import { createCharacter, postJson, startTestServer } from "./helpers/server.ts";

/** A model whose streams stay open until the test releases them. */
class GatedLlm implements LlmProvider {
  readonly system = "test";
  readonly model = "gated";
  started = 0;
  #gates: Array<() => void> = [];
  ready() {
    return Promise.resolve(true);
  }
  release() {
    this.#gates.shift()?.();
  }
  async *stream(_request: LlmRequest): AsyncGenerator<LlmChunk> {
    this.started++;
    await new Promise<void>((r) => this.#gates.push(r));
    yield { type: "delta", text: "x" };
  }
}

function request(signal = new AbortController().signal): LlmRequest {
  return {
    system: "",
    prompt: "",
    schema: { name: "s", json: {} },
    scene: {
      user_action: "",
      character_name: "",
      location: null,
      in_combat: false,
      active_quest: null,
      allowed: {},
      sparks: [],
      intro: false,
    },
    max_output_tokens: 10,
    signal,
  };
}

async function drain(stream: AsyncIterable<LlmChunk>) {
  const out: LlmChunk[] = [];
  for await (const c of stream) out.push(c);
  return out;
}

async function until(condition: () => boolean) {
  while (!condition()) await new Promise((r) => setTimeout(r, 1));
}

Deno.test("model calls past the cap queue in order and run when a slot frees", async () => {
  const inner = new GatedLlm();
  const llm = limitConcurrency(inner, 1, 60_000);
  const first = drain(llm.stream(request()));
  const second = drain(llm.stream(request()));
  await until(() => inner.started === 1);
  inner.release();
  await first;
  await until(() => inner.started === 2);
  inner.release();
  assert.equal((await second).length, 1);
});

Deno.test("a call that waits past the queue deadline is overloaded with Retry-After", async () => {
  const inner = new GatedLlm();
  const llm = limitConcurrency(inner, 1, 0);
  const first = drain(llm.stream(request()));
  await until(() => inner.started === 1);
  await assert.rejects(
    drain(llm.stream(request())),
    (e: Error & { type?: string; headers?: Record<string, string> }) =>
      e.type === "overloaded" && e.headers?.["Retry-After"] === "5",
  );
  inner.release();
  await first;
  assert.equal(inner.started, 1, "the refused call never reached the model");
});

Deno.test("a queued call aborted by its turn leaves the queue", async () => {
  const inner = new GatedLlm();
  const llm = limitConcurrency(inner, 1, 60_000);
  const first = drain(llm.stream(request()));
  await until(() => inner.started === 1);
  const abort = new AbortController();
  const queued = drain(llm.stream(request(abort.signal)));
  abort.abort(new Error("gone"));
  await assert.rejects(queued, /gone/);
  inner.release();
  await first;
  const third = drain(llm.stream(request()));
  await until(() => inner.started === 2);
  inner.release();
  await third;
});

Deno.test("a user's turn rate holds across their characters", async () => {
  const t = await startTestServer({ DM_TURN_RATE_PER_USER_PER_SECOND: "0.001" });
  try {
    const a = await createCharacter(t.url);
    const b = await createCharacter(t.url);
    const first = await postJson(`${t.url}/turn`, { character_id: a, user_action: "I wait" });
    assert.equal(first.status, 200);
    const second = await postJson(`${t.url}/turn`, { character_id: b, user_action: "I wait" });
    assert.equal(second.status, 429);
    assert.equal(second.body.detail.error.type, "rate_limited");
    assert.ok(Number(second.headers.get("retry-after")) >= 1);
  } finally {
    await t.close();
  }
});
