/**
 * Raw HTTP/1.1 over TCP, for requests `fetch` refuses to send: CR/LF or NUL
 * in header values, invalid UTF-8 in the request target, bodies on GET,
 * methods such as TRACE and CONNECT, lying Content-Length headers.
 */

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const utf8Decoder = new TextDecoder();

/** A parsed raw answer, or null fields when the server closed without one. */
export interface RawAnswer {
  /** The status code, or null when the connection closed without a status line. */
  status: number | null;
  /** Header names in lower case, values as sent (latin1-decoded). */
  headers: [string, string][];
  /** The body, decoded as UTF-8 (not fatally). */
  body: string;
  /** True when no complete answer came within the time limit (a hang). */
  timedOut?: boolean;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

/** Text where each char code below 256 is one byte (so `\xff` sends the byte 0xFF). */
export function bytesOf(text: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff) throw new Error(`bytesOf: char ${c} is not a byte; encode it first`);
    out[i] = c;
  }
  return out;
}

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.byteLength) written += await conn.write(data.subarray(written));
}

/**
 * Send `request` (the bytes of a whole HTTP request, head and body) on a new
 * connection and read one answer. The request should carry
 * `Connection: close`; reading stops at the end of the answer's body (by
 * Content-Length or chunked encoding) or when the server closes.
 */
export async function rawRequest(
  hostname: string,
  port: number,
  request: Uint8Array,
  options: { method?: string; timeoutMs?: number } = {},
): Promise<RawAnswer> {
  const conn = await Deno.connect({ hostname, port });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  }, options.timeoutMs ?? 15_000);
  try {
    const answer = await readAnswer(conn, request, options.method);
    return timedOut ? { ...answer, timedOut } : answer;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

async function readAnswer(
  conn: Deno.Conn,
  request: Uint8Array,
  method: string | undefined,
): Promise<RawAnswer> {
  try {
    await writeAll(conn, request);
  } catch {
    // The server may answer and close before the whole request was sent
    // (e.g. a 413 for a declared length); read what it said.
  }
  let buffer: Uint8Array = new Uint8Array(0);
  const chunk = new Uint8Array(1 << 16);
  let headEnd = -1;
  while (true) {
    // Skip interim answers such as `100 Continue` (but not `101`).
    const interim = /^HTTP\/1\.[01] 1(0[02-9]|[1-9]\d) [^\r]*\r\n(?:[^\r]+\r\n)*\r\n/.exec(
      latin1.decode(buffer),
    );
    if (interim) {
      buffer = buffer.subarray(interim[0].length);
      headEnd = latin1.decode(buffer).indexOf("\r\n\r\n");
      continue;
    }
    if (headEnd >= 0) break;
    let n: number | null;
    try {
      n = await conn.read(chunk);
    } catch {
      n = null;
    }
    if (n === null) return { status: null, headers: [], body: latin1.decode(buffer) };
    buffer = concat(buffer, chunk.subarray(0, n));
    headEnd = latin1.decode(buffer).indexOf("\r\n\r\n");
  }
  const text = latin1.decode(buffer);
  const lines = text.slice(0, headEnd).split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1] ?? NaN);
  const headers: [string, string][] = lines.slice(1).map((l) => {
    const i = l.indexOf(":");
    return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
  });
  const header = (name: string) => headers.find(([k]) => k === name)?.[1];
  // A WebSocket upgrade was accepted: the head is the whole answer.
  if (status === 101) return { status, headers, body: "" };
  let rest = buffer.subarray(headEnd + 4);
  const noBody = method === "HEAD" || status === 204 || status === 304;
  const length = header("content-length");
  const chunked = /chunked/i.test(header("transfer-encoding") ?? "");
  const done = () => {
    if (noBody) return true;
    if (length !== undefined) return rest.byteLength >= Number(length);
    if (chunked) {
      return latin1.decode(rest).includes("\r\n0\r\n\r\n") ||
        /^0\r\n\r\n/.test(latin1.decode(rest));
    }
    return false;
  };
  while (!done()) {
    let n: number | null;
    try {
      n = await conn.read(chunk);
    } catch {
      n = null;
    }
    if (n === null) break;
    rest = concat(rest, chunk.subarray(0, n));
  }
  let bytes: Uint8Array = rest;
  if (noBody) bytes = new Uint8Array(0);
  else if (length !== undefined) bytes = rest.subarray(0, Number(length));
  else if (chunked) bytes = dechunk(rest);
  const body = utf8Decoder.decode(bytes);
  return { status: Number.isNaN(status) ? null : status, headers, body };
}

function dechunk(data: Uint8Array): Uint8Array {
  const text = latin1.decode(data);
  let out: Uint8Array = new Uint8Array(0);
  let i = 0;
  while (i < text.length) {
    const eol = text.indexOf("\r\n", i);
    if (eol < 0) break;
    const size = parseInt(text.slice(i, eol), 16);
    if (!(size > 0)) break;
    out = concat(out, data.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
  return out;
}
