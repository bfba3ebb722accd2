/**
 * Malformed JSON bodies: a valid template with one to three mutations (wrong
 * types, missing or doubled fields, bad strings, invalid UTF-8, raw control
 * characters, deep nesting, huge values), sometimes broken as a whole
 * (truncated, trailing garbage, not an object, padded near or over 64 KiB).
 */
import type { Rng } from "./prng.ts";
import {
  badStringJson,
  bytesFrom,
  deepArray,
  HUGE_NUMBERS,
  INVALID_UTF8,
  NOT_JSON_LITERALS,
  wrongTypeJson,
} from "./values.ts";
import { MAX_BODY_BYTES } from "../../src/http/body.ts";

/** A field's JSON text, or raw bytes for values that are not even UTF-8. */
export type FieldValue = string | Uint8Array;
/** Ordered fields of a JSON object, as text. */
export type Fields = [string, FieldValue][];

/** Per-field limits, so string mutations can go just past them. */
export type Limits = Record<string, number>;

/** Serialise fields as a JSON object (keys are JSON-quoted unless raw). */
export function objectBytes(fields: Fields): Uint8Array<ArrayBuffer> {
  const parts: FieldValue[] = ["{"];
  fields.forEach(([k, v], i) => {
    if (i > 0) parts.push(",");
    parts.push(JSON.stringify(k), ":", v);
  });
  parts.push("}");
  return bytesFrom(...parts);
}

function stringWith(inner: Uint8Array): Uint8Array {
  return bytesFrom('"Ar', inner, 'ia"');
}

/** One mutation of the fields, in place. */
function mutateField(rng: Rng, fields: Fields, limits: Limits, numeric: boolean): string {
  const i = rng.int(0, Math.max(0, fields.length - 1));
  const key = fields[i]?.[0] ?? "x";
  const limit = limits[key] ?? 100;
  const set = (v: FieldValue) => {
    if (fields[i]) fields[i] = [key, v];
    else fields.push([key, v]);
  };
  const ops: [string, () => void][] = [
    ["drop", () => fields.splice(i, 1)],
    ["wrong-type", () => set(wrongTypeJson(rng))],
    ["huge-number", () => set(rng.pick(HUGE_NUMBERS))],
    ["not-json", () => set(rng.pick(NOT_JSON_LITERALS))],
    ["bad-utf8", () => set(stringWith(rng.pick(INVALID_UTF8)))],
    [
      "raw-control",
      () => set(bytesFrom('"a', new Uint8Array([rng.pick([0, 1, 9, 10, 13, 31])]), 'b"')),
    ],
    ["lone-surrogate", () => set('"\\ud800"')],
    ["unknown-deep", () => fields.push([`extra_${rng.int(0, 99)}`, deepArray(rng.int(50, 3000))])],
    ["duplicate", () => fields.push([key, wrongTypeJson(rng)])],
    ["key-case", () => fields[i] && (fields[i] = [key.toUpperCase(), fields[i][1]])],
    ["key-nul", () => fields[i] && (fields[i] = [`${key}\u0000`, fields[i][1]])],
  ];
  if (!numeric) ops.push(["bad-string", () => set(badStringJson(rng, limit))]);
  if (numeric) {
    ops.push([
      "out-of-range",
      () => set(rng.pick(["-0.1", "1.0001", "2", "-1", "1000001", "21", "1.5", "-0"])),
    ]);
    ops.push(["numeric-string", () => set(JSON.stringify(String(rng.int(0, 5))))]);
  }
  const [name, op] = rng.pick(ops);
  op();
  return `${name}(${key})`;
}

/** Whole-body breakage applied after field mutations. */
function breakWhole(rng: Rng, body: Uint8Array<ArrayBuffer>): [Uint8Array<ArrayBuffer>, string] {
  const ops: [string, () => Uint8Array<ArrayBuffer>][] = [
    ["non-object", () => bytesFrom(wrongTypeJson(rng))],
    ["not-json-literal", () => bytesFrom(rng.pick(NOT_JSON_LITERALS))],
    ["empty", () => new Uint8Array(0)],
    ["whitespace", () => bytesFrom(" \n\t ")],
    ["truncated", () => body.slice(0, rng.int(0, Math.max(0, body.byteLength - 1)))],
    ["trailing", () => bytesFrom(body, rng.pick([",", "}", "x", "\u0000", "{}", "\n]"]))],
    ["bom", () => bytesFrom("\ufeff", body)],
    ["wrapped", () => bytesFrom("[", body, "]")],
    ["utf8-bom-invalid", () => bytesFrom(new Uint8Array([0xef, 0xbb]), body)],
    ["utf16", () => {
      const out = new Uint8Array(body.byteLength * 2);
      body.forEach((b, i) => (out[i * 2] = b));
      return out;
    }],
    ["pad-near-64k", () => {
      const room = MAX_BODY_BYTES - body.byteLength - rng.int(0, 64);
      return bytesFrom(body.subarray(0, 1), " ".repeat(Math.max(0, room)), body.subarray(1));
    }],
    ["pad-over-64k", () => {
      const room = MAX_BODY_BYTES - body.byteLength + rng.int(1, 4096);
      return bytesFrom(body.subarray(0, 1), " ".repeat(Math.max(0, room)), body.subarray(1));
    }],
    ["deep", () => bytesFrom(deepArray(rng.int(1000, 30000)))],
  ];
  const [name, op] = rng.pick(ops);
  return [op(), name];
}

/** A mutated object body and a note of what was done. */
export function mutatedBody(
  rng: Rng,
  template: Fields,
  limits: Limits,
  options: { numeric?: boolean } = {},
): { body: Uint8Array<ArrayBuffer>; note: string } {
  const fields: Fields = template.map(([k, v]) => [k, v]);
  const notes: string[] = [];
  const n = rng.int(1, 3);
  for (let i = 0; i < n; i++) {
    notes.push(mutateField(rng, fields, limits, options.numeric ?? false));
  }
  let body = objectBytes(fields);
  if (rng.chance(0.25)) {
    const [broken, name] = breakWhole(rng, body);
    body = broken;
    notes.push(name);
  }
  return { body, note: notes.join("+") };
}
