/**
 * WebSocket clients for tests: {@link WsClient} wraps the real `WebSocket`
 * with a message queue, and {@link RawWsClient} speaks the protocol over a
 * bare TCP connection so a test can play a client that stops reading (the
 * browser API always reads) or look at an HTTP answer to the upgrade.
 */
import type { Json } from "./server.ts";

/** A real WebSocket client whose messages a test awaits one by one. */
export class WsClient {
  readonly #queue: Json[] = [];
  readonly #waiters: ((m: Json) => void)[] = [];
  /** Resolves with the close event, whoever closed. */
  readonly closed: Promise<CloseEvent>;

  private constructor(readonly socket: WebSocket) {
    socket.onmessage = (e: MessageEvent<string>) => {
      const message = JSON.parse(e.data);
      const waiter = this.#waiters.shift();
      if (waiter) waiter(message);
      else this.#queue.push(message);
    };
    this.closed = new Promise((resolve) => socket.addEventListener("close", resolve));
  }

  /** Connect to `GET /ws` of the server at `httpUrl`. */
  static async connect(httpUrl: string): Promise<WsClient> {
    const socket = new WebSocket(`${httpUrl.replace(/^http/, "ws")}/ws`);
    const client = new WsClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("error", () => reject(new Error("WebSocket failed")), {
        once: true,
      });
    });
    return client;
  }

  /** Send a message (objects as JSON). */
  send(message: unknown): void {
    this.socket.send(typeof message === "string" ? message : JSON.stringify(message));
  }

  /** The next message. */
  next(): Promise<Json> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Messages until (and including) the first that satisfies `until`. */
  async until(until: (m: Json) => boolean): Promise<Json[]> {
    const out: Json[] = [];
    while (true) {
      const m = await this.next();
      out.push(m);
      if (until(m)) return out;
    }
  }

  /** Turn events up to `done` (excluded), checking `done` names the turn. */
  async turn(): Promise<Json[]> {
    const messages = await this.until((m) => m.type === "done");
    const done = messages.pop();
    const events = messages;
    if (events.length > 0 && done.turn_id !== events[0].turn_id) {
      throw new Error(`done for ${done.turn_id}, events of ${events[0].turn_id}`);
    }
    return events;
  }

  /** Close and wait until closed. */
  async close(): Promise<CloseEvent> {
    if (this.socket.readyState < WebSocket.CLOSING) this.socket.close(1000);
    return await this.closed;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A frame the server sent. */
export interface RawFrame {
  opcode: number;
  payload: Uint8Array;
}

/** A WebSocket client over raw TCP that reads only when told to. */
export class RawWsClient {
  #buffer: Uint8Array = new Uint8Array(0);

  private constructor(
    readonly conn: Deno.TcpConn,
    readonly status: number,
    /** The HTTP answer's head (status line and headers). */
    readonly head: string,
    leftover: Uint8Array,
  ) {
    this.#buffer = leftover;
  }

  /** Send the upgrade request for `path` and read the HTTP answer's head. */
  static async connect(httpUrl: string, path = "/ws"): Promise<RawWsClient> {
    const url = new URL(httpUrl);
    const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    await writeAll(
      conn,
      encoder.encode(
        `GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
    let head: Uint8Array = new Uint8Array(0);
    while (true) {
      const chunk = new Uint8Array(4096);
      const n = await conn.read(chunk);
      if (n === null) throw new Error("connection closed during the handshake");
      head = concat(head, chunk.subarray(0, n));
      const text = decoder.decode(head);
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
        const headBytes = encoder.encode(text.slice(0, end + 4)).byteLength;
        return new RawWsClient(conn, status, text.slice(0, end), head.subarray(headBytes));
      }
    }
  }

  /** Send a masked text frame, as clients must. */
  async sendText(text: string): Promise<void> {
    const payload = encoder.encode(text);
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const len = payload.byteLength;
    const header = len < 126
      ? [0x81, 0x80 | len]
      : len < 65536
      ? [0x81, 0x80 | 126, len >> 8, len & 0xff]
      : [
        0x81,
        0x80 | 127,
        0,
        0,
        0,
        0,
        (len >>> 24) & 0xff,
        (len >> 16) & 0xff,
        (len >> 8) & 0xff,
        len & 0xff,
      ];
    const masked = payload.map((b, i) => b ^ mask[i % 4]);
    await writeAll(this.conn, concat(new Uint8Array(header), mask, masked));
  }

  async #fill(n: number): Promise<boolean> {
    while (this.#buffer.byteLength < n) {
      const chunk = new Uint8Array(1 << 16);
      const read = await this.conn.read(chunk);
      if (read === null) return false;
      this.#buffer = concat(this.#buffer, chunk.subarray(0, read));
    }
    return true;
  }

  /** Read the next whole frame, or null when the connection ended. */
  async nextFrame(): Promise<RawFrame | null> {
    if (!(await this.#fill(2))) return null;
    const opcode = this.#buffer[0] & 0x0f;
    let len = this.#buffer[1] & 0x7f;
    let offset = 2;
    if (len === 126) {
      if (!(await this.#fill(4))) return null;
      len = (this.#buffer[2] << 8) | this.#buffer[3];
      offset = 4;
    } else if (len === 127) {
      if (!(await this.#fill(10))) return null;
      len = 0;
      for (let i = 2; i < 10; i++) len = len * 256 + this.#buffer[i];
      offset = 10;
    }
    if (!(await this.#fill(offset + len))) return null;
    const payload = this.#buffer.slice(offset, offset + len);
    this.#buffer = this.#buffer.slice(offset + len);
    return { opcode, payload };
  }

  /**
   * Read every frame up to the server's close frame: the text messages
   * (parsed) and the close code.
   */
  async readUntilClose(): Promise<{ messages: Json[]; code: number | null }> {
    const messages: Json[] = [];
    while (true) {
      const frame = await this.nextFrame();
      if (frame === null) return { messages, code: null };
      if (frame.opcode === 0x1) messages.push(JSON.parse(decoder.decode(frame.payload)));
      if (frame.opcode === 0x8) {
        const code = frame.payload.byteLength >= 2
          ? (frame.payload[0] << 8) | frame.payload[1]
          : null;
        return { messages, code };
      }
    }
  }

  /** Read the body of an HTTP (non-upgrade) answer, by its Content-Length. */
  async readBody(): Promise<string> {
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(this.head)?.[1] ?? "0");
    await this.#fill(length);
    return decoder.decode(this.#buffer.subarray(0, length));
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.byteLength) written += await conn.write(data.subarray(written));
}
