/**
 * The dungeon-master client: a dependency-free ES module for browsers and
 * Deno. It creates and reads characters and plays turns over Server-Sent
 * Events or WebSocket, yielding the typed events of `shared/events.ts`.
 *
 * A turn stream survives dropped connections: it resumes after the last
 * `seq` it saw (SSE `Last-Event-ID`, WebSocket `resume`) with backoff, never
 * yields a `seq` twice, and submits with an `Idempotency-Key` so that its own
 * retries of the submission never play the turn twice. Failures are thrown
 * as {@link DmClientError}s typed by the server's error catalogue.
 *
 * @example In a browser (the game page serves this module at /static/client.js)
 * ```ts
 * import { createClient } from "/static/client.js";
 * const dm = createClient({ baseUrl: location.origin });
 * const { character_id } = await dm.createCharacter({ name: "Aria", race: "Elf", class_name: "Ranger" });
 * for await (const e of dm.playTurn(character_id, "I open the door", { transport: "websocket" })) {
 *   if (e.type === "token") output.append(e.content);
 * }
 * ```
 *
 * @example In Deno
 * ```ts
 * import { createClient, DmClientError } from "./src/client/mod.ts";
 * const dm = createClient({ baseUrl: "http://127.0.0.1:8080", token: Deno.env.get("DM_TOKEN") });
 * try {
 *   for await (const e of dm.playTurn(id, "look around")) console.log(e.seq, e.type);
 * } catch (e) {
 *   if (e instanceof DmClientError && e.type === "rate_limited") console.log(e.retryAfterSeconds);
 * }
 * ```
 *
 * @module
 */
import { DEFAULT_RETRY, type RetryPolicy } from "./backoff.ts";
import {
  authHeaders,
  type ClientContext,
  endpoint,
  type FetchLike,
  type TokenSource,
  type WebSocketLike,
} from "./context.ts";
import { errorFromResponse, networkError } from "./errors.ts";
import { sseConnect } from "./sse_transport.ts";
import { type ConnectAttempt, ReconnectingTurnStream } from "./turn.ts";
import type {
  CharacterSheet,
  CreatedCharacter,
  FollowOptions,
  NewCharacterInput,
  PlayOptions,
  Transport,
  TurnRecordView,
  TurnStream,
} from "./types.ts";
import { wsConnect } from "./ws_transport.ts";

export type {
  CompleteEvent,
  ErrorEvent,
  StartEvent,
  TokenEvent,
  TurnEvent,
} from "../shared/events.ts";
export { isTerminal } from "../shared/events.ts";
export { ERROR_CATALOGUE, type ErrorType, isErrorType } from "../shared/errors.ts";
export { DmClientError, type DmClientErrorType } from "./errors.ts";
export { type SseMessage, SseParser } from "./sse.ts";
export { DEFAULT_RETRY, type RetryPolicy } from "./backoff.ts";
export type { FetchLike, TokenSource, WebSocketLike } from "./context.ts";
export type * from "./types.ts";

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** Where the service is, e.g. `location.origin` or `http://127.0.0.1:8080`. */
  baseUrl: string | URL;
  /**
   * A bearer token (or a function returning the current one) for
   * `DM_AUTH=jwt`, sent as `Authorization: Bearer` on HTTP requests and SSE
   * streams. WebSocket sockets carry no identity yet (the server closes them
   * with 4401 under `DM_AUTH=jwt`, reported as `unauthorized`): use SSE with
   * a token.
   */
  token?: TokenSource;
  /** Replaces the global `fetch`. */
  fetch?: FetchLike;
  /** Replaces the global `WebSocket`. */
  WebSocket?: WebSocketLike;
  /** Reconnect backoff; defaults to {@link DEFAULT_RETRY}. */
  retry?: Partial<RetryPolicy>;
  /**
   * Silence after which a stream is presumed dead and resumed. Defaults to
   * 45 s, three SSE heartbeats at the server's default interval.
   */
  idleTimeoutMs?: number;
}

/** A client bound to one server. */
export interface DmClient {
  /** `POST /characters`: create a character; answers its id and opening scene. */
  createCharacter(input: NewCharacterInput): Promise<CreatedCharacter>;
  /** `GET /characters/{id}`: status, location, quest, combat, places, recent turns. */
  getCharacter(characterId: string): Promise<CharacterSheet>;
  /** `GET /turns/{id}`: a turn's stored record. */
  getTurn(turnId: string): Promise<TurnRecordView>;
  /**
   * Play a turn and stream its events: `start`, `token`s, then `complete`
   * or `error`, after which iteration ends. Errors before the turn starts
   * are thrown as `DmClientError`s; a turn that fails after starting yields
   * its `error` event and ends. Aborting `signal` rejects with its reason
   * (the turn itself plays on; follow it later with {@link followTurn}).
   */
  playTurn(characterId: string, action: string, options?: PlayOptions): TurnStream;
  /** Follow a turn already submitted (after a reload, or `turn_in_progress`). */
  followTurn(turnId: string, options?: FollowOptions): TurnStream;
}

const CONNECT: Record<Transport, ConnectAttempt> = { sse: sseConnect, websocket: wsConnect };

function resolveToken(token: TokenSource | undefined): () => Promise<string | null> {
  if (token === undefined) return () => Promise.resolve(null);
  if (typeof token === "string") return () => Promise.resolve(token);
  return async () => (await token()) ?? null;
}

/**
 * Create a client.
 *
 * @example
 * ```ts
 * const dm = createClient({ baseUrl: "http://127.0.0.1:8080" });
 * const sheet = await dm.getCharacter(id);
 * ```
 */
export function createClient(options: ClientOptions): DmClient {
  const base = new URL(String(options.baseUrl));
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  const givenFetch = options.fetch ?? globalThis.fetch;
  const ctx: ClientContext = {
    base,
    // Called unbound, a browser's fetch throws "Illegal invocation".
    fetch: (input, init) => givenFetch.call(globalThis, input, init),
    WebSocket: options.WebSocket ?? (globalThis.WebSocket as WebSocketLike | undefined) ?? null,
    token: resolveToken(options.token),
    retry: { ...DEFAULT_RETRY, ...options.retry },
    idleTimeoutMs: options.idleTimeoutMs ?? 45_000,
  };

  async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await ctx.fetch(endpoint(ctx, path), {
        method,
        headers: await authHeaders(
          ctx,
          body === undefined ? { Accept: "application/json" } : {
            Accept: "application/json",
            "Content-Type": "application/json",
          },
        ),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw networkError(`${method} /${path} failed: ${(e as Error).message}`, e);
    }
    if (!response.ok) throw await errorFromResponse(response);
    return await response.json() as T;
  }

  function stream(
    transport: Transport | undefined,
    progress: ConstructorParameters<typeof ReconnectingTurnStream>[0]["progress"],
    options: FollowOptions | PlayOptions,
  ): TurnStream {
    const t = transport ?? "sse";
    if (!(t in CONNECT)) throw new TypeError(`Unknown transport "${t}"; use "sse" or "websocket".`);
    return new ReconnectingTurnStream({
      ctx,
      transport: t,
      connect: CONNECT[t],
      progress,
      signal: options.signal,
      onConnection: options.onConnection,
    });
  }

  return {
    createCharacter: (input) => request<CreatedCharacter>("POST", "characters", input),
    getCharacter: (id) => request<CharacterSheet>("GET", `characters/${encodeURIComponent(id)}`),
    getTurn: (id) => request<TurnRecordView>("GET", `turns/${encodeURIComponent(id)}`),
    playTurn(characterId, action, options = {}) {
      const idempotencyKey = options.idempotencyKey ?? crypto.randomUUID();
      return stream(options.transport, {
        turnId: null,
        lastSeq: 0,
        submit: { characterId, action, idempotencyKey },
      }, options);
    },
    followTurn(turnId, options = {}) {
      return stream(options.transport, {
        turnId,
        lastSeq: options.afterSeq ?? 0,
        submit: null,
      }, options);
    },
  };
}
