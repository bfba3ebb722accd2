/**
 * `websocket`: the WebSocket transport on `GET /ws`.
 *
 * A client sends JSON text messages (`turn`, `resume`, `ping`; see
 * `src/transport/ws_protocol.ts`) and receives the turn events of
 * `shared/events.ts` as text frames, then `{"type":"done"}` after each turn.
 * One socket plays any number of turns, one after another. Like every
 * transport it only submits to and follows the shared engine.
 *
 * @module
 */
import { DmError, toDmError } from "../../src/errors.ts";
import { describeIssue } from "../../src/http/body.ts";
import type { Logger } from "../../src/log.ts";
import { definePlugin } from "../../src/plugin/api.ts";
import { isTerminal, type TurnEvent } from "../../src/shared/events.ts";
import { type ReleaseStream, sharedStreamLimiter } from "../../src/transport/limits.ts";
import {
  MAX_WS_MESSAGE_BYTES,
  WS_CLOSE,
  WsAuthMessage,
  type WsDone,
  WsPingMessage,
  type WsRequestError,
  WsResumeMessage,
  type WsServerMessage,
  WsTurnMessage,
} from "../../src/transport/ws_protocol.ts";
import type { TurnEngine } from "../../src/turn/engine.ts";
import type { z } from "zod";

/**
 * How long a client may leave more than `DM_WS_MAX_BUFFERED_BYTES` unread
 * without reading any of it before it is closed with 1013. While the buffer
 * is over the limit nothing more is sent, so a slow reader costs at most the
 * limit plus one message; the grace only spares clients that are reading
 * but momentarily behind (a replay burst, a large `complete` event).
 */
export const WS_STALL_MS = 1000;
/** How often a full send buffer is checked for progress. */
const DRAIN_POLL_MS = 10;
/** Under `DM_AUTH=jwt`, how long a socket may stay open without authenticating. */
export const WS_AUTH_DEADLINE_MS = 10_000;

const encoder = new TextEncoder();

/** UTF-8 size of a message, measured only when its length leaves doubt. */
function tooBig(data: string | ArrayBuffer | Blob): boolean {
  if (typeof data !== "string") {
    return (data instanceof Blob ? data.size : data.byteLength) > MAX_WS_MESSAGE_BYTES;
  }
  // A UTF-16 code unit is 1 to 3 UTF-8 bytes (a surrogate pair is 4 for 2).
  if (data.length > MAX_WS_MESSAGE_BYTES) return true;
  if (data.length * 3 <= MAX_WS_MESSAGE_BYTES) return false;
  return encoder.encode(data).byteLength > MAX_WS_MESSAGE_BYTES;
}

type Parsed =
  | { kind: "auth"; token: string }
  | { kind: "turn"; message: z.output<typeof WsTurnMessage> }
  | { kind: "resume"; message: z.output<typeof WsResumeMessage> }
  | { kind: "ping" }
  | { kind: "invalid"; in_reply_to: string | null; error: DmError };

/** Parse and validate one client message with the shared schemas. */
export function parseClientMessage(text: string): Parsed {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return {
      kind: "invalid",
      in_reply_to: null,
      error: new DmError("validation_error", "The message is not valid JSON."),
    };
  }
  const type = typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as { type?: unknown }).type
    : undefined;
  if (typeof type !== "string") {
    return {
      kind: "invalid",
      in_reply_to: null,
      error: new DmError("validation_error", 'A message is a JSON object with a string "type".'),
    };
  }
  const invalid = (error: z.ZodError): Parsed => ({
    kind: "invalid",
    in_reply_to: type,
    error: new DmError("validation_error", describeIssue(error)),
  });
  switch (type) {
    case "turn": {
      const parsed = WsTurnMessage.safeParse(value);
      return parsed.success ? { kind: "turn", message: parsed.data } : invalid(parsed.error);
    }
    case "resume": {
      const parsed = WsResumeMessage.safeParse(value);
      return parsed.success ? { kind: "resume", message: parsed.data } : invalid(parsed.error);
    }
    case "auth": {
      const parsed = WsAuthMessage.safeParse(value);
      return parsed.success ? { kind: "auth", token: parsed.data.token } : invalid(parsed.error);
    }
    case "ping": {
      const parsed = WsPingMessage.safeParse(value);
      return parsed.success ? { kind: "ping" } : invalid(parsed.error);
    }
    default:
      return {
        kind: "invalid",
        in_reply_to: type.slice(0, 50),
        error: new DmError(
          "validation_error",
          `Unknown message type "${type.slice(0, 50)}"; use auth, turn, resume or ping.`,
        ),
      };
  }
}

/** The error message for a client message that could not be carried out. */
export function requestError(error: DmError, in_reply_to: string | null): WsRequestError {
  return {
    type: "error",
    turn_id: null,
    seq: 0,
    timestamp: new Date().toISOString(),
    error_type: error.type,
    message: error.type === "internal_error" ? "An unexpected error occurred." : error.message,
    recoverable: error.recoverable,
    in_reply_to,
    details: { ...error.extra },
  };
}

interface ConnectionDeps {
  engine: TurnEngine;
  logger: Logger;
  /** The user when auth is off (`local`); null under `DM_AUTH=jwt` until `auth`. */
  user_id: string | null;
  /** Verify an `auth` token and return its user id (throws `unauthorized`). */
  verify(token: string): Promise<string>;
  /**
   * Move the socket's stream slot to the authenticated user, so per-user
   * caps count it; throws `rate_limited`/`overloaded` when that user is full.
   */
  rekey(user_id: string): void;
  maxBuffered: number;
  release: ReleaseStream;
}

/** The turn this socket is streaming; `turn_id` is null while it is being submitted. */
interface Following {
  turn_id: string | null;
  abort: AbortController;
}

/** One client connection. */
class Connection {
  readonly #socket: WebSocket;
  readonly #deps: ConnectionDeps;
  #following: Following | null = null;
  #closed = false;
  /**
   * Who the socket plays as. Null under `DM_AUTH=jwt` until an `auth`
   * message is verified: `/ws` is reached without a bearer header (browsers
   * cannot send one), so until then the socket is nobody.
   */
  #user: string | null;
  #authDeadline: ReturnType<typeof setTimeout> | undefined;
  #authenticating = false;

  constructor(socket: WebSocket, deps: ConnectionDeps) {
    this.#socket = socket;
    this.#deps = deps;
    this.#user = deps.user_id;
    if (this.#user === null) {
      this.#authDeadline = setTimeout(
        () => this.#close(WS_CLOSE.unauthorized, "Authenticate with {type:auth, token} first"),
        WS_AUTH_DEADLINE_MS,
      );
    }
    socket.binaryType = "arraybuffer";
    socket.onmessage = (e) => this.#onMessage(e.data);
    socket.onclose = () => this.#shutdown();
    // An error is always followed by close, which does the cleanup.
    socket.onerror = () => {};
  }

  #open(): boolean {
    return !this.#closed && this.#socket.readyState === WebSocket.OPEN;
  }

  /** Stop everything this connection does; the socket closed or is closing. */
  #shutdown(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#authDeadline);
    this.#following?.abort.abort();
    this.#deps.release();
  }

  #close(code: number, reason: string): void {
    const wasOpen = this.#open();
    this.#shutdown();
    if (!wasOpen) return;
    try {
      this.#socket.close(code, reason);
    } catch { /* already closing */ }
  }

  /** Send a small message now, ignoring the buffer limit (pongs and request errors). */
  #sendNow(message: WsServerMessage): void {
    if (!this.#open()) return;
    this.#socket.send(JSON.stringify(message));
  }

  /**
   * Send a turn message, first waiting while the send buffer is over the
   * limit. False when the socket closed, or was closed with 1013 because the
   * client stopped reading.
   */
  async #send(message: TurnEvent | WsDone): Promise<boolean> {
    if (!this.#open()) return false;
    if (this.#socket.bufferedAmount > this.#deps.maxBuffered) {
      if (!(await this.#drained())) {
        if (this.#open()) {
          this.#deps.logger.info("ws_slow_consumer", {
            buffered_bytes: this.#socket.bufferedAmount,
            turn_id: this.#following?.turn_id ?? null,
          });
          this.#close(WS_CLOSE.tryAgainLater, "Client too slow; resume the turn");
        }
        return false;
      }
    }
    this.#socket.send(JSON.stringify(message));
    return true;
  }

  /** Wait until the buffer is under the limit; false if it makes no progress for WS_STALL_MS. */
  async #drained(): Promise<boolean> {
    let lowest = this.#socket.bufferedAmount;
    let since = performance.now();
    while (this.#open()) {
      const buffered = this.#socket.bufferedAmount;
      if (buffered <= this.#deps.maxBuffered) return true;
      if (buffered < lowest) {
        lowest = buffered;
        since = performance.now();
      } else if (performance.now() - since >= WS_STALL_MS) {
        return false;
      }
      await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    }
    return false;
  }

  #onMessage(data: string | ArrayBuffer | Blob): void {
    if (!this.#open()) return;
    if (tooBig(data)) {
      this.#close(WS_CLOSE.messageTooBig, `Messages are limited to ${MAX_WS_MESSAGE_BYTES} bytes`);
      return;
    }
    if (typeof data !== "string" && this.#user === null) {
      this.#close(WS_CLOSE.unauthorized, "Authenticate with {type:auth, token} first");
      return;
    }
    if (typeof data !== "string") {
      this.#sendNow(
        requestError(new DmError("validation_error", "Send JSON messages as text frames."), null),
      );
      return;
    }
    const parsed = parseClientMessage(data);
    if (this.#user === null) {
      // Under DM_AUTH=jwt nothing but a well-formed auth message may come first.
      if (parsed.kind !== "auth" || this.#authenticating) {
        this.#close(WS_CLOSE.unauthorized, "Authenticate with {type:auth, token} first");
        return;
      }
      this.#authenticate(parsed.token);
      return;
    }
    switch (parsed.kind) {
      case "auth":
        // Auth is off (or already done: a socket's user never changes, so a
        // second token is not verified): answer so clients can always send it.
        this.#sendNow({ type: "authenticated", user_id: this.#user });
        return;
      case "invalid":
        this.#sendNow(requestError(parsed.error, parsed.in_reply_to));
        return;
      case "ping":
        this.#sendNow({ type: "pong" });
        return;
      case "turn":
      case "resume":
        this.#play(parsed).catch((e) => {
          this.#deps.logger.error("ws_failed", { error: e });
          this.#close(WS_CLOSE.internalError, "Internal error");
        });
        return;
    }
  }

  #authenticate(token: string): void {
    this.#authenticating = true;
    this.#deps.verify(token).then((user_id) => {
      if (!this.#open()) return;
      try {
        this.#deps.rekey(user_id);
      } catch (e) {
        const error = toDmError(e);
        this.#sendNow(requestError(error, "auth"));
        this.#close(WS_CLOSE.tryAgainLater, error.message.slice(0, 100));
        return;
      }
      clearTimeout(this.#authDeadline);
      this.#user = user_id;
      this.#sendNow({ type: "authenticated", user_id });
    }).catch(() => {
      this.#close(WS_CLOSE.unauthorized, "Invalid token");
    }).finally(() => {
      this.#authenticating = false;
    });
  }

  /** Submit (for `turn`) or find (for `resume`) a turn and stream it, then `done`. */
  async #play(
    parsed: Extract<Parsed, { kind: "turn" | "resume" }>,
  ): Promise<void> {
    const { engine } = this.#deps;
    const user_id = this.#user!;
    if (this.#following) {
      const current = this.#following.turn_id;
      this.#sendNow(requestError(
        new DmError(
          "turn_in_progress",
          current
            ? `This connection is streaming turn ${current}; wait for its done message or open another connection.`
            : "This connection is starting a turn; wait for its done message or open another connection.",
          { extra: { turn_id: current } },
        ),
        parsed.kind,
      ));
      return;
    }
    const following: Following = { turn_id: null, abort: new AbortController() };
    this.#following = following;
    try {
      let after = 0;
      if (parsed.kind === "turn") {
        const m = parsed.message;
        const handle = await engine.submit({
          user_id,
          character_id: m.character_id,
          user_action: m.user_action,
          transport: "websocket",
          idempotency_key: m.idempotency_key ?? null,
          traceparent: m.traceparent ?? null,
        });
        following.turn_id = handle.turn_id;
      } else {
        following.turn_id = parsed.message.turn_id;
        after = parsed.message.after_seq;
      }
      const turn_id = following.turn_id;
      if (this.#closed) {
        // The socket closed while the turn was being accepted.
        if (parsed.kind === "turn") engine.clientDisconnected(turn_id, "websocket");
        return;
      }
      const events = await engine.follow(user_id, turn_id, after, following.abort.signal);
      let ended = false;
      for await (const event of events) {
        if (!(await this.#send(event))) break;
        if (isTerminal(event)) ended = true;
      }
      // Leaving the loop released this subscriber; only now may the engine
      // judge (under the cancel policy) whether anyone is still listening.
      if (!ended && !this.#open()) {
        engine.clientDisconnected(turn_id, "websocket");
        return;
      }
      // Free the socket before `done`, so a client that answers `done` with
      // its next turn is not refused.
      this.#following = null;
      await this.#send({ type: "done", turn_id });
    } catch (e) {
      const error = toDmError(e);
      if (error.type === "internal_error") throw e;
      this.#sendNow(requestError(error, parsed.kind));
    } finally {
      if (this.#following === following) this.#following = null;
    }
  }
}

/** The `websocket` plugin. */
export default definePlugin({
  name: "websocket",
  version: "1.0.0",
  setup(host) {
    const { engine, config, logger } = host;
    const limiter = sharedStreamLimiter(engine, config);

    host.addRoute("GET", "/ws", (request, _params, info) => {
      if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
        throw new DmError("validation_error", "GET /ws needs a WebSocket upgrade request.");
      }
      // Refused before the upgrade, so a full server answers an ordinary 503.
      // Under jwt the socket is nobody yet: it counts against its address and
      // the process until `auth` moves the slot to its user.
      const anonymous = host.auth.mode === "jwt";
      let release = limiter.acquire("websocket", {
        user_id: anonymous ? `anonymous:${info.requestId}` : info.userId,
        ip: info.remoteAddr,
      });
      let upgraded: { socket: WebSocket; response: Response };
      try {
        upgraded = Deno.upgradeWebSocket(request);
      } catch (e) {
        release();
        throw new DmError("validation_error", "Invalid WebSocket handshake.", { cause: e });
      }
      new Connection(upgraded.socket, {
        engine,
        logger: logger.child({ request_id: info.requestId }),
        user_id: anonymous ? null : info.userId,
        verify: (token) => host.auth.verify(token),
        rekey: (user_id) => {
          release();
          release = limiter.acquire("websocket", { user_id, ip: info.remoteAddr });
        },
        maxBuffered: config.DM_WS_MAX_BUFFERED_BYTES,
        release: () => release(),
      });
      return upgraded.response;
    });
  },
});
