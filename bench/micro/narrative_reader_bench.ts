/**
 * Throughput of the incremental narrative reader on a ~1 MB outcome fed in
 * ~20-character pieces, the shape of a real token stream.
 *
 * Run: `deno bench --allow-all bench/micro/narrative_reader_bench.ts`. Each
 * iteration reads the whole outcome once, so MB/s = outcome MB / (time per
 * iteration in s); the value is also printed once, measured outside the
 * bench harness.
 *
 * @module
 */
import { NarrativeReader } from "../../src/llm/narrative_reader.ts";

/** Prose with the escapes a model really writes: quotes, newlines, some \u escapes. */
function buildOutcome(targetBytes: number): string {
  const sentences = [
    'The innkeeper leans closer. "You didn\'t hear it from me," she whispers.',
    "Rain hammers the shutters;\nsomewhere below, a door slams.",
    "A rune flares — ᚠ — and the air smells of ozone and old coins.",
    "Torchlight catches the edge of a blade: 12 paces, maybe less.",
    '\tThe map reads: \\north\\ then "left at the drowned bell".',
    "Café owners in Ürgüp swear the caves sing at night 🎶.",
  ];
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < targetBytes; i++) {
    const s = sentences[i % sentences.length];
    parts.push(s);
    size += s.length + 1;
  }
  const narrative = parts.join(" ");
  // JSON.stringify leaves non-ASCII raw; escape a share of it as \uXXXX the
  // way some models do, so the decoder's slow path is exercised too.
  const json = JSON.stringify({
    narrative,
    intents: { quest: { action: "none" }, combat: { action: "none" } },
  });
  return json.replace(/é/g, "\\u00e9").replace(/🎶/g, "\\ud83c\\udfb6");
}

const OUTCOME = "```json\n" + buildOutcome(1_000_000) + "\n```";
const CHUNK = 20;
const PIECES: string[] = [];
for (let i = 0; i < OUTCOME.length; i += CHUNK) PIECES.push(OUTCOME.slice(i, i + CHUNK));
/** Size in UTF-8 megabytes, as the bytes would arrive over the wire. */
const MB = new TextEncoder().encode(OUTCOME).length / 1_000_000;

function readAll(): number {
  const reader = new NarrativeReader();
  let emitted = 0;
  for (const piece of PIECES) emitted += reader.push(piece).length;
  if (!reader.complete) throw new Error("narrative not complete");
  return emitted;
}

// One measurement outside the harness so the MB/s figure is printed directly.
{
  for (let i = 0; i < 5; i++) readAll(); // warm up the JIT
  const runs = 20;
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) readAll();
  const seconds = (performance.now() - t0) / 1000 / runs;
  console.log(
    `narrative reader: ${MB.toFixed(2)} MB in ${PIECES.length} pieces of ${CHUNK} chars, ` +
      `${(seconds * 1000).toFixed(2)} ms per pass = ${(MB / seconds).toFixed(0)} MB/s`,
  );
}

Deno.bench({
  name: `NarrativeReader: ${MB.toFixed(2)} MB outcome in ${CHUNK}-char pieces (MB/s = ${
    MB.toFixed(2)
  } / time per iteration in s)`,
  n: 50,
  warmup: 5,
  fn() {
    readAll();
  },
});
