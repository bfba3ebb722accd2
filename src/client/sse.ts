/**
 * A Server-Sent Events parser following the WHATWG "event stream"
 * interpretation rules, for streams read with `fetch` (EventSource cannot
 * POST or set headers). It handles `id`/`event`/`data`/`retry` fields,
 * comments, multi-line data, and LF, CR or CRLF line ends, including a CRLF
 * split across two chunks.
 *
 * @example
 * ```ts
 * const parser = new SseParser();
 * const messages = parser.feed("id: 1\ndata: {\"a\":1}\n\n");
 * // [{ id: "1", event: "message", data: "{\"a\":1}" }]
 * ```
 *
 * @module
 */

/** One dispatched SSE message. */
export interface SseMessage {
  /** The last event id in force when the message was dispatched ("" when none was set). */
  id: string;
  /** The `event` field, or `"message"` when absent. */
  event: string;
  /** The data lines joined with "\n". */
  data: string;
}

/** Incremental SSE parser: feed it decoded text, get complete messages back. */
export class SseParser {
  #buffer = "";
  #data: string[] = [];
  #event = "";
  #lastId = "";
  #sawData = false;
  #retry: number | null = null;
  #first = true;
  /** A CR ended the previous chunk, so a leading LF of the next one belongs to it. */
  #pendingCr = false;
  /** Comment lines seen so far (heartbeats). */
  comments = 0;

  /** The last `id` field seen, which a resume sends as `Last-Event-ID`. */
  get lastEventId(): string {
    return this.#lastId;
  }

  /** The server's `retry` hint in milliseconds, if it sent one. */
  get retry(): number | null {
    return this.#retry;
  }

  /** Parse more text and return the messages it completed. */
  feed(text: string): SseMessage[] {
    if (this.#first && text.length > 0) {
      this.#first = false;
      // A UTF-8 BOM at the very start of the stream is not part of the first line.
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.#pendingCr && text.startsWith("\n")) text = text.slice(1);
    this.#pendingCr = false;
    this.#buffer += text;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.#buffer.length; i++) {
      const c = this.#buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.#buffer.slice(start, i);
      if (c === 13) {
        if (i + 1 < this.#buffer.length) {
          if (this.#buffer.charCodeAt(i + 1) === 10) i++;
        } else {
          // Cannot tell yet whether an LF follows in the next chunk.
          this.#pendingCr = true;
        }
      }
      start = i + 1;
      const message = this.#line(line);
      if (message) out.push(message);
    }
    this.#buffer = this.#buffer.slice(start);
    return out;
  }

  #line(line: string): SseMessage | null {
    if (line === "") return this.#dispatch();
    if (line.startsWith(":")) {
      this.comments++;
      return null;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.#data.push(value);
        this.#sawData = true;
        break;
      case "event":
        this.#event = value;
        break;
      case "id":
        // An id containing NUL is ignored by the spec.
        if (!value.includes("\u0000")) this.#lastId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.#retry = Number(value);
        break;
      default:
        // Unknown fields are ignored.
        break;
    }
    return null;
  }

  #dispatch(): SseMessage | null {
    const sawData = this.#sawData;
    const message = {
      id: this.#lastId,
      event: this.#event || "message",
      data: this.#data.join("\n"),
    };
    this.#data = [];
    this.#event = "";
    this.#sawData = false;
    return sawData ? message : null;
  }
}

/**
 * Read an SSE body and yield its messages. `onActivity` is called for every
 * chunk received (comments included), which lets a caller detect a silent,
 * dead connection. Any partial message at the end of the stream is dropped,
 * as the spec requires.
 *
 * @example
 * ```ts
 * const res = await fetch(url, { headers: { Accept: "text/event-stream" } });
 * for await (const m of readSse(res.body!)) console.log(m.id, m.data);
 * ```
 */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  onActivity?: () => void,
): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  const parser = new SseParser();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      onActivity?.();
      yield* parser.feed(decoder.decode(value, { stream: true }));
    }
    yield* parser.feed(decoder.decode());
  } finally {
    // Releasing the body closes the connection when we stop early.
    reader.cancel().catch(() => {});
  }
}
