/**
 * The real-model provider: OpenAI's Responses or Chat Completions API through
 * the official SDK, streaming a strict-JSON-schema outcome.
 *
 * The SDK's own retries are off because ours must stop at the first delta:
 * once prose has reached a player, a retry would tell a different story.
 * Before that, 429s, 5xx answers and dropped connections are retried with
 * exponential backoff and jitter. One idle timer bounds both the wait for the
 * first token and every later silence, which the SDK's timeout (headers only,
 * for streams) cannot do.
 *
 * Each call is one OpenTelemetry CLIENT span (`chat <model>`) following the
 * GenAI semantic conventions, and the W3C `traceparent` of that span goes out
 * on the HTTP request.
 *
 * @module
 */
import OpenAI, {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
} from "openai";
import {
  type Context,
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import type { Config } from "../config.ts";
import { DmError } from "../errors.ts";
import type { TokenUsage } from "../store/port.ts";
import type { LlmChunk, LlmProvider, LlmRequest } from "./provider.ts";

/** Settings of {@link OpenAiProvider}; {@link createOpenAiProvider} maps them from `Config`. */
export interface OpenAiProviderOptions {
  /** `OPENAI_API_KEY`; null for a local server that needs none. */
  apiKey: string | null;
  /** `OPENAI_BASE_URL`; null for api.openai.com. */
  baseURL: string | null;
  /** `DM_LLM_MODEL`. */
  model: string;
  /** `DM_LLM_API`. */
  api: "responses" | "chat";
  /** `DM_LLM_TIMEOUT_MS`: longest wait for the first token and between tokens. */
  timeoutMs: number;
  /** `DM_LLM_MAX_RETRIES`: retries before the first delta. */
  maxRetries: number;
  /** `DM_LLM_MAX_OUTPUT_TOKENS`: upper bound on a completion's tokens. */
  maxOutputTokens: number;
  /** HTTP client; the global `fetch` by default. */
  fetch?: typeof fetch;
  /** Tracer for the LLM span; `trace.getTracer("dungeon-master")` by default. */
  tracer?: Tracer;
  /** Backoff pause; injectable so tests need not wait. */
  sleep?: (ms: number) => Promise<void>;
  /** Jitter source in [0, 1); `Math.random` by default. */
  random?: () => number;
}

const DEFAULT_BASE_URL = "https://api.openai.com/v1";
/** First backoff step; doubled per retry up to {@link BACKOFF_CAP_MS}. */
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 8_000;
/** Longest `Retry-After` we honour; a turn should not wait longer. */
const RETRY_AFTER_CAP_MS = 20_000;
/** Upstream error text kept in our messages; enough to diagnose, not to flood. */
const UPSTREAM_TEXT_MAX = 300;

/** A failed attempt, and whether another attempt may succeed. */
interface Failure {
  error: DmError;
  retryable: boolean;
  /** Server-requested wait (`Retry-After`), when given. */
  retryAfterMs: number | null;
}

/** The stream closed cleanly but before the API said it was done. */
class StreamEndedEarly extends Error {
  constructor() {
    super("the stream ended before the response completed");
    this.name = "StreamEndedEarly";
  }
}

/** What one attempt learned while streaming. */
interface AttemptState {
  /** A delta has been passed on: no more retries. */
  delivered: boolean;
}

function clip(text: string): string {
  return text.length > UPSTREAM_TEXT_MAX ? text.slice(0, UPSTREAM_TEXT_MAX) + "…" : text;
}

/** Milliseconds from `retry-after-ms` / `retry-after` headers, if present and sane. */
function retryAfter(headers: Headers | undefined): number | null {
  if (!headers) return null;
  const ms = Number(headers.get("retry-after-ms"));
  if (headers.has("retry-after-ms") && Number.isFinite(ms) && ms >= 0) return ms;
  const value = headers.get("retry-after");
  if (value === null) return null;
  const seconds = Number(value);
  if (value.trim() !== "" && Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}

/**
 * Bytes asked for per read of a model response body. Deno reads a fetch body
 * into a fresh 64 KiB buffer per read unless the reader brings its own, so a
 * stream parked between deltas would hold 64 KiB and every small delta would
 * allocate it again; SSE events are far smaller than this.
 */
export const MODEL_READ_BYTES = 8 * 1024;

/**
 * The same response, its body read through a BYOB reader with buffers of
 * `size` bytes. Bodies that are not byte streams are returned unchanged.
 */
export function withSmallReads(response: Response, size = MODEL_READ_BYTES): Response {
  const body = response.body;
  if (body === null) return response;
  let reader: ReadableStreamBYOBReader;
  try {
    reader = body.getReader({ mode: "byob" });
  } catch {
    return response; // not a byte stream (an injected fetch in tests)
  }
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await reader.read(new Uint8Array(size));
      if (done) controller.close();
      else if (value.byteLength > 0) controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return new Response(stream, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/** Pause that ends early, without leaving a timer behind, when `signal` aborts. */
function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Streams outcomes from OpenAI (or an OpenAI-compatible server).
 *
 * @example
 * ```ts
 * const llm = new OpenAiProvider({
 *   apiKey: "sk-…", baseURL: null, model: "gpt-5.1", api: "responses",
 *   timeoutMs: 60_000, maxRetries: 2, maxOutputTokens: 4000,
 * });
 * for await (const chunk of llm.stream(request)) {
 *   if (chunk.type === "delta") console.log(chunk.text);
 * }
 * ```
 */
export class OpenAiProvider implements LlmProvider {
  /** Used as `gen_ai.system`. */
  readonly system = "openai";
  /** Requested model name. */
  readonly model: string;
  readonly #options: OpenAiProviderOptions;
  readonly #tracer: Tracer;
  readonly #random: () => number;
  readonly #server: { address: string; port: number };

  constructor(options: OpenAiProviderOptions) {
    this.#options = { ...options };
    this.model = options.model;
    this.#tracer = options.tracer ?? trace.getTracer("dungeon-master");
    this.#random = options.random ?? Math.random;
    const url = new URL(options.baseURL ?? DEFAULT_BASE_URL);
    this.#server = {
      address: url.hostname,
      port: url.port !== "" ? Number(url.port) : url.protocol === "https:" ? 443 : 80,
    };
  }

  /** Configured enough to try a request; never calls the network. */
  ready(): Promise<boolean> {
    const o = this.#options;
    return Promise.resolve(o.model !== "" && (o.apiKey !== null || o.baseURL !== null));
  }

  /**
   * Stream the raw completion text, then its token usage.
   *
   * The trace context is captured here, when the caller starts the request,
   * not when the stream is first read, so the span always hangs off the
   * caller's stage span.
   */
  stream(request: LlmRequest): AsyncIterable<LlmChunk> {
    return this.#run(request, context.active());
  }

  async *#run(request: LlmRequest, parent: Context): AsyncGenerator<LlmChunk> {
    const o = this.#options;
    const maxTokens = Math.max(1, Math.min(request.max_output_tokens, o.maxOutputTokens));
    const span = this.#tracer.startSpan(`chat ${o.model}`, {
      kind: SpanKind.CLIENT,
      attributes: {
        "gen_ai.system": this.system,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": o.model,
        "gen_ai.request.max_tokens": maxTokens,
        "gen_ai.output.type": "json",
        "server.address": this.#server.address,
        "server.port": this.#server.port,
        "dm.llm.api": o.api,
      },
    }, parent);
    const spanContext = trace.setSpan(parent, span);
    let attempts = 0;
    try {
      for (;;) {
        attempts++;
        const state: AttemptState = { delivered: false };
        try {
          yield* this.#attempt(request, maxTokens, span, spanContext, state);
          return;
        } catch (error) {
          const failure = this.#classify(error, attempts);
          const retriesLeft = o.maxRetries - (attempts - 1);
          if (!failure.retryable || state.delivered || retriesLeft <= 0) throw failure.error;
          const delay = this.#backoff(attempts, failure.retryAfterMs);
          span.addEvent("retry", {
            "dm.llm.attempt": attempts,
            "dm.llm.retry_delay_ms": delay,
            "dm.llm.retry_reason": failure.error.message,
          });
          await this.#pause(delay, request.signal);
        }
      }
    } catch (error) {
      const dmError = error instanceof DmError
        ? error
        : new DmError("llm_error", "The model call failed unexpectedly.", { cause: error });
      span.setAttribute("error.type", dmError.type);
      span.recordException(dmError);
      span.setStatus({ code: SpanStatusCode.ERROR, message: dmError.message });
      throw dmError;
    } finally {
      span.setAttribute("dm.llm.attempts", attempts);
      span.end();
    }
  }

  /** One HTTP request and its stream. Throws raw errors; {@link #classify} maps them. */
  async *#attempt(
    request: LlmRequest,
    maxTokens: number,
    span: Span,
    spanContext: Context,
    state: AttemptState,
  ): AsyncGenerator<LlmChunk> {
    const o = this.#options;
    if (request.signal.aborted) throw new DmError("cancelled");
    const abort = new AbortController();
    let stopped: "timeout" | "cancelled" | null = null;
    let received = false;
    const onCancel = () => {
      stopped ??= "cancelled";
      abort.abort();
    };
    request.signal.addEventListener("abort", onCancel, { once: true });
    // One idle timer per attempt. Deltas only move `lastActivity`; when the
    // timer fires early it re-arms for the time left, so a stream costs one
    // timer per DM_LLM_TIMEOUT_MS instead of one per delta. While the consumer
    // holds a delta (`paused`) the clock does not run.
    let timer: ReturnType<typeof setTimeout> | undefined;
    let lastActivity = performance.now();
    let paused = false;
    const check = () => {
      const idle = paused ? 0 : performance.now() - lastActivity;
      if (idle >= o.timeoutMs) {
        timer = undefined;
        stopped ??= "timeout";
        abort.abort();
        return;
      }
      timer = setTimeout(check, o.timeoutMs - idle);
    };
    const arm = () => {
      lastActivity = performance.now();
      paused = false;
      timer ??= setTimeout(check, o.timeoutMs);
    };
    // Raised whenever our own abort ended the attempt, however the SDK surfaced it.
    const stoppedError = (): DmError | null => {
      if (stopped === "cancelled") return new DmError("cancelled");
      if (stopped === "timeout") {
        return new DmError(
          "llm_timeout",
          `The model sent no token for DM_LLM_TIMEOUT_MS (${o.timeoutMs} ms) ` +
            (received ? "after its last one." : "while we waited for the first one."),
        );
      }
      return null;
    };

    arm();
    try {
      const client = this.#client(spanContext);
      const chunks = o.api === "responses"
        ? this.#responses(client, request, maxTokens, abort.signal, span)
        : this.#chat(client, request, maxTokens, abort.signal, span);
      for await (const chunk of chunks) {
        if (chunk.type === "delta") {
          if (!received) {
            received = true;
            span.addEvent("first_token");
          }
          state.delivered = true;
        }
        // The consumer's own pace must not count as model silence.
        paused = true;
        yield chunk;
        arm();
      }
      const error = stoppedError();
      if (error) throw error;
    } catch (error) {
      throw stoppedError() ?? error;
    } finally {
      clearTimeout(timer);
      request.signal.removeEventListener("abort", onCancel);
      // Closes the upstream request if the consumer stopped reading early.
      abort.abort();
    }
  }

  /** A client whose requests carry the trace context of `spanContext`. */
  #client(spanContext: Context): OpenAI {
    const o = this.#options;
    const base = o.fetch ?? globalThis.fetch;
    const traced = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const headers = new Headers(init?.headers);
      propagation.inject(spanContext, headers, {
        set: (carrier, key, value) => carrier.set(key, value),
      });
      return base(input, { ...init, headers }).then((response) => withSmallReads(response));
    };
    return new OpenAI({
      apiKey: o.apiKey ?? "unused",
      baseURL: o.baseURL ?? DEFAULT_BASE_URL,
      // Retries are ours (only before the first delta), and so is the idle
      // timeout; the SDK's covers only the wait for headers and is a backstop.
      maxRetries: 0,
      timeout: o.timeoutMs,
      fetch: traced,
    });
  }

  async *#responses(
    client: OpenAI,
    request: LlmRequest,
    maxTokens: number,
    signal: AbortSignal,
    span: Span,
  ): AsyncGenerator<LlmChunk> {
    const events = await client.responses.create({
      model: this.model,
      instructions: request.system,
      input: request.prompt,
      stream: true,
      max_output_tokens: maxTokens,
      text: {
        format: {
          type: "json_schema",
          name: request.schema.name,
          schema: request.schema.json,
          strict: true,
        },
      },
    }, { signal });
    let chars = 0;
    let refusal = "";
    for await (const event of events) {
      switch (event.type) {
        case "response.created":
        case "response.in_progress":
          this.#responseModel(span, event.response.model);
          span.setAttribute("gen_ai.response.id", event.response.id);
          break;
        case "response.output_text.delta":
          if (event.delta !== "") {
            chars += event.delta.length;
            yield { type: "delta", text: event.delta };
          }
          break;
        case "response.refusal.delta":
          refusal += event.delta;
          break;
        case "response.completed": {
          const r = event.response;
          this.#responseModel(span, r.model);
          span.setAttribute("gen_ai.response.finish_reasons", ["stop"]);
          if (chars === 0) throw this.#empty(refusal, null);
          if (r.usage) {
            yield* this.#usage(span, {
              input_tokens: r.usage.input_tokens,
              output_tokens: r.usage.output_tokens,
            });
          }
          return;
        }
        case "response.incomplete": {
          const r = event.response;
          const reason = r.incomplete_details?.reason ?? "unknown";
          span.setAttribute("gen_ai.response.finish_reasons", [reason]);
          // Partial text still reaches the parser, whose fallbacks keep the
          // turn alive; with none at all there is nothing to salvage.
          if (chars === 0) throw this.#empty(refusal, reason);
          if (r.usage) {
            yield* this.#usage(span, {
              input_tokens: r.usage.input_tokens,
              output_tokens: r.usage.output_tokens,
            });
          }
          return;
        }
        case "response.failed": {
          const e = event.response.error;
          throw new DmError(
            "llm_error",
            `The model failed (${e?.code ?? "unknown"}): ${clip(e?.message ?? "no detail")}`,
          );
        }
        case "error":
          throw new DmError(
            "llm_error",
            `The model stream reported an error (${event.code ?? "unknown"}): ${
              clip(event.message)
            }`,
          );
      }
    }
    throw new StreamEndedEarly();
  }

  async *#chat(
    client: OpenAI,
    request: LlmRequest,
    maxTokens: number,
    signal: AbortSignal,
    span: Span,
  ): AsyncGenerator<LlmChunk> {
    const chunks = await client.chat.completions.create({
      model: this.model,
      messages: [
        { role: "system", content: request.system },
        { role: "user", content: request.prompt },
      ],
      stream: true,
      stream_options: { include_usage: true },
      max_completion_tokens: maxTokens,
      response_format: {
        type: "json_schema",
        json_schema: { name: request.schema.name, schema: request.schema.json, strict: true },
      },
    }, { signal });
    let chars = 0;
    let refusal = "";
    let finish: string | null = null;
    let usage: TokenUsage | null = null;
    for await (const chunk of chunks) {
      if (chunk.model) this.#responseModel(span, chunk.model);
      if (chunk.id) span.setAttribute("gen_ai.response.id", chunk.id);
      const choice = chunk.choices[0];
      const text = choice?.delta?.content;
      if (text) {
        chars += text.length;
        yield { type: "delta", text };
      }
      if (choice?.delta?.refusal) refusal += choice.delta.refusal;
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (chunk.usage) {
        usage = {
          input_tokens: chunk.usage.prompt_tokens,
          output_tokens: chunk.usage.completion_tokens,
        };
      }
    }
    // `[DONE]` and a clean close look alike once the SDK is done; only a
    // finish reason proves the model finished.
    if (finish === null) throw new StreamEndedEarly();
    span.setAttribute("gen_ai.response.finish_reasons", [finish]);
    if (chars === 0) throw this.#empty(refusal, finish === "stop" ? null : finish);
    if (usage) yield* this.#usage(span, usage);
  }

  #responseModel(span: Span, model: string | undefined): void {
    if (model) span.setAttribute("gen_ai.response.model", model);
  }

  *#usage(span: Span, usage: TokenUsage): Generator<LlmChunk> {
    span.setAttribute("gen_ai.usage.input_tokens", usage.input_tokens);
    span.setAttribute("gen_ai.usage.output_tokens", usage.output_tokens);
    yield { type: "usage", usage };
  }

  /** The completion finished without any text. */
  #empty(refusal: string, reason: string | null): DmError {
    if (refusal !== "") {
      return new DmError("llm_response_error", `The model refused: ${clip(refusal)}`);
    }
    if (reason === "max_output_tokens" || reason === "length") {
      return new DmError(
        "llm_response_error",
        `The model used all DM_LLM_MAX_OUTPUT_TOKENS (${this.#options.maxOutputTokens}) ` +
          "before writing any text.",
      );
    }
    return new DmError(
      "llm_response_error",
      reason === null
        ? "The model returned no text."
        : `The model returned no text (finish reason: ${reason}).`,
    );
  }

  /** Map anything an attempt threw to our error, and say whether to retry. */
  #classify(error: unknown, attempts: number): Failure {
    const o = this.#options;
    const tries = attempts === 1 ? "" : ` after ${attempts} attempts`;
    const fail = (e: DmError, retryable = false, retryAfterMs: number | null = null): Failure => ({
      error: e,
      retryable,
      retryAfterMs,
    });
    if (error instanceof DmError) return fail(error);
    const where = o.baseURL ?? DEFAULT_BASE_URL;
    if (error instanceof APIUserAbortError) return fail(new DmError("cancelled"));
    if (error instanceof APIConnectionTimeoutError) {
      return fail(
        new DmError(
          "llm_timeout",
          `The model did not answer within DM_LLM_TIMEOUT_MS (${o.timeoutMs} ms).`,
          { cause: error },
        ),
      );
    }
    if (error instanceof APIConnectionError) {
      const cause = error.cause instanceof Error ? `: ${clip(error.cause.message)}` : "";
      return fail(
        new DmError(
          "llm_error",
          `Could not connect to the model at OPENAI_BASE_URL (${where})${tries}${cause}`,
          { cause: error },
        ),
        true,
      );
    }
    if (error instanceof APIError) {
      const status = error.status;
      const code = error.code ? ` ${error.code}` : "";
      const upstream = clip(
        String((error.error as { message?: unknown } | undefined)?.message ?? ""),
      );
      if (status === undefined) {
        return fail(
          new DmError("llm_error", `The model stream reported an error${code}: ${upstream}`, {
            cause: error,
          }),
        );
      }
      if (status === 401 || status === 403) {
        // The upstream text can echo part of the key, so it stays in `cause`.
        return fail(
          new DmError(
            "llm_error",
            `The model API refused our credentials (HTTP ${status}${code}): check OPENAI_API_KEY.`,
            { cause: error },
          ),
        );
      }
      if (status === 400 || status === 404 || status === 422) {
        return fail(
          new DmError(
            "llm_error",
            `The model API rejected the request (HTTP ${status}${code}): check DM_LLM_MODEL ` +
              `(${o.model}), DM_LLM_API (${o.api}) and OPENAI_BASE_URL (${where}). ${upstream}`
                .trimEnd(),
            { cause: error },
          ),
        );
      }
      if (status === 429) {
        return fail(
          new DmError("llm_error", `The model API is rate limiting us (HTTP 429${code})${tries}.`, {
            cause: error,
          }),
          true,
          retryAfter(error.headers),
        );
      }
      if (status >= 500) {
        return fail(
          new DmError(
            "llm_error",
            `The model API failed (HTTP ${status})${tries}. ${upstream}`.trimEnd(),
            {
              cause: error,
            },
          ),
          true,
          retryAfter(error.headers),
        );
      }
      return fail(
        new DmError(
          "llm_error",
          `The model API answered HTTP ${status}${code}. ${upstream}`.trimEnd(),
          {
            cause: error,
          },
        ),
      );
    }
    if (error instanceof StreamEndedEarly) {
      return fail(
        new DmError("llm_error", `The model stream ended early${tries}.`, { cause: error }),
        true,
      );
    }
    if (error instanceof SyntaxError) {
      return fail(
        new DmError("llm_error", "The model stream was malformed.", { cause: error }),
      );
    }
    // Anything else came from the transport while reading the body: the
    // connection dropped.
    const detail = error instanceof Error ? `: ${clip(error.message)}` : "";
    return fail(
      new DmError("llm_error", `The connection to the model was lost${tries}${detail}`, {
        cause: error,
      }),
      true,
    );
  }

  /** Exponential backoff with jitter, or the server's `Retry-After` when it gave one. */
  #backoff(attempts: number, retryAfterMs: number | null): number {
    if (retryAfterMs !== null) return Math.min(retryAfterMs, RETRY_AFTER_CAP_MS);
    const step = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (attempts - 1));
    // Half fixed, half random: spreads clients apart without ever retrying at once.
    return Math.round(step / 2 + this.#random() * (step / 2));
  }

  /** Wait before a retry; a cancelled request stops waiting at once. */
  async #pause(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw new DmError("cancelled");
    const sleep = this.#options.sleep;
    if (!sleep) {
      await abortableSleep(ms, signal);
    } else {
      let onAbort = () => {};
      const aborted = new Promise<void>((resolve) => {
        onAbort = resolve;
        signal.addEventListener("abort", onAbort, { once: true });
      });
      try {
        await Promise.race([sleep(ms), aborted]);
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    }
    if (signal.aborted) throw new DmError("cancelled");
  }
}

/** Build the provider from settings. */
export function createOpenAiProvider(config: Config, tracer?: Tracer): OpenAiProvider {
  return new OpenAiProvider({
    apiKey: config.OPENAI_API_KEY,
    baseURL: config.OPENAI_BASE_URL,
    model: config.DM_LLM_MODEL,
    api: config.DM_LLM_API,
    timeoutMs: config.DM_LLM_TIMEOUT_MS,
    maxRetries: config.DM_LLM_MAX_RETRIES,
    maxOutputTokens: config.DM_LLM_MAX_OUTPUT_TOKENS,
    tracer,
  });
}
