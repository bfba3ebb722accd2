/**
 * A small Server-Sent Events reader over a real `fetch` response, for tests
 * that need to see the frames exactly as sent (ids, comments, `[DONE]`) and
 * to drop the connection at a chosen point.
 */
import type { TurnEvent } from "../../src/shared/events.ts";

/** One frame: its `id:`, its `data:` and any comment line. */
export interface SseFrame {
  id: string | null;
  data: string | null;
  comment: string | null;
  /** Field names seen, to check that no `event:` line is sent. */
  fields: string[];
}

/** Reads frames one at a time from an SSE response. */
export class SseReader {
  readonly #reader: ReadableStreamDefaultReader<string>;
  readonly #abort: AbortController;
  #buffer = "";

  constructor(readonly response: Response, abort: AbortController) {
    this.#reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    this.#abort = abort;
  }

  /** The next frame, or null when the server ended the stream. */
  async next(): Promise<SseFrame | null> {
    while (true) {
      const end = this.#buffer.indexOf("\n\n");
      if (end >= 0) {
        const block = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        const frame: SseFrame = { id: null, data: null, comment: null, fields: [] };
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) {
            frame.comment = line.slice(1).trim();
            continue;
          }
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          frame.fields.push(field);
          if (field === "id") frame.id = value;
          if (field === "data") {
            frame.data = frame.data === null ? value : `${frame.data}\n${value}`;
          }
        }
        return frame;
      }
      const { value, done } = await this.#reader.read();
      if (done) {
        if (this.#buffer.trim() !== "") throw new Error(`stream ended mid-frame: ${this.#buffer}`);
        return null;
      }
      this.#buffer += value;
    }
  }

  /** The next turn event, skipping heartbeats; null at `[DONE]`. */
  async nextEvent(): Promise<TurnEvent | null> {
    while (true) {
      const frame = await this.next();
      if (frame === null) throw new Error("stream ended without [DONE]");
      if (frame.data === null) continue;
      if (frame.data === "[DONE]") return null;
      const event = JSON.parse(frame.data) as TurnEvent;
      if (frame.id !== String(event.seq)) throw new Error(`id ${frame.id} ≠ seq ${event.seq}`);
      return event;
    }
  }

  /** Events until `[DONE]`, then checks the server closed the stream. */
  async rest(): Promise<TurnEvent[]> {
    const out: TurnEvent[] = [];
    for (let e = await this.nextEvent(); e !== null; e = await this.nextEvent()) out.push(e);
    if ((await this.next()) !== null) throw new Error("frames after [DONE]");
    return out;
  }

  /** Events until (and including) the first that satisfies `until`. */
  async until(until: (e: TurnEvent) => boolean): Promise<TurnEvent[]> {
    const out: TurnEvent[] = [];
    while (true) {
      const e = await this.nextEvent();
      if (e === null) throw new Error("[DONE] before the awaited event");
      out.push(e);
      if (until(e)) return out;
    }
  }

  /** Drop the connection, as a client that goes away does. */
  async disconnect(): Promise<void> {
    this.#abort.abort();
    await this.#reader.cancel().catch(() => {});
  }
}

/** Open an SSE stream with `fetch`; non-2xx answers are returned unread. */
export async function openSse(
  url: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<SseReader> {
  const abort = new AbortController();
  const headers: Record<string, string> = { Accept: "text/event-stream", ...init.headers };
  if (init.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method: init.method ?? (init.body === undefined ? "GET" : "POST"),
    headers,
    body: init.body === undefined
      ? undefined
      : typeof init.body === "string"
      ? init.body
      : JSON.stringify(init.body),
    signal: abort.signal,
  });
  return new SseReader(response, abort);
}

/** Assert-style check that seqs run 1, 2, 3, … with no gap and no duplicate. */
export function consecutiveSeqs(events: TurnEvent[]): boolean {
  return events.every((e, i) => e.seq === i + 1);
}

/** The concatenated `token` contents. */
export function tokenText(events: TurnEvent[]): string {
  return events.map((e) => (e.type === "token" ? e.content : "")).join("");
}
