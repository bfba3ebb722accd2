/**
 * Malformed building blocks for the fuzz generators: ids, strings, numbers,
 * JSON values, byte sequences and header values. Everything is drawn from a
 * seeded {@link Rng}, so one seed gives one sequence.
 */
import type { Rng } from "./prng.ts";

const encoder = new TextEncoder();

/** Bytes of mixed parts: strings as UTF-8, byte arrays as they are. */
export function bytesFrom(...parts: (string | Uint8Array)[]): Uint8Array<ArrayBuffer> {
  const chunks = parts.map((p) => (typeof p === "string" ? encoder.encode(p) : p));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

/** Byte sequences that are not UTF-8. */
export const INVALID_UTF8: readonly Uint8Array[] = [
  new Uint8Array([0xff]),
  new Uint8Array([0xfe, 0xff]),
  new Uint8Array([0xc0, 0xaf]), // overlong "/"
  new Uint8Array([0xe0, 0x80, 0xaf]), // overlong
  new Uint8Array([0xed, 0xa0, 0x80]), // a UTF-16 surrogate encoded
  new Uint8Array([0xe2, 0x82]), // truncated "€"
  new Uint8Array([0xf4, 0x90, 0x80, 0x80]), // above U+10FFFF
  new Uint8Array([0xf8, 0x88, 0x80, 0x80, 0x80]), // 5-byte form
  new Uint8Array([0x80]), // lone continuation byte
  new Uint8Array([0xc3]), // lead byte at the end
];

/** Percent-encoded path pieces that decode to nothing sensible. */
export const BAD_PERCENT: readonly string[] = [
  "%00",
  "%ff%fe",
  "%c0%af",
  "%ed%a0%80",
  "%",
  "%zz",
  "%%%",
  "%0d%0a",
  "%2f",
  "%5c",
  "%u0041",
];

/** Text that is not an id at all. */
const NOT_IDS = [
  "abc",
  "123",
  "0",
  "-1",
  "null",
  "undefined",
  "true",
  "NaN",
  "1e309",
  "9007199254740993",
  "[]",
  "{}",
  "'or'1'='1",
  "*",
  "~",
  "..",
  ".",
  "...",
  "..;",
  "%2e%2e",
  "..%2f..%2fadmin%2fpolicy",
  "..\\..\\etc\\passwd",
  "%2e%2e%2f%2e%2e%2fdeno.json",
  "😀",
  "\u202egnp.exe",
  "ünïcödé",
  "\u0000",
  "\u200b",
  "<script>alert(1)</script>",
  "${jndi:ldap://x}",
  "a b",
  "a;b",
];

/** A malformed or unknown id as a raw path segment (may need encoding). */
export function badId(rng: Rng): string {
  const u = rng.uuid();
  return rng.oneOf<string>([
    () => rng.pick(NOT_IDS),
    () => u.replace(/-/g, ""),
    () => `{${u}}`,
    () => `${u}x`,
    () => u.slice(0, 35),
    () => `${u}0`,
    () => `urn:uuid:${u}`,
    () => u.replace(/^(.{8})-/, "$1_"),
    () => u.replace(/[a-f]/, "g"),
    () => u.replace(/\d/, "\u0660"), // ARABIC-INDIC DIGIT ZERO
    () => u.replace(/\d/, "\uff10"), // FULLWIDTH DIGIT ZERO
    () => `${u}${rng.pick(BAD_PERCENT)}`,
    () => `${rng.pick(BAD_PERCENT)}${u}`,
    () => `\u200b${u}`,
    () => ` ${u}`,
    () => `${u}\u0000`,
    () => `../${u}`,
    () => rng.string(rng.int(1, 64), "0123456789abcdef-"),
    () => "a".repeat(rng.pick([37, 1000, 8000])),
    () => u.repeat(rng.int(2, 50)),
    () => rng.pick(BAD_PERCENT),
  ]);
}

/** A UUID that is well-formed but names nothing (wrong variants, upper case, nil, max). */
export function unknownUuid(rng: Rng): string {
  const u = rng.uuid();
  return rng.oneOf<string>([
    () => u,
    () => u.toUpperCase(),
    () => u.slice(0, 19) + rng.pick(["0", "c", "e", "f"]) + u.slice(20), // wrong variant
    () => u.slice(0, 14) + rng.pick(["0", "9", "f"]) + u.slice(15), // wrong version
    () => "00000000-0000-0000-0000-000000000000",
    () => "ffffffff-ffff-ffff-ffff-ffffffffffff",
  ]);
}

/** JSON text of a string that a text field must refuse (or a huge one). */
export function badStringJson(rng: Rng, max: number): string {
  return rng.oneOf<string>([
    () => '""',
    () => '"   "',
    () => '"\\t\\n\\r"',
    () => '"\\u0000"',
    () => '"a\\u0000b"',
    () => JSON.stringify("x".repeat(max + 1)),
    () => JSON.stringify("\u00e9".repeat(max + 1)),
    () => JSON.stringify("😀".repeat(Math.ceil((max + 1) / 2) + 1)),
    () => JSON.stringify(" ".repeat(rng.int(1, 50))),
  ]);
}

/** JSON text of a value of some type, often the wrong one for a field. */
export function wrongTypeJson(rng: Rng): string {
  return rng.oneOf<string>([
    () => "null",
    () => "true",
    () => "false",
    () => rng.pick(HUGE_NUMBERS),
    () => "[]",
    () => "{}",
    () => '["a"]',
    () => '{"a":"b"}',
    () => '{"__proto__":{"admin":true}}',
    () => deepArray(rng.int(10, 5000)),
    () => deepObject(rng.int(10, 2000)),
    () => `[${Array(rng.int(1, 2000)).fill("0").join(",")}]`,
  ]);
}

/** Number literals at the edges: overflow, beyond 2^53, negative zero, tiny. */
export const HUGE_NUMBERS: readonly string[] = [
  "1e309",
  "-1e309",
  "9007199254740993",
  "-9007199254740993",
  "9007199254740992",
  "-0",
  "0",
  "1e-400",
  "123456789012345678901234567890",
  "0.5",
  "-1",
  "4294967296",
  "1.7976931348623157e308",
  "5e-324",
];

/** Literals that are not JSON at all. */
export const NOT_JSON_LITERALS: readonly string[] = [
  "NaN",
  "Infinity",
  "-Infinity",
  "+1",
  "01",
  "0x10",
  ".5",
  "1.",
  "undefined",
  "'single'",
  "unquoted",
  "`tpl`",
];

/** `[[[…]]]` nested `depth` deep. */
export function deepArray(depth: number): string {
  return "[".repeat(depth) + "]".repeat(depth);
}

/** `{"a":{"a":…}}` nested `depth` deep. */
export function deepObject(depth: number): string {
  return '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
}

/** A header value that is not a valid Idempotency-Key (before HTTP trimming). */
export function badIdempotencyKey(rng: Rng): string {
  return rng.oneOf<string>([
    () => "",
    () => "k".repeat(201),
    () => "k".repeat(rng.int(201, 5000)),
    () => "has space",
    () => "tab\there",
    () => `ctl${String.fromCharCode(rng.pick([1, 2, 7, 8, 11, 12, 27, 31, 127]))}x`,
    () => "nul\u0000x",
    // (CR/LF would end the header early on the wire, leaving a valid key:
    // header injection has cases of its own in raw_cases.ts.)
    () => "ключ",
    () => "caf\u00e9",
    () => "😀",
    () => "\u00ff\u00fe",
    () => "a\u2028b",
  ]);
}

/** A Content-Type that readJson must refuse. */
export function badContentType(rng: Rng): string {
  return rng.pick([
    "text/plain",
    "text/plain;charset=UTF-8",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "application/jsonp",
    "application/json5",
    "application/jsonx",
    "application/",
    "application",
    "json",
    "*/*",
    "",
    "image/png",
    "application/octet-stream",
    "application /json",
    "x".repeat(5000),
    "application/x-json-stream",
  ]);
}

/** A bogus W3C traceparent (or none of its rules kept). */
export function bogusTraceparent(rng: Rng): string {
  const t = rng.string(32, "0123456789abcdef");
  const s = rng.string(16, "0123456789abcdef");
  return rng.pick([
    "",
    "garbage",
    `00-${t}-${s}`,
    `00-${t}-${s}-01-extra`,
    `ff-${t}-${s}-01`,
    `00-${"0".repeat(32)}-${s}-01`,
    `00-${t}-${"0".repeat(16)}-01`,
    `00-${t.toUpperCase()}-${s}-01`,
    `00-${t}-${s}-zz`,
    `0-${t}-${s}-1`,
    `00_${t}_${s}_01`,
    `00-${t}${t}-${s}-01`,
    `cc-${t}-${s}-01-${"x".repeat(600)}`,
    "00-" + "g".repeat(32) + "-" + "h".repeat(16) + "-01",
    `00-${t}-${s}-01`.repeat(20),
    `\t00-${t}-${s}-01`,
  ]);
}

/** An X-Request-Id, safe or not; the server echoes only safe ones. */
export function requestIdValue(rng: Rng): string {
  return rng.pick([
    "fuzz-req.1:a_b",
    "x".repeat(128),
    "x".repeat(129),
    "has space",
    "<script>",
    "a/b",
    '"quoted"',
    "semi;colon",
    "ключ",
    "crlf\r\nSet-Cookie: evil=1",
    "nul\u0000",
    "",
    "%0d%0aInjected:%20yes",
  ]);
}

/**
 * Whether Deno's fetch sends this header value: it refuses control
 * characters other than tab, DEL, and anything beyond Latin-1.
 */
export function fetchableHeaderValue(value: string): boolean {
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    if ((c < 0x20 && c !== 9) || c === 0x7f || c > 0xff) return false;
  }
  return true;
}
