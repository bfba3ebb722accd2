/**
 * The WebSocket transport: a `turn` message submits (again with the same
 * idempotency key while the turn id is unknown), a `resume` message on a
 * new socket continues after the last seq. One socket per connection
 * attempt; a socket the server closes (1013 for a slow reader, or any drop)
 * is replaced by the reconnect loop.
 *
 * @module
 */
import { type ClientContext, endpoint } from "./context.ts";
import { DmClientError, errorFromWsRequestError, networkError } from "./errors.ts";
import { DroppedError, type TurnProgress } from "./turn.ts";

/** Close code of a socket whose authentication failed (docs/api.md). */
const WS_UNAUTHORIZED = 4401;

type SocketItem =
  | { kind: "open" }
  | { kind: "message"; data: unknown }
  | { kind: "close"; code: number; reason: string }
  | { kind: "idle" }
  | { kind: "abort" };

/** A FIFO whose reader waits for the next item. */
class Inbox {
  #items: SocketItem[] = [];
  #waiting: ((item: SocketItem) => void) | null = null;

  push(item: SocketItem): void {
    const waiting = this.#waiting;
    if (waiting) {
      this.#waiting = null;
      waiting(item);
    } else {
      this.#items.push(item);
    }
  }

  next(): Promise<SocketItem> {
    const item = this.#items.shift();
    if (item) return Promise.resolve(item);
    return new Promise((resolve) => this.#waiting = resolve);
  }
}

/** The `ws:`/`wss:` URL of `GET /ws` under the client's base URL. */
export function wsUrl(ctx: ClientContext): URL {
  const url = endpoint(ctx, "ws");
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

/**
 * One WebSocket connection. Yields the turn events it receives (parsed
 * JSON) until the server's `done` for this turn. Request-level errors
 * (`turn_id: null`) are thrown as `DmClientError`s.
 */
export async function* wsConnect(
  ctx: ClientContext,
  progress: TurnProgress,
  signal: AbortSignal,
): AsyncGenerator<unknown> {
  const Socket = ctx.WebSocket;
  if (!Socket) throw networkError("No WebSocket implementation is available.");
  const inbox = new Inbox();
  const onAbort = () => inbox.push({ kind: "abort" });
  signal.addEventListener("abort", onAbort, { once: true });
  let socket: WebSocket;
  try {
    socket = new Socket(wsUrl(ctx));
  } catch (e) {
    signal.removeEventListener("abort", onAbort);
    throw new DroppedError("could not open the WebSocket", { cause: e });
  }
  socket.onopen = () => inbox.push({ kind: "open" });
  socket.onmessage = (e: MessageEvent) => inbox.push({ kind: "message", data: e.data });
  socket.onclose = (e: CloseEvent) => inbox.push({ kind: "close", code: e.code, reason: e.reason });
  // An error event is always followed by close, which carries the facts.
  socket.onerror = () => {};

  // Without traffic a dead peer goes unnoticed: ping when quiet, give up when
  // even pings get no answer within the idle timeout.
  let lastHeard = Date.now();
  // No pings before the request: under DM_AUTH=jwt only auth may come first.
  let requested = false;
  const quiet = Math.max(50, Math.floor(ctx.idleTimeoutMs / 3));
  const pinger = setInterval(() => {
    const silent = Date.now() - lastHeard;
    if (silent >= ctx.idleTimeoutMs) inbox.push({ kind: "idle" });
    else if (silent >= quiet && requested && socket.readyState === 1) {
      try {
        socket.send(JSON.stringify({ type: "ping" }));
      } catch { /* closing; the close event follows */ }
    }
  }, quiet);

  const send = (message: Record<string, unknown>) => socket.send(JSON.stringify(message));
  /** Submit the turn (the same key again while its id is unknown) or resume it. */
  const sendRequest = () => {
    requested = true;
    if (progress.turnId !== null) {
      send({ type: "resume", turn_id: progress.turnId, after_seq: progress.lastSeq });
    } else if (progress.submit) {
      send({
        type: "turn",
        character_id: progress.submit.characterId,
        user_action: progress.submit.action,
        idempotency_key: progress.submit.idempotencyKey,
      });
    } else {
      throw new Error("followTurn needs a turn id");
    }
  };
  try {
    let opened = false;
    while (true) {
      if (signal.aborted) throw signal.reason;
      const item = await inbox.next();
      lastHeard = Date.now();
      switch (item.kind) {
        case "abort":
          throw signal.reason;
        case "idle":
          throw new DroppedError(`no answer for ${ctx.idleTimeoutMs} ms`);
        case "close":
          if (item.code === WS_UNAUTHORIZED) {
            // DM_AUTH=jwt refused the socket (no token, or a bad one):
            // reconnecting with the same token cannot help.
            throw new DmClientError({
              type: "unauthorized",
              message: item.reason || "The WebSocket was refused: authentication failed.",
            });
          }
          throw new DroppedError(
            opened
              ? `the WebSocket closed (${item.code}${item.reason ? ` ${item.reason}` : ""})`
              : "the WebSocket could not connect",
          );
        case "open": {
          opened = true;
          // Under DM_AUTH=jwt the first message must be auth, and nothing
          // else may follow until the server answers it.
          const token = await ctx.token();
          if (token) send({ type: "auth", token });
          else sendRequest();
          break;
        }
        case "message": {
          if (typeof item.data !== "string") continue;
          let value: Record<string, unknown>;
          try {
            value = JSON.parse(item.data);
          } catch (e) {
            throw new DroppedError("a message is not JSON", { cause: e });
          }
          if (value === null || typeof value !== "object") continue;
          if (value.type === "pong") continue;
          if (value.type === "authenticated") {
            sendRequest();
            continue;
          }
          if (value.type === "done") {
            if (progress.turnId === null || value.turn_id === progress.turnId) return;
            continue;
          }
          if (value.type === "error" && (value.turn_id === null || value.seq === 0)) {
            // Not about a turn: the message could not be carried out.
            throw errorFromWsRequestError(value);
          }
          yield value;
        }
      }
    }
  } finally {
    clearInterval(pinger);
    signal.removeEventListener("abort", onAbort);
    socket.onopen = socket.onmessage = socket.onclose = null;
    if (socket.readyState === 0 || socket.readyState === 1) {
      try {
        socket.close(1000, "done");
      } catch { /* already closing */ }
    }
  }
}
