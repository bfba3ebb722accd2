/**
 * `sse`: the Server-Sent Events transport.
 *
 * - `POST /turn/stream` takes the `POST /turn` body, submits the turn and
 *   streams its events.
 * - `GET /turns/{turn_id}/events` replays a turn's events from the start or
 *   after `Last-Event-ID` (or `?after=`), then follows it live until it ends.
 *
 * Both only follow the engine's event log (`engine.follow`); nothing here
 * runs any part of a turn. Each event is one frame, `id: <seq>` plus
 * `data: <event json>`; a stream ends with `data: [DONE]`. Errors found
 * before the stream starts are ordinary HTTP error responses.
 *
 * @module
 */
import { DmError } from "../../src/errors.ts";
import { readJson } from "../../src/http/body.ts";
import { idempotencyKey, pathId } from "../../src/http/core_routes.ts";
import { TurnBody } from "../../src/http/schemas.ts";
import type { Logger } from "../../src/log.ts";
import { definePlugin } from "../../src/plugin/api.ts";
import { isTerminal, type TurnEvent } from "../../src/shared/events.ts";
import { type ReleaseStream, sharedStreamLimiter } from "../../src/transport/limits.ts";
import type { TurnEngine } from "../../src/turn/engine.ts";

const encoder = new TextEncoder();

/** The frame that ends every stream. */
export const DONE_FRAME = "data: [DONE]\n\n";
/** The keep-alive comment sent every `DM_SSE_HEARTBEAT_MS`. */
export const HEARTBEAT_FRAME = ": heartbeat\n\n";

/** One event as an SSE frame. JSON never contains a raw newline, so one `data:` line suffices. */
export function sseFrame(event: TurnEvent): string {
  return `id: ${event.seq}\ndata: ${JSON.stringify(event)}\n\n`;
}

const SEQ = /^\d{1,15}$/;

/**
 * Where a replay starts. `Last-Event-ID` wins over `?after=`: a browser
 * EventSource keeps the original URL when it reconnects but sends the header
 * with the last id it saw, which is the more recent position.
 */
export function afterSeq(request: Request, url: URL): number {
  // Only HTTP whitespace (space, tab) surrounds a header value; String#trim
  // would also strip Unicode spaces and accept e.g. "5\u00a0" as 5.
  const header = request.headers.get("last-event-id")?.replace(/^[ \t]+|[ \t]+$/g, "") ?? "";
  const fromHeader = header !== "";
  const raw = fromHeader ? header : url.searchParams.get("after");
  if (raw === null || raw === "") return 0;
  if (!SEQ.test(raw)) {
    throw new DmError(
      "validation_error",
      `${fromHeader ? "Last-Event-ID" : "after"} must be an event seq (an integer ≥ 0)`,
    );
  }
  return Number(raw);
}

interface StreamOptions {
  engine: TurnEngine;
  logger: Logger;
  turn_id: string;
  events: AsyncIterable<TurnEvent>;
  /** Aborts the follow when the client goes away. */
  abort: AbortController;
  release: ReleaseStream;
  heartbeatMs: number;
}

/**
 * The response body: frames pulled from the event log one at a time, so a
 * slow reader holds back the reads instead of piling frames up in memory.
 */
function eventStream(o: StreamOptions): ReadableStream<Uint8Array> {
  const iterator = o.events[Symbol.asyncIterator]();
  let closed = false;
  let ended = false;
  let heartbeat: ReturnType<typeof setInterval> | undefined;

  // Shutdown needs nothing special: the engine drains every turn first, so
  // each followed turn ends and its stream closes after [DONE].
  const cleanup = () => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    o.release();
  };

  return new ReadableStream<Uint8Array>({
    start(controller) {
      heartbeat = setInterval(() => {
        // A frame still queued keeps the connection busy anyway, and skipping
        // keeps a stalled reader from collecting heartbeats in memory.
        if (closed || (controller.desiredSize ?? 0) <= 0) return;
        try {
          controller.enqueue(encoder.encode(HEARTBEAT_FRAME));
        } catch { /* the stream closed between ticks */ }
      }, o.heartbeatMs);
    },
    async pull(controller) {
      if (closed) return;
      let next: IteratorResult<TurnEvent>;
      try {
        next = await iterator.next();
      } catch (e) {
        // The log could not be read (store failure); end the stream without
        // [DONE] so the client knows to resume rather than trust the end.
        o.logger.error("sse_follow_failed", { turn_id: o.turn_id, error: e });
        if (!closed) {
          controller.error(e);
          cleanup();
        }
        return;
      }
      if (closed) return;
      if (next.done) {
        controller.enqueue(encoder.encode(DONE_FRAME));
        controller.close();
        cleanup();
        return;
      }
      if (isTerminal(next.value)) ended = true;
      controller.enqueue(encoder.encode(sseFrame(next.value)));
    },
    async cancel() {
      // The client went away. Stop following first, so the engine sees this
      // subscriber gone before it decides (under the cancel policy) whether
      // anyone is still listening.
      const wasClosed = closed;
      cleanup();
      if (wasClosed) return;
      o.abort.abort();
      try {
        await iterator.return?.(undefined);
      } catch { /* nothing left to release */ }
      if (!ended) o.engine.clientDisconnected(o.turn_id, "sse");
    },
  }, { highWaterMark: 1 });
}

function sseResponse(turn_id: string, body: ReadableStream<Uint8Array>): Response {
  return new Response(body, {
    headers: {
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-cache",
      "X-Accel-Buffering": "no",
      "X-Turn-Id": turn_id,
    },
  });
}

/** The `sse` plugin. */
export default definePlugin({
  name: "sse",
  version: "1.0.0",
  setup(host) {
    const { engine, config, logger } = host;
    const limiter = sharedStreamLimiter(engine, config);

    /**
     * Follow a turn and answer the stream, holding the slot `release` gives
     * back. Anything thrown before the response exists is an HTTP error.
     */
    const stream = async (
      user_id: string,
      turn_id: string,
      after: number,
      release: ReleaseStream,
    ) => {
      const abort = new AbortController();
      try {
        const events = await engine.follow(user_id, turn_id, after, abort.signal);
        return sseResponse(
          turn_id,
          eventStream({
            engine,
            logger,
            turn_id,
            events,
            abort,
            release,
            heartbeatMs: config.DM_SSE_HEARTBEAT_MS,
          }),
        );
      } catch (e) {
        release();
        throw e;
      }
    };

    host.addRoute("POST", "/turn/stream", async (request, _params, info) => {
      const key = idempotencyKey(request);
      const body = await readJson(request, TurnBody);
      // Take the slot before submitting, so an overloaded server starts no
      // turn it cannot stream.
      const release = limiter.acquire("sse", { user_id: info.userId, ip: info.remoteAddr });
      let turn_id: string;
      try {
        const handle = await engine.submit({
          user_id: info.userId,
          character_id: body.character_id,
          user_action: body.user_action,
          transport: "sse",
          idempotency_key: key,
          traceparent: request.headers.get("traceparent"),
        });
        turn_id = handle.turn_id;
      } catch (e) {
        release();
        throw e;
      }
      // An idempotent retry replays the same turn from its start.
      return await stream(info.userId, turn_id, 0, release);
    });

    host.addRoute("GET", "/turns/:id/events", async (request, params, info) => {
      const turn_id = pathId(params.id, "turn_id");
      const after = afterSeq(request, new URL(request.url));
      const release = limiter.acquire("sse", { user_id: info.userId, ip: info.remoteAddr });
      return await stream(info.userId, turn_id, after, release);
    });
  },
});
