/**
 * The HTTP client of the journey-log service: one method, {@link JourneyLogClient.call},
 * that sends one contract operation with the acting user's `X-User-Id`, a
 * per-attempt timeout, a CLIENT span per attempt and the W3C trace context,
 * retries what is safe to retry, and validates the answer with our schemas.
 *
 * Failures come out as `DmError`s: `journey_log_timeout` when the last
 * attempt timed out, `journey_log_error` for everything else (connection
 * errors, 5xx, unexpected statuses, bodies that do not match the contract).
 * Statuses a caller declares as answers (404, 403, 409…) are returned, not
 * thrown, so the adapter decides what they mean.
 *
 * @module
 */
import {
  type Context,
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import type { z } from "zod";
import { DmError } from "../../errors.ts";
import { traceparentFromContext } from "../../telemetry/propagation.ts";

/** Options of {@link JourneyLogClient}. */
export interface JourneyLogClientOptions {
  /** Base URL of the service, e.g. `http://journey-log:8080`; a path prefix is kept. */
  baseUrl: string;
  /** Limit of one attempt, from sending the request to the end of the body. */
  timeoutMs: number;
  /** Extra attempts of a retryable call after the first one. */
  retries: number;
  fetch?: typeof fetch;
  /** Waits between attempts; tests record instead of waiting. */
  sleep?: (ms: number) => Promise<void>;
  tracer?: Tracer;
}

/** HTTP methods the contract uses. */
export type Method = "GET" | "POST" | "PUT" | "DELETE";

/** One contract operation to send. */
export interface Call<T> {
  method: Method;
  /** Path template as in the contract, e.g. `/characters/{character_id}/context`. */
  route: string;
  /** Values of the template's `{…}` parameters. */
  params?: Record<string, string>;
  query?: Record<string, string | number | boolean | undefined>;
  /** The acting user, sent as `X-User-Id`; null only for calls with no user (`/health`). */
  userId: string | null;
  /** JSON body. */
  body?: unknown;
  /** The success status and the schema of its body. */
  success: number;
  schema: z.ZodType<T>;
  /** Other statuses the caller handles itself (returned without a body). */
  answers?: readonly number[];
  /**
   * Whether the operation may be sent again after a 5xx, a timeout or a
   * connection error. Only for reads and writes that are idempotent by
   * contract: a retried append would store the turn twice.
   */
  retry: boolean;
}

/** What a call answered. */
export type Reply<T> =
  | { ok: true; status: number; body: T }
  | { ok: false; status: number };

/** First wait between attempts; doubled each time up to {@link MAX_BACKOFF_MS}. */
export const BASE_BACKOFF_MS = 100;
/** Longest wait between attempts. */
export const MAX_BACKOFF_MS = 2000;

/** Why one attempt failed. */
interface Failure {
  kind: "timeout" | "connection" | "status" | "malformed";
  status?: number;
  retryable: boolean;
  detail: string;
}

const TIMEOUT = Symbol("journey-log timeout");

function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The journey-log HTTP client. */
export class JourneyLogClient {
  readonly #base: URL;
  /** Path prefix of the base URL without its trailing slash, e.g. `/api` or ``. */
  readonly #prefix: string;
  readonly #options: JourneyLogClientOptions;
  readonly #fetch: typeof fetch;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #tracer: Tracer;

  constructor(options: JourneyLogClientOptions) {
    this.#base = new URL(options.baseUrl);
    // Keep a path prefix such as `/api`: routes are appended, not resolved.
    this.#prefix = this.#base.pathname.replace(/\/+$/, "");
    this.#options = options;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#sleep = options.sleep ?? defaultSleep;
    this.#tracer = options.tracer ?? trace.getTracer("dungeon-master");
  }

  /** The full URL of a call, with its parameters encoded. */
  url(call: Pick<Call<unknown>, "route" | "params" | "query">): URL {
    const path = call.route.replace(/\{(\w+)\}/g, (_, name: string) => {
      const value = call.params?.[name];
      if (value === undefined) throw new Error(`journey-log route ${call.route}: no ${name}`);
      return encodeURIComponent(value);
    });
    const url = new URL(this.#base.href);
    url.pathname = `${this.#prefix}${path}`;
    url.search = "";
    url.hash = "";
    for (const [key, value] of Object.entries(call.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    return url;
  }

  /**
   * Send one operation. Declared answers come back as replies; anything
   * else throws.
   *
   * @throws DmError `journey_log_timeout` or `journey_log_error`.
   */
  async call<T>(call: Call<T>): Promise<Reply<T>> {
    const url = this.url(call);
    // Captured once so every attempt's span hangs off the caller's span.
    const parent = context.active();
    const attempts = 1 + (call.retry ? this.#options.retries : 0);
    let failure: Failure | null = null;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) {
        await this.#sleep(Math.min(BASE_BACKOFF_MS * 2 ** (attempt - 1), MAX_BACKOFF_MS));
      }
      const result = await this.#attempt(call, url, parent, attempt);
      if (!("kind" in result)) return result;
      failure = result;
      if (!failure.retryable) break;
    }
    throw this.#error(call, failure!, attempts);
  }

  #error(call: Call<unknown>, failure: Failure, attempts: number): DmError {
    const what = `journey-log ${call.method} ${call.route}`;
    const tries = call.retry && failure.retryable && attempts > 1
      ? ` after ${attempts} attempts`
      : "";
    if (failure.kind === "timeout") {
      return new DmError(
        "journey_log_timeout",
        `${what} timed out after ${this.#options.timeoutMs} ms${tries}`,
      );
    }
    return new DmError("journey_log_error", `${what} ${failure.detail}${tries}`);
  }

  async #attempt<T>(
    call: Call<T>,
    url: URL,
    parent: Context,
    attempt: number,
  ): Promise<Reply<T> | Failure> {
    const span = this.#tracer.startSpan(`${call.method} ${call.route}`, {
      kind: SpanKind.CLIENT,
      attributes: {
        "http.request.method": call.method,
        "url.full": url.href,
        "url.template": call.route,
        "server.address": url.hostname,
        "server.port": Number(url.port || (url.protocol === "https:" ? 443 : 80)),
        ...(attempt > 0 ? { "http.request.resend_count": attempt } : {}),
      },
    }, parent);
    const headers = new Headers({ accept: "application/json" });
    if (call.userId !== null) headers.set("x-user-id", call.userId);
    if (call.body !== undefined) headers.set("content-type", "application/json");
    const spanContext = trace.setSpan(parent, span);
    propagation.inject(spanContext, headers, {
      set: (carrier, key, value) => carrier.set(key, value),
    });
    // Without the SDK no global propagator is registered; the W3C one still
    // carries the caller's trace to the service, as the engine does inbound.
    if (!headers.has("traceparent")) {
      const traceparent = traceparentFromContext(spanContext);
      if (traceparent !== null) headers.set("traceparent", traceparent);
    }
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(TIMEOUT), this.#options.timeoutMs);
    try {
      let response: Response;
      let text: string;
      try {
        response = await this.#fetch(url, {
          method: call.method,
          headers,
          body: call.body === undefined ? undefined : JSON.stringify(call.body),
          signal: abort.signal,
        });
        span.setAttribute("http.response.status_code", response.status);
        // Read under the same timer: a body that never ends is a timeout too.
        text = await response.text();
      } catch (error) {
        const timedOut = abort.signal.aborted && abort.signal.reason === TIMEOUT;
        return this.#failed(span, {
          kind: timedOut ? "timeout" : "connection",
          retryable: call.retry,
          detail: timedOut ? "timed out" : `could not be reached (${errorName(error)})`,
        });
      }
      const status = response.status;
      if (status === call.success) {
        const parsed = call.schema.safeParse(
          status === 204 || text === "" ? undefined : json(text),
        );
        if (!parsed.success) {
          return this.#failed(span, {
            kind: "malformed",
            status,
            retryable: false,
            detail: "answered a body that does not match the contract",
          });
        }
        span.end();
        return { ok: true, status, body: parsed.data };
      }
      if (call.answers?.includes(status)) {
        if (status >= 400) span.setAttribute("error.type", String(status));
        span.end();
        return { ok: false, status };
      }
      return this.#failed(span, {
        kind: "status",
        status,
        retryable: call.retry && status >= 500,
        detail: `answered HTTP ${status}`,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  #failed(span: ReturnType<Tracer["startSpan"]>, failure: Failure): Failure {
    const type = failure.kind === "status"
      ? String(failure.status)
      : failure.kind === "malformed"
      ? "malformed_response"
      : failure.kind;
    span.setAttribute("error.type", type);
    span.setStatus({ code: SpanStatusCode.ERROR, message: failure.detail });
    span.end();
    return failure;
  }
}

/** Parse JSON, mapping bad JSON to a value no schema of ours accepts. */
function json(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return Symbol("invalid JSON");
  }
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : typeof error;
}
