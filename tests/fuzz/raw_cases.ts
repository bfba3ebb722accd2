/**
 * Requests only raw TCP can send: header injection (CR/LF, NUL, controls),
 * invalid bytes in the request target, bodies on GET, lying or doubled
 * Content-Length, chunked bodies over the cap, HTTP/1.0, absolute-form
 * targets, huge or folded headers, garbage request lines and malformed
 * WebSocket handshakes.
 */
import { err, type Expectation, type FuzzWorld } from "./oracle.ts";
import type { Rng } from "./prng.ts";
import type { RawAnswer } from "./raw_http.ts";
import { bytesFrom, INVALID_UTF8 } from "./values.ts";

/** One raw request and what must come back. */
export interface RawCase {
  family: string;
  note: string;
  bytes: Uint8Array<ArrayBuffer>;
  /** Method, so a HEAD answer is read without a body. */
  method: string;
  expect: Expectation;
  /** Extra check of the answer; returns a problem or null. */
  check?: (a: RawAnswer) => string | null;
}

/** Encode a header value: bytes for Latin-1 text, UTF-8 otherwise. */
function valueBytes(value: string): Uint8Array<ArrayBuffer> {
  if ([...value].every((ch) => ch.codePointAt(0)! <= 0xff)) {
    return Uint8Array.from(value, (c) => c.charCodeAt(0));
  }
  return new TextEncoder().encode(value);
}

/** Build a raw HTTP/1.1 request with `Host` and `Connection: close`. */
export function rawRequestBytes(
  host: string,
  method: string,
  target: string | Uint8Array,
  headers: [string, string][],
  body: Uint8Array | null = null,
  options: { contentLength?: boolean; version?: string; host?: boolean } = {},
): Uint8Array<ArrayBuffer> {
  const parts: (string | Uint8Array)[] = [
    `${method} `,
    typeof target === "string" ? valueBytes(target) : target,
    ` ${options.version ?? "HTTP/1.1"}\r\n`,
  ];
  if (options.host ?? true) parts.push(`Host: ${host}\r\n`);
  parts.push("Connection: close\r\n");
  for (const [k, v] of headers) parts.push(`${k}: `, valueBytes(v), "\r\n");
  if (body && (options.contentLength ?? true)) parts.push(`Content-Length: ${body.byteLength}\r\n`);
  parts.push("\r\n");
  if (body) parts.push(body);
  return bytesFrom(...parts);
}

function chunkedBody(data: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  const parts: (string | Uint8Array)[] = [];
  for (let i = 0; i < data.byteLength; i += size) {
    const piece = data.subarray(i, i + size);
    parts.push(`${piece.byteLength.toString(16)}\r\n`, piece, "\r\n");
  }
  parts.push("0\r\n\r\n");
  return bytesFrom(...parts);
}

const protocol = (...types: Parameters<typeof err>): Expectation => ({
  kind: "protocol",
  types: types.length ? types : null,
});

/** Whether a header with this name came back. */
const hasHeader = (a: RawAnswer, name: string) => a.headers.some(([k]) => k === name);

/** Generate `count` raw cases. */
export function rawCases(rng: Rng, world: FuzzWorld, count: number): RawCase[] {
  const host = new URL(world.base).host;
  const c = world.characters[0];
  const t = world.turns[0];
  const turnBody = bytesFrom(JSON.stringify({ character_id: c, user_action: "I wait" }));
  const policyBody = bytesFrom("{}");
  const req = (
    method: string,
    target: string | Uint8Array,
    headers: [string, string][],
    body: Uint8Array | null = null,
    options: { contentLength?: boolean; version?: string; host?: boolean } = {},
  ) => rawRequestBytes(host, method, target, headers, body, options);
  const control = () => String.fromCharCode(rng.pick([0, 1, 7, 8, 11, 12, 27, 31, 127]));

  const builders: (() => RawCase)[] = [
    () => ({
      family: "raw: header injection",
      note: "CRLF in X-Request-Id",
      method: "GET",
      bytes: req("GET", `/characters/x${rng.int(0, 999)}`, [
        ["X-Request-Id", "fuzz\r\nInjected: yes"],
      ]),
      expect: err("validation_error"),
      check: (a) => {
        if (
          hasHeader(a, "injected") &&
          a.headers.some(([k, v]) => k !== "injected" && /Injected/i.test(v))
        ) {
          return "the injected header leaked into another header";
        }
        const id = a.headers.find(([k]) => k === "x-request-id")?.[1];
        return id === "fuzz" ? null : `X-Request-Id answered ${JSON.stringify(id)}, not "fuzz"`;
      },
    }),
    () => ({
      family: "raw: header injection",
      note: "CRLF in X-Request-Id tries to set a cookie",
      method: "GET",
      bytes: req("GET", `/turns/${rng.uuid()}`, [
        ["X-Request-Id", "a\r\nSet-Cookie: evil=1"],
      ]),
      expect: err("turn_not_found"),
      check: (a) => (hasHeader(a, "set-cookie") ? "a Set-Cookie header came back" : null),
    }),
    () => ({
      family: "raw: header injection",
      note: "bare LF / CR in X-Request-Id",
      method: "GET",
      bytes: req("GET", "/characters/nope", [
        ["X-Request-Id", rng.pick(["a\nInjected: yes", "a\rInjected: yes", "a\r\n Injected"])],
      ]),
      expect: protocol("validation_error"),
      check: (a) => {
        const id = a.headers.find(([k]) => k === "x-request-id")?.[1];
        return id === undefined || /^[A-Za-z0-9._:-]{1,128}$/.test(id)
          ? null
          : `unsafe X-Request-Id echoed: ${JSON.stringify(id)}`;
      },
    }),
    () => {
      const header = rng.pick(["X-Request-Id", "Idempotency-Key", "Content-Type", "traceparent"]);
      return {
        family: "raw: control bytes in headers",
        note: `${header} with a control byte`,
        method: "POST",
        bytes: req(
          "POST",
          "/turn",
          [[header, `ab${control()}cd`], ["Idempotency-Key", "x y"]],
          turnBody,
        ),
        expect: protocol("validation_error", "unsupported_media_type"),
      };
    },
    () => ({
      family: "raw: control bytes in headers",
      note: "Idempotency-Key with a control byte, valid body",
      method: "POST",
      bytes: req("POST", "/turn", [["Idempotency-Key", `k${control()}k`]], turnBody),
      expect: protocol("validation_error"),
    }),
    () => ({
      family: "raw: control bytes in headers",
      note: "Authorization with a control byte on PUT /admin/policy",
      method: "PUT",
      bytes: req("PUT", "/admin/policy", [[
        "Authorization",
        `Bearer ${world.adminToken}${control()}`,
      ]], policyBody),
      expect: protocol("unauthorized"),
    }),
    () => ({
      family: "raw: non-ASCII headers",
      note: "UTF-8 / Latin-1 Idempotency-Key",
      method: "POST",
      bytes: req("POST", "/turn/stream", [[
        "Idempotency-Key",
        rng.pick(["ключ", "caf\u00e9", "😀", "\u00a0k"]),
      ]], turnBody),
      expect: err("validation_error"),
    }),
    () => ({
      family: "raw: non-ASCII headers",
      note: "non-ASCII Last-Event-ID on a known turn",
      method: "GET",
      bytes: req("GET", `/turns/${t}/events`, [[
        "Last-Event-ID",
        rng.pick(["\uff15", "\u0665", "5\u00a0", "\u00b9"]),
      ]]),
      expect: err("validation_error"),
    }),
    () => ({
      family: "raw: non-ASCII headers",
      note: "Last-Event-ID padded with a no-break space (not HTTP whitespace)",
      method: "GET",
      bytes: req("GET", `/turns/${t}/events`, [[
        "Last-Event-ID",
        rng.pick(["5\u00a0", "\u00a05", "\u00a0"]),
      ]]),
      expect: err("validation_error"),
    }),
    () => ({
      family: "raw: non-ASCII headers",
      note: "non-ASCII Content-Type",
      method: "POST",
      bytes: req("POST", "/characters", [[
        "Content-Type",
        rng.pick(["application/jsön", "аpplication/json", "text/plain; charset=ü"]),
      ]], bytesFrom("{}")),
      expect: err("unsupported_media_type"),
    }),
    () => ({
      family: "raw: non-ASCII headers",
      note: "non-ASCII X-Request-Id is not echoed",
      method: "GET",
      bytes: req("GET", "/characters/x", [["X-Request-Id", rng.pick(["ключ", "caf\u00e9"])]]),
      expect: err("validation_error"),
      check: (a) => {
        const id = a.headers.find(([k]) => k === "x-request-id")?.[1] ?? "";
        return /^[0-9a-f-]{36}$/.test(id)
          ? null
          : `X-Request-Id ${JSON.stringify(id)} is not a fresh UUID`;
      },
    }),
    () => {
      const bad = rng.pick(INVALID_UTF8);
      const path = rng.pick(["/characters/", "/turns/", "/static/", "/"]);
      return {
        family: "raw: bad request target",
        note: `invalid UTF-8 in ${path}`,
        method: "GET",
        bytes: req("GET", bytesFrom(path, bad), []),
        expect: protocol(),
      };
    },
    () => ({
      family: "raw: bad request target",
      note: "NUL, space, DEL or a control byte in the target",
      method: "GET",
      bytes: req("GET", `/characters/a${rng.pick(["\u0000", " ", "\u007f", "\u0001", "\t"])}b`, []),
      expect: protocol(),
    }),
    () => ({
      family: "raw: bad request target",
      note: "absolute-form target",
      method: "GET",
      bytes: req("GET", `http://evil.example/characters/${rng.pick(["x", "%00", "%2f"])}`, []),
      expect: protocol("validation_error"),
    }),
    () => ({
      family: "raw: bad request target",
      note: "70 KB target",
      method: "GET",
      bytes: req("GET", `/characters/${"a".repeat(70_000)}`, []),
      expect: protocol("validation_error"),
    }),
    () => {
      const [target, type] = rng.pick<[string, Parameters<typeof err>[0]]>([
        [`/characters/${rng.uuid()}`, "character_not_found"],
        [`/turns/x/events`, "validation_error"],
        ["/admin/policy", "unauthorized"],
        [`/turns/${rng.uuid()}`, "turn_not_found"],
      ]);
      return {
        family: "raw: GET with a body",
        note: `GET ${target} with a body`,
        method: "GET",
        bytes: req("GET", target, [["Content-Type", "application/json"]], turnBody),
        expect: err(type),
      };
    },
    () => {
      const method = rng.pick(["TRACE", "TRACK", "CONNECT", "PRI", "GET2"]);
      const target = rng.pick(["/turn", "/characters", `/characters/${c}`, "/ws", "/nowhere"]);
      return {
        family: "raw: odd methods",
        note: `${method} ${target}`,
        method,
        bytes: req(method, target, []),
        expect: protocol("method_not_allowed", "not_found"),
      };
    },
    () => ({
      family: "raw: odd methods",
      note: "CONNECT authority-form",
      method: "CONNECT",
      bytes: req("CONNECT", "127.0.0.1:1", []),
      expect: protocol(),
    }),
    () => {
      const [path, headers, type] = rng.pick<
        [string, [string, string][], Parameters<typeof err>[0]]
      >([
        ["/turn", [], "payload_too_large"],
        ["/characters", [], "payload_too_large"],
        ["/admin/policy", [["Authorization", `Bearer ${world.adminToken}`]], "payload_too_large"],
        ["/admin/policy", [], "unauthorized"],
      ]);
      const method = path === "/admin/policy" ? "PUT" : "POST";
      return {
        family: "raw: Content-Length",
        note: `${method} ${path} declares a huge length`,
        method,
        bytes: req(
          method,
          path,
          [...headers, ["Content-Length", String(rng.pick([65_537, 999_999, 2 ** 31, 2 ** 53]))]],
          turnBody,
          { contentLength: false },
        ),
        expect: err(type),
      };
    },
    () => {
      const value = rng.pick([
        ["Content-Length: abc"],
        ["Content-Length: -1"],
        ["Content-Length: 1e3"],
        ["Content-Length: 2", "Content-Length: 3"],
        ["Content-Length: 2", "Transfer-Encoding: chunked"],
        ["Transfer-Encoding: gzip, chunked", "Transfer-Encoding: identity"],
        ["Content-Length: 99999999999999999999999"],
      ]);
      return {
        family: "raw: Content-Length",
        note: value.join(" + "),
        method: "POST",
        bytes: bytesFrom(
          `POST /turn HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n${
            value.join("\r\n")
          }\r\n\r\n{}`,
        ),
        expect: protocol(),
      };
    },
    () => ({
      family: "raw: chunked",
      note: "malformed chunk size",
      method: "POST",
      bytes: bytesFrom(
        `POST /characters HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n${
          rng.pick(["zz", "-1", "fffffffffffffffff", ""])
        }\r\n{}\r\n0\r\n\r\n`,
      ),
      expect: protocol("validation_error"),
    }),
    () => {
      const size = rng.int(65_537, 90_000);
      return {
        family: "raw: chunked",
        note: `chunked body of ${size} bytes`,
        method: "POST",
        bytes: bytesFrom(
          `${
            rng.pick(["POST /characters", "POST /turn", "POST /turn/stream"])
          } HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n`,
          chunkedBody(new Uint8Array(size).fill(0x20), rng.pick([1024, 8192, 65_536])),
        ),
        expect: protocol("payload_too_large"),
      };
    },
    () => ({
      family: "raw: chunked",
      note: "chunked invalid UTF-8",
      method: "POST",
      bytes: bytesFrom(
        `POST /turn HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n`,
        chunkedBody(bytesFrom('{"character_id":"', rng.pick(INVALID_UTF8), '"}'), 3),
      ),
      expect: err("validation_error"),
    }),
    () => ({
      family: "raw: HTTP versions",
      note: "HTTP/1.0 without Host",
      method: "GET",
      bytes: bytesFrom(`GET /turns/${rng.pick(["x", "..%2f", "%00"])} HTTP/1.0\r\n\r\n`),
      expect: err("validation_error"),
    }),
    () => ({
      family: "raw: HTTP versions",
      note: "unknown HTTP version",
      method: "GET",
      bytes: bytesFrom(
        `GET /characters/x ${
          rng.pick(["HTTP/2.0", "HTTP/9.9", "HTTP/1.1x", "HTTPS/1.1", "http/1.1"])
        }\r\nHost: ${host}\r\n\r\n`,
      ),
      expect: protocol(),
    }),
    () => ({
      family: "raw: headers",
      note: "a 100 KB header",
      method: "GET",
      bytes: req("GET", "/characters/x", [["X-Big", "a".repeat(100_000)]]),
      expect: protocol(),
    }),
    () => ({
      family: "raw: headers",
      note: "500 headers",
      method: "GET",
      bytes: req(
        "GET",
        "/characters/x",
        Array.from({ length: 500 }, (_, i) => [`X-H${i}`, "v"] as [string, string]),
      ),
      expect: protocol("validation_error"),
    }),
    () => ({
      family: "raw: headers",
      note: "obs-fold continuation line",
      method: "GET",
      bytes: bytesFrom(
        `GET /characters/x HTTP/1.1\r\nHost: ${host}\r\nX-Request-Id: a\r\n b\r\nConnection: close\r\n\r\n`,
      ),
      expect: protocol("validation_error"),
    }),
    () => ({
      family: "raw: headers",
      note: "header without a colon / with a space before the colon",
      method: "GET",
      bytes: bytesFrom(
        `GET /characters/x HTTP/1.1\r\nHost: ${host}\r\n${
          rng.pick(["NoColon", "X-A : b", ": empty", "X\u0000Y: z"])
        }\r\nConnection: close\r\n\r\n`,
      ),
      expect: protocol("validation_error"),
    }),
    () => ({
      family: "raw: headers",
      note: "Expect: 100-continue with an invalid body",
      method: "POST",
      bytes: req("POST", "/turn", [["Expect", "100-continue"], [
        "Content-Type",
        "application/json",
      ]], bytesFrom("{nope")),
      expect: protocol("validation_error"),
    }),
    () => ({
      family: "raw: request line",
      note: "garbage request line",
      method: "GET",
      bytes: rng.pick([
        bytesFrom("GARBAGE\r\n\r\n"),
        bytesFrom("GET\r\n\r\n"),
        bytesFrom("GET / HTTP/1.1 extra\r\n\r\n"),
        bytesFrom("\r\n\r\n"),
        bytesFrom(" GET / HTTP/1.1\r\n\r\n"),
        rng.bytes(rng.int(1, 200)),
        bytesFrom("\u0016\u0003\u0001\u0000\u00a5\u0001\u0000\u0000\u00a1\u0003\u0003"),
      ]),
      expect: protocol(),
    }),
    () => ({
      family: "raw: WebSocket handshake",
      note: "Upgrade: websocket without a key",
      method: "GET",
      bytes: req("GET", "/ws", [["Upgrade", "websocket"], ["Connection", "Upgrade"]]),
      expect: err("validation_error"),
    }),
    () => {
      const [target, type] = rng.pick<[string, Parameters<typeof err>[0]]>([
        [`/characters/x`, "validation_error"],
        [`/turns/${rng.uuid()}/events`, "turn_not_found"],
        ["/nowhere", "not_found"],
      ]);
      return {
        family: "raw: WebSocket handshake",
        note: `upgrade request to ${target}`,
        method: "GET",
        bytes: req("GET", target, [
          ["Upgrade", "websocket"],
          ["Connection", "Upgrade"],
          ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
          ["Sec-WebSocket-Version", "13"],
        ]),
        expect: err(type),
      };
    },
    () => ({
      family: "raw: WebSocket handshake",
      note: "POST /ws with upgrade headers",
      method: "POST",
      bytes: req(
        "POST",
        "/ws",
        [["Upgrade", "websocket"], ["Connection", "Upgrade"]],
        bytesFrom("{}"),
      ),
      // Deno's HTTP layer refuses an upgrade with a body itself (a bare 400).
      expect: protocol("method_not_allowed"),
    }),
    () => ({
      family: "raw: WebSocket handshake",
      note: "bad Sec-WebSocket-Version / key",
      method: "GET",
      bytes: req("GET", "/ws", [
        ["Upgrade", "websocket"],
        ["Connection", "Upgrade"],
        ["Sec-WebSocket-Key", rng.pick(["!!", "", "dGhlIHNhbXBsZSBub25jZQ=="])],
        ["Sec-WebSocket-Version", rng.pick(["99", "8", "x", ""])],
      ]),
      expect: { kind: "upgrade", types: ["validation_error"] },
    }),
  ];
  const out: RawCase[] = [];
  // Every builder at least once, then random ones.
  for (const b of builders) out.push(b());
  while (out.length < count) out.push(rng.pick(builders)());
  return out;
}
