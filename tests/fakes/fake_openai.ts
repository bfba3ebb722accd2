/**
 * A fake OpenAI-compatible HTTP server for tests and benchmarks, faithful to
 * the wire protocol the official `openai` SDK speaks, so the real SDK (and
 * our provider on top of it) runs unmodified against it.
 *
 * It serves, on `Deno.serve` at 127.0.0.1 with an ephemeral port:
 *
 * - `POST /v1/responses`: with `stream: true`, Server-Sent Events in the
 *   order the API sends them (`response.created`, `response.in_progress`,
 *   `response.output_item.added`, `response.content_part.added`, one
 *   `response.output_text.delta` per chunk, `response.output_text.done`,
 *   `response.content_part.done`, `response.output_item.done`,
 *   `response.completed` with usage), each as `event:` + `data:` lines;
 *   otherwise a JSON `Response` object.
 * - `POST /v1/chat/completions`: with `stream: true`, `data:` chunks of
 *   `chat.completion.chunk` (a role chunk, one content chunk per piece, a
 *   `finish_reason` chunk, a usage chunk with empty `choices` when
 *   `stream_options.include_usage` is set) and `data: [DONE]`; otherwise a
 *   JSON `chat.completion`.
 *
 * Anything else is a 404 with an OpenAI-style error body.
 *
 * Each test scripts what the next requests get with {@link FakeOpenAI.script}:
 * a queue of {@link FakeReply} values consumed one per request, or a function
 * that decides per request. A reply can stream any text (valid outcome,
 * invalid JSON, wrong schema…) in chunks of a chosen size, wait before the
 * headers, before the first token or between tokens, answer an HTTP error
 * (429, 500, 401, 400, …) with an OpenAI error body, fail inside the stream,
 * or drop the connection after N chunks.
 *
 * Every request is recorded (headers and parsed body) in
 * {@link FakeOpenAI.requests}, so a test can assert the model, the JSON
 * schema and strict mode that were sent, retries, and the `traceparent`.
 *
 * @example
 * ```ts
 * await using fake = await FakeOpenAI.start();
 * fake.script({ status: 429 }, { text: '{"narrative":"Hello"}', chunkSize: 4 });
 * const client = new OpenAI({ apiKey: "test", baseURL: fake.url, maxRetries: 1 });
 * const stream = await client.responses.create({ model: "gpt-5.1", input: "hi", stream: true });
 * for await (const event of stream) console.log(event.type);
 * fake.requests.length; // 2
 * ```
 *
 * @module
 */

/** What the fake answers to one request. Every field is optional. */
export interface FakeReply {
  /** The completion text, streamed in pieces. Default {@link DEFAULT_TEXT}. */
  text?: string;
  /** Characters per streamed delta. Default 8. */
  chunkSize?: number;
  /** Wait before sending the response headers at all (a server that hangs). */
  headersDelayMs?: number;
  /** After the headers and the opening events, wait before the first delta. */
  firstTokenDelayMs?: number;
  /** Wait between deltas. */
  tokenDelayMs?: number;
  /**
   * Answer this HTTP status instead of a completion (401, 429, 500, …), with
   * an OpenAI-style `{"error": {...}}` body.
   */
  status?: number;
  /** Error body fields for `status`; sensible per-status defaults otherwise. */
  error?: { message?: string; type?: string; code?: string | null; param?: string | null };
  /** Extra response headers, e.g. `{"retry-after": "0"}`. */
  headers?: Record<string, string>;
  /**
   * Drop the connection after this many deltas (0: right after the opening
   * events). `reset` (default) ends the body short of its declared length so
   * the client's read fails as on a dropped connection; `eof` ends the
   * stream cleanly but without the closing events.
   */
  cutAfterChunks?: number;
  /** How {@link FakeReply.cutAfterChunks} ends the stream. Default `reset`. */
  cutMode?: "reset" | "eof";
  /**
   * End the stream with a failure after all deltas (or after `afterChunks`):
   * Responses API `response.failed`, an `error` event, or `response.incomplete`
   * (reason `max_output_tokens`); for chat, `error` sends an error payload
   * and `incomplete` a `finish_reason` of `length`. `content_filter` is chat only.
   */
  streamFailure?: {
    kind: "failed" | "error" | "incomplete" | "content_filter";
    afterChunks?: number;
    message?: string;
    code?: string;
  };
  /** Stream a refusal with this text instead of output text. */
  refusal?: string;
  /** Token counts to report; estimated from text length otherwise. */
  usage?: { input_tokens: number; output_tokens: number };
  /** Model name in the response; defaults to the requested model. */
  model?: string;
}

/** One request the fake received. */
export interface FakeRequest {
  method: string;
  /** Path without the query, e.g. `/v1/responses`. */
  path: string;
  /** Which API the path belongs to, or null for unknown paths. */
  api: "responses" | "chat" | null;
  /** Header names lowercased. */
  headers: Record<string, string>;
  /** Parsed JSON body, or the raw text when it is not JSON. */
  // deno-lint-ignore no-explicit-any -- bodies are arbitrary JSON; tests index into them freely.
  body: any;
  /**
   * How the exchange ended: still `pending`, `completed`, `cut` by the
   * script, or `client_aborted` when the client went away first.
   */
  outcome: "pending" | "completed" | "cut" | "client_aborted";
}

/** Decides the reply to one request (when the queue is empty). */
export type FakeResponder = (request: FakeRequest) => FakeReply | Promise<FakeReply>;

/** Options of {@link FakeOpenAI.start}. */
export interface FakeOpenAIOptions {
  /** When set, requests without `Authorization: Bearer <apiKey>` get a 401. */
  apiKey?: string;
}

/** The text streamed when a reply does not name one: a minimal valid outcome. */
export const DEFAULT_TEXT = '{"narrative":"The fake storyteller clears its throat.","intents":{}}';

const encoder = new TextEncoder();

/** An OpenAI-style error body for a status. */
function errorBody(status: number, request: FakeRequest, given: FakeReply["error"]) {
  const model = typeof request.body?.model === "string" ? request.body.model : "unknown";
  const defaults: Record<number, { message: string; type: string; code: string | null }> = {
    400: {
      message: "Invalid request: 'text.format.schema' is not a valid JSON schema.",
      type: "invalid_request_error",
      code: "invalid_request",
    },
    401: {
      message: "Incorrect API key provided. You can find your API key at " +
        "https://platform.openai.com/account/api-keys.",
      type: "invalid_request_error",
      code: "invalid_api_key",
    },
    403: {
      message: "You are not allowed to sample from this model.",
      type: "invalid_request_error",
      code: "model_not_allowed",
    },
    404: {
      message: `The model \`${model}\` does not exist or you do not have access to it.`,
      type: "invalid_request_error",
      code: "model_not_found",
    },
    422: { message: "Unprocessable request.", type: "invalid_request_error", code: null },
    429: {
      message: `Rate limit reached for ${model} on requests per min (RPM): Limit 500, Used 500.`,
      type: "requests",
      code: "rate_limit_exceeded",
    },
    500: {
      message: "The server had an error while processing your request. Sorry about that!",
      type: "server_error",
      code: null,
    },
    503: {
      message: "The engine is currently overloaded, please try again later.",
      type: "server_error",
      code: null,
    },
  };
  const d = defaults[status] ??
    {
      message: `HTTP ${status}`,
      type: status >= 500 ? "server_error" : "invalid_request_error",
      code: null,
    };
  return {
    error: {
      message: given?.message ?? d.message,
      type: given?.type ?? d.type,
      param: given?.param ?? null,
      code: given?.code === undefined ? d.code : given.code,
    },
  };
}

function split(text: string, size: number): string[] {
  const out: string[] = [];
  // Split by code point so a piece never ends inside a surrogate pair, as the
  // API (which sends UTF-8 tokens) never does.
  const chars = Array.from(text);
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(""));
  return out;
}

function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

function randomId(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Text of the request's input, to estimate input tokens. */
function inputText(body: unknown): string {
  return JSON.stringify(body ?? "");
}

/** Writes events to a streamed body and gives scripted pauses that stop when the fake closes. */
class Wire {
  #controller: ReadableStreamDefaultController<Uint8Array>;
  #stop: AbortSignal;
  written = 0;

  constructor(controller: ReadableStreamDefaultController<Uint8Array>, stop: AbortSignal) {
    this.#controller = controller;
    this.#stop = stop;
  }

  get stopped(): boolean {
    return this.#stop.aborted;
  }

  write(text: string): void {
    if (this.stopped) return;
    const bytes = encoder.encode(text);
    this.written += bytes.length;
    this.#controller.enqueue(bytes);
  }

  sleep(ms: number | undefined): Promise<void> {
    return sleep(ms, this.#stop);
  }
}

function sleep(ms: number | undefined, stop: AbortSignal): Promise<void> {
  if (!ms || ms <= 0 || stop.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      stop.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    stop.addEventListener("abort", done, { once: true });
  });
}

/** Declared length of a body that will be cut short (far above anything we send). */
const CUT_CONTENT_LENGTH = 1 << 30;

/**
 * The fake server. Start one per test (or per suite) with
 * {@link FakeOpenAI.start}, point the SDK's `baseURL` at {@link FakeOpenAI.url},
 * and close it at the end (`await using` works too).
 */
export class FakeOpenAI {
  #server: Deno.HttpServer<Deno.NetAddr>;
  #queue: (FakeReply | FakeResponder)[] = [];
  #responder: FakeResponder = () => ({});
  #requests: FakeRequest[] = [];
  #active = new Set<AbortController>();
  #apiKey: string | undefined;

  private constructor(options: FakeOpenAIOptions) {
    this.#apiKey = options.apiKey;
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (request, info) => this.#handle(request, info),
    );
  }

  /** Start a fake on an ephemeral port. */
  static start(options: FakeOpenAIOptions = {}): Promise<FakeOpenAI> {
    return Promise.resolve(new FakeOpenAI(options));
  }

  /** Base URL for the SDK, ending in `/v1`. */
  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}/v1`;
  }

  /** Every request received so far, oldest first. */
  get requests(): readonly FakeRequest[] {
    return this.#requests;
  }

  /**
   * Script the next requests. Replies (or one-shot responder functions) are
   * queued and used one per request in order. Given a single function alone,
   * it becomes the responder for every request once the queue is empty.
   * With nothing queued and no responder, requests get {@link DEFAULT_TEXT}.
   */
  script(responder: FakeResponder): this;
  script(...replies: (FakeReply | FakeResponder)[]): this;
  script(...replies: (FakeReply | FakeResponder)[]): this {
    if (replies.length === 1 && typeof replies[0] === "function") {
      this.#responder = replies[0];
    } else {
      this.#queue.push(...replies);
    }
    return this;
  }

  /** Replies still queued. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Forget queued replies, the responder and recorded requests. */
  reset(): void {
    this.#queue = [];
    this.#responder = () => ({});
    this.#requests = [];
  }

  /** Stop the server; streams in flight end at once. */
  async close(): Promise<void> {
    for (const stop of this.#active) stop.abort();
    await this.#server.shutdown();
  }

  /** `await using fake = await FakeOpenAI.start()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #handle(request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname.replace(/\/+$/, "");
    const api = path === "/v1/responses"
      ? "responses"
      : path === "/v1/chat/completions"
      ? "chat"
      : null;
    const text = await request.text();
    let body: unknown = text;
    try {
      body = text === "" ? null : JSON.parse(text);
    } catch {
      // Recorded as text: a test may want to see what invalid body was sent.
    }
    const record: FakeRequest = {
      method: request.method,
      path,
      api,
      headers: Object.fromEntries(request.headers),
      body,
      outcome: "pending",
    };
    this.#requests.push(record);
    info.completed.then(
      () => {
        if (record.outcome === "pending") record.outcome = "completed";
      },
      () => {
        if (record.outcome === "pending") record.outcome = "client_aborted";
      },
    );

    const stop = new AbortController();
    this.#active.add(stop);
    const release = () => this.#active.delete(stop);
    info.completed.then(release, release);

    if (api === null || request.method !== "POST") {
      return json(404, {
        error: {
          message: `Invalid URL (${request.method} ${path})`,
          type: "invalid_request_error",
          param: null,
          code: null,
        },
      });
    }
    if (
      this.#apiKey !== undefined &&
      request.headers.get("authorization") !== `Bearer ${this.#apiKey}`
    ) {
      return json(401, errorBody(401, record, undefined));
    }

    const next = this.#queue.shift() ?? this.#responder;
    const reply = typeof next === "function" ? await next(record) : next;
    await sleep(reply.headersDelayMs, stop.signal);

    const headers = { "x-request-id": randomId("req_"), ...reply.headers };
    if (reply.status !== undefined && reply.status >= 400) {
      return json(reply.status, errorBody(reply.status, record, reply.error), headers);
    }
    const b = (body ?? {}) as Record<string, unknown>;
    const model = reply.model ?? (typeof b.model === "string" ? b.model : "gpt-fake");
    const streaming = b.stream === true;
    if (!streaming) {
      return json(
        200,
        api === "responses"
          ? responseObject(b, reply, model, "completed")
          : chatObject(b, reply, model),
        headers,
      );
    }

    const cut = reply.cutAfterChunks !== undefined && (reply.cutMode ?? "reset") === "reset";
    const run = api === "responses" ? streamResponses : streamChat;
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const wire = new Wire(controller, stop.signal);
        run(wire, b, reply, model).then(
          (ended) => {
            if (ended === "cut") record.outcome = "cut";
            try {
              controller.close();
            } catch {
              // Already cancelled by the client.
            }
          },
          (error) => {
            try {
              controller.error(error);
            } catch {
              // Already cancelled by the client.
            }
          },
        );
      },
      cancel: () => {
        if (record.outcome === "pending") record.outcome = "client_aborted";
        stop.abort();
      },
    });
    return new Response(stream, {
      status: 200,
      headers: {
        ...headers,
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        // A body that stops short of its declared length is what a dropped
        // connection looks like to the client, and unlike erroring the stream
        // it does not make Deno log a server-side error.
        ...(cut ? { "content-length": String(CUT_CONTENT_LENGTH) } : {}),
      },
    });
  }
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "x-request-id": randomId("req_"), ...headers, "content-type": "application/json" },
  });
}

function usageOf(body: Record<string, unknown>, reply: FakeReply, text: string) {
  return reply.usage ??
    { input_tokens: estimateTokens(inputText(body)), output_tokens: estimateTokens(text) };
}

/** The `Response` object of the Responses API, as it appears in events and JSON answers. */
function responseObject(
  body: Record<string, unknown>,
  reply: FakeReply,
  model: string,
  status: "in_progress" | "completed" | "failed" | "incomplete",
  ids = {
    response: randomId("resp_"),
    message: randomId("msg_"),
    created: Math.floor(Date.now() / 1000),
  },
  partial?: string,
) {
  const done = status !== "in_progress";
  const text = partial ?? reply.text ?? DEFAULT_TEXT;
  const usage = usageOf(body, reply, text);
  const part = reply.refusal !== undefined
    ? { type: "refusal", refusal: reply.refusal }
    : { type: "output_text", annotations: [], logprobs: [], text };
  return {
    id: ids.response,
    object: "response",
    created_at: ids.created,
    status,
    background: false,
    error: null,
    incomplete_details: status === "incomplete" ? { reason: "max_output_tokens" } : null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    max_tool_calls: null,
    model,
    output: done
      ? [{
        id: ids.message,
        type: "message",
        status: status === "completed" ? "completed" : "incomplete",
        content: [part],
        role: "assistant",
      }]
      : [],
    parallel_tool_calls: true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    service_tier: "default",
    store: true,
    temperature: 1,
    text: body.text ?? { format: { type: "text" } },
    tool_choice: "auto",
    tools: [],
    top_p: 1,
    truncation: "disabled",
    usage: done
      ? {
        input_tokens: usage.input_tokens,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: usage.output_tokens,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: usage.input_tokens + usage.output_tokens,
      }
      : null,
    user: null,
    metadata: {},
  };
}

type StreamEnd = "done" | "cut";

async function streamResponses(
  wire: Wire,
  body: Record<string, unknown>,
  reply: FakeReply,
  model: string,
): Promise<StreamEnd> {
  const ids = {
    response: randomId("resp_"),
    message: randomId("msg_"),
    created: Math.floor(Date.now() / 1000),
  };
  const text = reply.refusal ?? reply.text ?? DEFAULT_TEXT;
  const pieces = split(text, reply.chunkSize ?? 8);
  const refusal = reply.refusal !== undefined;
  let seq = 0;
  const send = (type: string, fields: Record<string, unknown>) => {
    wire.write(
      `event: ${type}\ndata: ${JSON.stringify({ type, ...fields, sequence_number: seq++ })}\n\n`,
    );
  };
  const at = { item_id: ids.message, output_index: 0, content_index: 0 };
  const emptyPart = refusal
    ? { type: "refusal", refusal: "" }
    : { type: "output_text", annotations: [], logprobs: [], text: "" };

  send("response.created", { response: responseObject(body, reply, model, "in_progress", ids) });
  send("response.in_progress", {
    response: responseObject(body, reply, model, "in_progress", ids),
  });
  send("response.output_item.added", {
    output_index: 0,
    item: {
      id: ids.message,
      type: "message",
      status: "in_progress",
      content: [],
      role: "assistant",
    },
  });
  send("response.content_part.added", { ...at, part: emptyPart });

  const failure = reply.streamFailure;
  const failAt = failure ? Math.min(failure.afterChunks ?? pieces.length, pieces.length) : -1;
  const cutAt = reply.cutAfterChunks;
  await wire.sleep(reply.firstTokenDelayMs);
  for (let i = 0; i <= pieces.length; i++) {
    if (wire.stopped) return "done";
    if (i === cutAt) return "cut";
    if (i === failAt && failure) {
      const streamed = pieces.slice(0, i).join("");
      const message = failure.message ?? "The model failed to finish.";
      if (failure.kind === "error") {
        send("error", { code: failure.code ?? "server_error", message, param: null });
      } else if (failure.kind === "incomplete") {
        send("response.incomplete", {
          response: responseObject(body, reply, model, "incomplete", ids, streamed),
        });
      } else {
        const failed = responseObject(body, reply, model, "failed", ids, streamed);
        send("response.failed", {
          response: { ...failed, error: { code: failure.code ?? "server_error", message } },
        });
      }
      return "done";
    }
    if (i === pieces.length) break;
    if (i > 0) await wire.sleep(reply.tokenDelayMs);
    if (wire.stopped) return "done";
    if (refusal) {
      send("response.refusal.delta", { ...at, delta: pieces[i] });
    } else {
      send("response.output_text.delta", { ...at, delta: pieces[i], logprobs: [] });
    }
  }
  const part = refusal
    ? { type: "refusal", refusal: text }
    : { type: "output_text", annotations: [], logprobs: [], text };
  if (refusal) {
    send("response.refusal.done", { ...at, refusal: text });
  } else {
    send("response.output_text.done", { ...at, text, logprobs: [] });
  }
  send("response.content_part.done", { ...at, part });
  send("response.output_item.done", {
    output_index: 0,
    item: {
      id: ids.message,
      type: "message",
      status: "completed",
      content: [part],
      role: "assistant",
    },
  });
  send("response.completed", { response: responseObject(body, reply, model, "completed", ids) });
  return "done";
}

/** The non-streaming `chat.completion` object. */
function chatObject(body: Record<string, unknown>, reply: FakeReply, model: string) {
  const text = reply.text ?? DEFAULT_TEXT;
  const usage = usageOf(body, reply, text);
  return {
    id: randomId("chatcmpl-"),
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{
      index: 0,
      message: {
        role: "assistant",
        content: reply.refusal !== undefined ? null : text,
        refusal: reply.refusal ?? null,
        annotations: [],
      },
      logprobs: null,
      finish_reason: "stop",
    }],
    usage: chatUsage(usage),
    service_tier: "default",
    system_fingerprint: "fp_fake",
  };
}

function chatUsage(usage: { input_tokens: number; output_tokens: number }) {
  return {
    prompt_tokens: usage.input_tokens,
    completion_tokens: usage.output_tokens,
    total_tokens: usage.input_tokens + usage.output_tokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

async function streamChat(
  wire: Wire,
  body: Record<string, unknown>,
  reply: FakeReply,
  model: string,
): Promise<StreamEnd> {
  const id = randomId("chatcmpl-");
  const created = Math.floor(Date.now() / 1000);
  const includeUsage =
    (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage ===
      true;
  const refusal = reply.refusal !== undefined;
  const text = reply.refusal ?? reply.text ?? DEFAULT_TEXT;
  const pieces = split(text, reply.chunkSize ?? 8);
  const send = (choices: unknown[], usage: unknown = null) => {
    const chunk: Record<string, unknown> = {
      id,
      object: "chat.completion.chunk",
      created,
      model,
      service_tier: "default",
      system_fingerprint: "fp_fake",
      choices,
    };
    if (includeUsage) chunk.usage = usage;
    wire.write(`data: ${JSON.stringify(chunk)}\n\n`);
  };
  const choice = (delta: Record<string, unknown>, finish: string | null = null) => ({
    index: 0,
    delta,
    logprobs: null,
    finish_reason: finish,
  });

  send([choice({ role: "assistant", content: "", refusal: null })]);
  const failure = reply.streamFailure;
  const failAt = failure ? Math.min(failure.afterChunks ?? pieces.length, pieces.length) : -1;
  const cutAt = reply.cutAfterChunks;
  await wire.sleep(reply.firstTokenDelayMs);
  let finish = "stop";
  for (let i = 0; i < pieces.length || i === failAt || i === cutAt; i++) {
    if (wire.stopped) return "done";
    if (i === cutAt) return "cut";
    if (i === failAt && failure) {
      if (failure.kind === "incomplete") {
        finish = "length";
        break;
      }
      if (failure.kind === "content_filter") {
        finish = "content_filter";
        break;
      }
      // Mid-stream errors arrive as a data payload holding `error`.
      wire.write(
        `data: ${
          JSON.stringify({
            error: {
              message: failure.message ?? "The model failed to finish.",
              type: "server_error",
              param: null,
              code: failure.code ?? "server_error",
            },
          })
        }\n\n`,
      );
      return "done";
    }
    if (i === pieces.length) break;
    if (i > 0) await wire.sleep(reply.tokenDelayMs);
    if (wire.stopped) return "done";
    send([choice(refusal ? { refusal: pieces[i] } : { content: pieces[i] })]);
  }
  send([choice({}, finish)]);
  if (includeUsage) send([], chatUsage(usageOf(body, reply, text)));
  wire.write("data: [DONE]\n\n");
  return "done";
}
