import assert from "node:assert/strict";
import { extractJsonObject, NarrativeReader } from "../src/llm/narrative_reader.ts";

/** Feed `raw` in the given pieces; return what was emitted and the reader. */
function feed(pieces: string[]): { emitted: string[]; reader: NarrativeReader } {
  const reader = new NarrativeReader();
  const emitted = pieces.map((p) => reader.push(p));
  return { emitted, reader };
}

function chunks(raw: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += size) out.push(raw.slice(i, i + size));
  return out;
}

/** A lone surrogate in an emitted piece would turn into U+FFFD once encoded to UTF-8. */
function assertWellFormed(piece: string, context: string): void {
  assert.ok(piece.isWellFormed(), `piece ${JSON.stringify(piece)} splits a surrogate (${context})`);
}

/**
 * Check that every way of cutting `raw` in two, and 1-char pieces, yields
 * `expected`, never emits a split surrogate pair and ends complete.
 */
function assertEverySplit(raw: string, expected: string): void {
  for (let cut = 0; cut <= raw.length; cut++) {
    const { emitted, reader } = feed([raw.slice(0, cut), raw.slice(cut)]);
    emitted.forEach((p) => assertWellFormed(p, `cut at ${cut}`));
    assert.equal(emitted.join(""), expected, `cut at ${cut}`);
    assert.equal(reader.narrative, expected, `cut at ${cut}`);
    assert.ok(reader.complete, `cut at ${cut}`);
  }
  for (let size = 1; size <= 7; size++) {
    const { emitted, reader } = feed(chunks(raw, size));
    emitted.forEach((p) => assertWellFormed(p, `size ${size}`));
    assert.equal(emitted.join(""), expected, `pieces of ${size}`);
    assert.equal(reader.narrative, expected);
    assert.ok(reader.complete);
  }
}

Deno.test("reads a narrative given in one piece", () => {
  const { emitted, reader } = feed(['{"narrative": "The cave is dark.", "intents": {}}']);
  assert.deepEqual(emitted, ["The cave is dark."]);
  assert.equal(reader.narrative, "The cave is dark.");
  assert.ok(reader.complete);
});

Deno.test("emits text as it arrives and reports completion only at the closing quote", () => {
  const reader = new NarrativeReader();
  assert.equal(reader.push('{"narr'), "");
  assert.equal(reader.push('ative" : "The ca'), "The ca");
  assert.equal(reader.complete, false);
  assert.equal(reader.push("ve "), "ve ");
  assert.equal(reader.push("is dark"), "is dark");
  assert.equal(reader.complete, false);
  assert.equal(reader.push('", "intents": {"narrative": "x"}}'), "");
  assert.ok(reader.complete);
  assert.equal(reader.narrative, "The cave is dark");
  // Text after the narrative changes nothing.
  assert.equal(reader.push('{"narrative": "again"}'), "");
  assert.equal(reader.narrative, "The cave is dark");
});

Deno.test("decodes every JSON escape, split at every boundary", () => {
  const expected = 'quote " backslash \\ slash / b\b f\f n\n r\r t\t end';
  const raw = '{"narrative":"quote \\" backslash \\\\ slash \\/ b\\b f\\f n\\n r\\r t\\t end"}';
  assert.equal(JSON.parse(raw).narrative, expected);
  assertEverySplit(raw, expected);
});

Deno.test("decodes \\uXXXX escapes in both cases, split at every boundary", () => {
  const expected = "caf\u00e9 \u00C9t\u00e9 \u0000 \u001f \u2028 \uABCD \u0041";
  const raw = '{"narrative":"caf\\u00e9 \\u00C9t\\u00E9 \\u0000 \\u001F \\u2028 \\uabcd \\u0041"}';
  assert.equal(JSON.parse(raw).narrative, expected);
  assertEverySplit(raw, expected);
});

Deno.test("joins escaped surrogate pairs split at every boundary", () => {
  const expected = "dragon \u{1F409} and \u{1F3B6}\u{1F3B6}!";
  const raw = '{"narrative":"dragon \\ud83d\\udc09 and \\uD83C\\uDFB6\\ud83c\\udfb6!"}';
  assert.equal(JSON.parse(raw).narrative, expected);
  assertEverySplit(raw, expected);
});

Deno.test("keeps raw multi-byte text and raw surrogate pairs whole at every boundary", () => {
  const expected = "Ürgüp — ᚠ 日本語 🐉🎶 ok";
  const raw = JSON.stringify({ narrative: expected, intents: {} });
  assertEverySplit(raw, expected);
});

Deno.test("matches JSON.parse on a mixed sample in 1-char pieces and at every cut", () => {
  const narrative = 'He said "go\\north"\n\tthen \u{1F5E1}\uFE0F — é \u0007 </script> {"x":1} ]';
  const raw = JSON.stringify({ intents: { narrative: "nested" }, narrative, tail: [1, 2] })
    .replace("é", "\\u00e9")
    .replace("\u{1F5E1}", "\\ud83d\\udde1");
  assert.equal(JSON.parse(raw).narrative, narrative);
  assertEverySplit(raw, narrative);
});

Deno.test("leaves a lone escaped high surrogate as it is once its follower is known", () => {
  const { emitted, reader } = feed(['{"narrative":"a\\ud83d', '"}']);
  assert.deepEqual(emitted, ["a", "\ud83d"]);
  assert.ok(reader.complete);
  const r2 = feed(['{"narrative":"a\\ud83d\\u0041"}']).reader;
  assert.equal(r2.narrative, "a\ud83dA");
});

Deno.test("ignores a ```json fence", () => {
  const raw = '```json\n{"narrative": "Fenced."}\n```';
  assertEverySplit(raw, "Fenced.");
});

Deno.test("ignores prose before the object, even prose with braces", () => {
  assertEverySplit('Sure! Here is the outcome:\n{"narrative": "After prose."}', "After prose.");
  assertEverySplit('I will use {braces} here: {"narrative":"Real."}', "Real.");
});

Deno.test("ignores a nested narrative key", () => {
  const raw = JSON.stringify({
    intents: { quest: { narrative: "NOT THIS" }, list: [{ narrative: "NOR THIS" }] },
    narrative: "This one.",
  });
  assertEverySplit(raw, "This one.");
});

Deno.test("ignores `narrative` written as a string value", () => {
  const raw = '{"kind": "narrative", "note": ["narrative", "x"], "narrative": "Value."}';
  assertEverySplit(raw, "Value.");
});

Deno.test("reads the narrative when it is not the first key", () => {
  const raw = '{"a": 1, "b": true, "c": null, "d": "str\\"ing", "e": [ {"f": "}"} ],' +
    ' "narrative": "Late."}';
  assertEverySplit(raw, "Late.");
});

Deno.test("reads an escaped key that means narrative", () => {
  const { reader } = feed(['{"narr\\u0061tive": "Escaped key."}']);
  assert.equal(reader.narrative, "Escaped key.");
});

Deno.test("never emits JSON syntax: a non-string narrative yields nothing", () => {
  const { emitted, reader } = feed(['{"narrative": null, "intents": {"a": "b"}}']);
  assert.deepEqual(emitted, [""]);
  assert.equal(reader.complete, false);
  assert.equal(reader.narrative, "");
});

Deno.test("an unfinished narrative stays incomplete", () => {
  const { reader } = feed(['{"narrative": "cut sho']);
  assert.equal(reader.narrative, "cut sho");
  assert.equal(reader.complete, false);
});

Deno.test("extractJsonObject returns the object without fences or prose", () => {
  assert.equal(extractJsonObject('{"a":1}'), '{"a":1}');
  assert.equal(
    extractJsonObject('Here you go:\n```json\n{"narrative": "x}", "b": {"c": [1]}}\n```\nBye.'),
    '{"narrative": "x}", "b": {"c": [1]}}',
  );
  assert.equal(
    extractJsonObject('Note {not json} then {"narrative": "y"}'),
    '{"narrative": "y"}',
  );
  assert.equal(extractJsonObject('a { stray then {"n": "\\"}"}'), '{"n": "\\"}"}');
});

Deno.test("extractJsonObject gives the first balanced object when none is valid JSON", () => {
  // The parser, not this helper, reports the syntax error.
  assert.equal(
    extractJsonObject('{"narrative": "x", "a": tru} {"b": }'),
    '{"narrative": "x", "a": tru}',
  );
});

Deno.test("extractJsonObject returns null when no complete object is present", () => {
  assert.equal(extractJsonObject(""), null);
  assert.equal(extractJsonObject("No JSON here."), null);
  assert.equal(extractJsonObject('{"narrative": "cut sh'), null);
});

Deno.test("agrees with JSON.parse on random outcomes in random pieces", () => {
  // A fixed-seed generator keeps failures reproducible.
  let seed = 0x2f6b1d;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x80000000;
  };
  const alphabet = [
    '"',
    "\\",
    "/",
    "\n",
    "\t",
    "\b",
    "\u0001",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "a",
    " ",
    "é",
    "ᚠ",
    "\u{1F409}",
    "\u2028",
    "narrative",
  ];
  const randomText = () => {
    let s = "";
    const len = Math.floor(rand() * 40);
    for (let i = 0; i < len; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
    return s;
  };
  for (let round = 0; round < 300; round++) {
    const narrative = randomText();
    const before = {
      [randomText()]: randomText(),
      intents: { narrative: randomText(), l: [randomText()] },
    };
    let raw = JSON.stringify({ ...before, narrative, after: randomText() });
    // Escape some non-ASCII the way other encoders do.
    if (rand() < 0.5) {
      raw = raw.replace(
        /[^ -~]/gu,
        (ch) =>
          Array.from(
            { length: ch.length },
            (_, k) => "\\u" + ch.charCodeAt(k).toString(16).padStart(4, "0"),
          ).join(""),
      );
    }
    const pieces: string[] = [];
    for (let i = 0; i < raw.length;) {
      const size = 1 + Math.floor(rand() * 12);
      pieces.push(raw.slice(i, i + size));
      i += size;
    }
    const { emitted, reader } = feed(pieces);
    emitted.forEach((p) => assertWellFormed(p, `round ${round}`));
    assert.equal(emitted.join(""), JSON.parse(raw).narrative, `round ${round}: ${raw}`);
    assert.ok(reader.complete);
  }
});
