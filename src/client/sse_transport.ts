/**
 * The SSE transport: `POST /turn/stream` submits a turn and streams it;
 * `GET /turns/{id}/events` with `Last-Event-ID` resumes it. Read with
 * `fetch` and the parser in `sse.ts`, because EventSource can neither POST
 * nor send an `Idempotency-Key`.
 *
 * @module
 */
import { authHeaders, type ClientContext, endpoint } from "./context.ts";
import { errorFromResponse } from "./errors.ts";
import { readSse } from "./sse.ts";
import { DroppedError, type TurnProgress } from "./turn.ts";

/** Turn a caller-visible silence into an abort of the request. */
function idleWatch(ms: number, abort: AbortController): { touch(): void; stop(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const touch = () => {
    clearTimeout(timer);
    timer = setTimeout(
      () => abort.abort(new DroppedError(`no data for ${ms} ms`)),
      ms,
    );
  };
  touch();
  return { touch, stop: () => clearTimeout(timer) };
}

/**
 * One SSE connection: submit (first time, or again with the same
 * idempotency key while the turn id is unknown) or resume after the last
 * seq. Yields the parsed JSON of each `data:` frame up to `[DONE]`.
 */
export async function* sseConnect(
  ctx: ClientContext,
  progress: TurnProgress,
  signal: AbortSignal,
): AsyncGenerator<unknown> {
  const abort = new AbortController();
  const forward = () => abort.abort(signal.reason);
  if (signal.aborted) forward();
  signal.addEventListener("abort", forward, { once: true });
  const idle = idleWatch(ctx.idleTimeoutMs, abort);
  try {
    let response: Response;
    if (progress.turnId === null) {
      const submit = progress.submit;
      if (!submit) throw new Error("followTurn needs a turn id");
      response = await ctx.fetch(endpoint(ctx, "turn/stream"), {
        method: "POST",
        headers: await authHeaders(ctx, {
          "Content-Type": "application/json",
          Accept: "text/event-stream",
          "Idempotency-Key": submit.idempotencyKey,
        }),
        body: JSON.stringify({ character_id: submit.characterId, user_action: submit.action }),
        signal: abort.signal,
      });
    } else {
      response = await ctx.fetch(
        endpoint(ctx, `turns/${encodeURIComponent(progress.turnId)}/events`),
        {
          headers: await authHeaders(ctx, {
            Accept: "text/event-stream",
            "Last-Event-ID": String(progress.lastSeq),
          }),
          signal: abort.signal,
        },
      );
    }
    idle.touch();
    if (!response.ok) throw await errorFromResponse(response);
    if (!response.body) throw new DroppedError("the response has no body");
    const turnId = response.headers.get("x-turn-id");
    if (turnId && progress.turnId === null) progress.turnId = turnId.toLowerCase();
    for await (const message of readSse(response.body, idle.touch)) {
      if (message.data === "[DONE]") return;
      if (message.event !== "message") continue;
      let value: unknown;
      try {
        value = JSON.parse(message.data);
      } catch (e) {
        throw new DroppedError("a frame is not JSON", { cause: e });
      }
      yield value;
    }
    // Without [DONE] the end is not the turn's: the server asks us to resume.
    throw new DroppedError("the stream ended without [DONE]");
  } catch (e) {
    // An abort by the idle watch is a dead connection, not the caller's stop.
    if (abort.signal.aborted && !signal.aborted && abort.signal.reason instanceof DroppedError) {
      throw abort.signal.reason;
    }
    throw e;
  } finally {
    idle.stop();
    signal.removeEventListener("abort", forward);
    abort.abort();
  }
}
