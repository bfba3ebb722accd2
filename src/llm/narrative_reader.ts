/**
 * Incremental reading of a model's JSON outcome.
 *
 * The model streams raw JSON text such as
 * `{"narrative": "The door creaks…", "intents": {…}}`. Players should see the
 * prose while it is being written, long before the object is complete and can
 * be validated, so {@link NarrativeReader} decodes just the top-level
 * `narrative` string out of the partial text as it arrives.
 *
 * @module
 */

// Scanner modes. Numbers rather than strings keep the hot loop's comparisons cheap.
/** Looking for the `{` that opens the top-level object (skipping prose and fences). */
const SEEK = 0;
/** Between tokens inside the object. */
const STRUCT = 1;
/** Inside a top-level key string. */
const KEY = 2;
/** Inside a string we do not care about. */
const SKIP = 3;
/** Inside the narrative string: decode and emit. */
const NARR = 4;
/** The narrative has been read; nothing more to do. */
const DONE = 5;

const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \
const OPEN_BRACE = 0x7b; // {
const CLOSE_BRACE = 0x7d; // }
const OPEN_BRACKET = 0x5b; // [
const CLOSE_BRACKET = 0x5d; // ]
const COMMA = 0x2c; // ,

/** Decoded characters of the single-character escapes, indexed by char code. */
const SIMPLE_ESCAPES: (string | undefined)[] = [];
SIMPLE_ESCAPES[QUOTE] = '"';
SIMPLE_ESCAPES[BACKSLASH] = "\\";
SIMPLE_ESCAPES[0x2f] = "/";
SIMPLE_ESCAPES[0x62] = "\b";
SIMPLE_ESCAPES[0x66] = "\f";
SIMPLE_ESCAPES[0x6e] = "\n";
SIMPLE_ESCAPES[0x72] = "\r";
SIMPLE_ESCAPES[0x74] = "\t";

function isHigh(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLow(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** Value of one hex digit, or -1. */
function hexDigit(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/** The code unit written as four hex digits at `s[at..at+4)`, or -1 if they are not hex. */
function hex4(s: string, at: number): number {
  const a = hexDigit(s.charCodeAt(at));
  const b = hexDigit(s.charCodeAt(at + 1));
  const c = hexDigit(s.charCodeAt(at + 2));
  const d = hexDigit(s.charCodeAt(at + 3));
  if ((a | b | c | d) < 0) return -1;
  return (a << 12) | (b << 8) | (c << 4) | d;
}

/**
 * Whether `tail` (fewer than six characters) could still grow into a `\uXXXX`
 * escape, so that a preceding high surrogate must wait for it.
 */
function couldBeUnicodeEscape(tail: string): boolean {
  if (tail.length === 0) return true;
  if (tail.charCodeAt(0) !== BACKSLASH) return false;
  if (tail.length === 1) return true;
  if (tail.charCodeAt(1) !== 0x75) return false;
  for (let k = 2; k < tail.length; k++) {
    if (hexDigit(tail.charCodeAt(k)) < 0) return false;
  }
  return true;
}

/**
 * Reads the top-level `narrative` string property out of a JSON object that
 * arrives in arbitrary pieces.
 *
 * It is deliberately tolerant: a model that wraps the object in a ```json
 * fence or writes a sentence before the `{` still streams. It only emits
 * decoded string content, never JSON syntax, and holds back escapes and
 * surrogate pairs that are split between pieces until they are whole, so
 * every returned piece is valid text on its own.
 *
 * Scanning uses `indexOf` and `slice` over whole runs of plain text, so the
 * cost per piece is a few calls rather than work per character.
 *
 * @example
 * ```ts
 * const reader = new NarrativeReader();
 * reader.push('```json\n{"narrative": "The ca'); // "The ca"
 * reader.push('ve\\u00e9 is dark", "intents": {}}'); // "veé is dark"
 * reader.complete; // true
 * ```
 */
export class NarrativeReader {
  #mode = SEEK;
  /** Open `{`/`[` containers; the top-level object is depth 1. */
  #depth = 0;
  /** At depth 1, whether the next string is a key (after `{` or `,`). */
  #expectKey = false;
  /** Whether the latest top-level key was `narrative`. */
  #keyIsNarrative = false;
  /** Raw text of the top-level key being read. */
  #keyRaw = "";
  /** Raw input held back from the previous piece (an incomplete escape or surrogate). */
  #carry = "";
  /** Decoded pieces of the narrative; joined lazily by the getter. */
  #parts: string[] = [];
  #complete = false;

  /**
   * Feed the next piece of raw model output.
   *
   * @returns the narrative text decoded from this piece; often `""`.
   */
  push(chunk: string): string {
    if (this.#mode === DONE || chunk.length === 0) return "";
    let s = chunk;
    if (this.#carry !== "") {
      s = this.#carry + chunk;
      this.#carry = "";
    }
    const n = s.length;
    let i = 0;
    let out = "";
    while (i < n) {
      switch (this.#mode) {
        case SEEK: {
          const open = s.indexOf("{", i);
          if (open === -1) return out;
          this.#depth = 1;
          this.#expectKey = true;
          this.#keyIsNarrative = false;
          this.#mode = STRUCT;
          i = open + 1;
          break;
        }
        case STRUCT:
          i = this.#scanStruct(s, i, n);
          break;
        case KEY:
          i = this.#scanKey(s, i, n);
          break;
        case SKIP:
          i = this.#scanSkip(s, i, n);
          break;
        case NARR: {
          const r = this.#scanNarrative(s, i, n);
          out = out === "" ? r.text : out + r.text;
          i = r.next;
          break;
        }
        default:
          // DONE: whatever follows the narrative does not concern us.
          i = n;
      }
    }
    if (out !== "") this.#parts.push(out);
    return out;
  }

  /** All narrative text decoded so far. */
  get narrative(): string {
    if (this.#parts.length > 1) this.#parts = [this.#parts.join("")];
    return this.#parts[0] ?? "";
  }

  /** Whether the closing quote of the narrative has been seen. */
  get complete(): boolean {
    return this.#complete;
  }

  /** Structural characters between strings. Returns where to continue. */
  #scanStruct(s: string, i: number, n: number): number {
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c === QUOTE) {
        if (this.#depth !== 1) {
          this.#mode = SKIP;
        } else if (this.#expectKey) {
          this.#mode = KEY;
          this.#keyRaw = "";
          this.#expectKey = false;
        } else if (this.#keyIsNarrative) {
          this.#mode = NARR;
        } else {
          this.#mode = SKIP;
        }
        return i + 1;
      }
      if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        this.#depth++;
      } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        this.#depth--;
        if (this.#depth === 0) {
          // The object ended without a narrative: what we took for the object
          // was prose in braces, so look for the next one.
          this.#mode = SEEK;
          return i + 1;
        }
      } else if (c === COMMA && this.#depth === 1) {
        this.#expectKey = true;
        this.#keyIsNarrative = false;
      }
    }
    return n;
  }

  /** A top-level key; decoded once whole to compare it with `narrative`. */
  #scanKey(s: string, i: number, n: number): number {
    const end = this.#stringEnd(s, i, n);
    if (end < 0) {
      this.#keyRaw += s.slice(i, -end - 1);
      return n;
    }
    const raw = this.#keyRaw + s.slice(i, end);
    this.#keyRaw = "";
    let key = raw;
    if (raw.indexOf("\\") !== -1) {
      try {
        key = JSON.parse(`"${raw}"`);
      } catch {
        // An invalid key cannot be `narrative`; keep the raw text.
      }
    }
    this.#keyIsNarrative = key === "narrative";
    this.#mode = STRUCT;
    return end + 1;
  }

  /** A string that is not the narrative. */
  #scanSkip(s: string, i: number, n: number): number {
    const end = this.#stringEnd(s, i, n);
    if (end < 0) return n;
    this.#mode = STRUCT;
    return end + 1;
  }

  /**
   * Index of the closing quote of the string starting at `i`. When the piece
   * ends first, returns `-(consumed + 1)` where `consumed` is how far the
   * caller may take the text; a trailing backslash is carried over so the
   * escaped character is seen with it.
   */
  #stringEnd(s: string, i: number, n: number): number {
    let q = s.indexOf('"', i);
    let b = s.indexOf("\\", i);
    while (true) {
      if (q === -1) q = n;
      if (b === -1) b = n;
      if (q < b) return q;
      if (b === n) return -(n + 1);
      if (b + 1 === n) {
        this.#carry = "\\";
        return -(b + 1);
      }
      // Skip the escaped character; \uXXXX digits hold neither quote nor backslash.
      const after = b + 2;
      if (q < after) q = s.indexOf('"', after);
      b = s.indexOf("\\", after);
    }
  }

  /** Decode narrative text from `i` until its closing quote or the piece's end. */
  #scanNarrative(s: string, i: number, n: number): { text: string; next: number } {
    let out = "";
    let q = s.indexOf('"', i);
    let b = s.indexOf("\\", i);
    if (q === -1) q = n;
    if (b === -1) b = n;
    while (true) {
      if (q < b) {
        if (q > i) out += s.slice(i, q);
        this.#complete = true;
        this.#mode = DONE;
        return { text: out, next: n };
      }
      if (b === n) {
        // Plain text to the end of the piece, but a high surrogate at the very
        // end waits for its partner so the emitted text never splits a pair.
        let end = n;
        if (end > i && isHigh(s.charCodeAt(end - 1))) {
          end--;
          this.#carry = s.slice(end);
        }
        if (end > i) out += s.slice(i, end);
        return { text: out, next: n };
      }
      const decoded = this.#escape(s, b, n);
      if (decoded === null) {
        // A raw high surrogate just before the unfinished escape waits too: the
        // escape may be its low half.
        const from = b > i && isHigh(s.charCodeAt(b - 1)) ? b - 1 : b;
        if (from > i) out += s.slice(i, from);
        this.#carry = s.slice(from);
        return { text: out, next: n };
      }
      if (b > i) out += s.slice(i, b);
      out += decoded.text;
      i = decoded.next;
      if (q < i) {
        q = s.indexOf('"', i);
        if (q === -1) q = n;
      }
      b = s.indexOf("\\", i);
      if (b === -1) b = n;
    }
  }

  /**
   * Decode the escape at `s[b]` (a backslash). Returns `null` when the piece
   * ends before the escape (or a surrogate pair) is complete.
   */
  #escape(s: string, b: number, n: number): { text: string; next: number } | null {
    if (b + 1 >= n) return null;
    const kind = s.charCodeAt(b + 1);
    if (kind !== 0x75) {
      // Unknown escapes are invalid JSON; keep the character rather than lose it.
      return { text: SIMPLE_ESCAPES[kind] ?? s[b + 1], next: b + 2 };
    }
    if (b + 6 > n) return null;
    const unit = hex4(s, b + 2);
    if (unit < 0) return { text: "u", next: b + 2 };
    if (!isHigh(unit)) return { text: String.fromCharCode(unit), next: b + 6 };
    // A high surrogate pairs with a following \uDCxx escape, which may not have arrived yet.
    const tail = s.slice(b + 6, b + 12);
    if (tail.length < 6 && couldBeUnicodeEscape(tail)) return null;
    if (tail.length === 6 && tail.charCodeAt(0) === BACKSLASH && tail.charCodeAt(1) === 0x75) {
      const low = hex4(tail, 2);
      if (isLow(low)) return { text: String.fromCharCode(unit, low), next: b + 12 };
    }
    return { text: String.fromCharCode(unit), next: b + 6 };
  }
}

/**
 * Index just past the `}` that closes the object opening at `start`, or -1
 * when the text ends first. Braces inside strings do not count.
 */
function objectEnd(raw: string, start: number): number {
  let depth = 0;
  const n = raw.length;
  for (let i = start; i < n; i++) {
    const c = raw.charCodeAt(i);
    if (c === QUOTE) {
      // Jump over the string, honouring escapes.
      i++;
      while (i < n) {
        const q = raw.indexOf('"', i);
        if (q === -1) return -1;
        let slashes = 0;
        for (let k = q - 1; k >= i && raw.charCodeAt(k) === BACKSLASH; k--) slashes++;
        i = q;
        if (slashes % 2 === 0) break;
        i++;
      }
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      depth++;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Candidate objects to try before giving up; bounds the work on brace-heavy prose. */
const MAX_CANDIDATES = 16;

/**
 * The text of the outermost JSON object in a model's raw answer, without any
 * ```json fence or prose around it.
 *
 * Braces in leading prose are skipped when the first balanced candidate is
 * not valid JSON but a later one is. When no candidate parses, the first
 * balanced one is returned anyway so the caller's parser can report the real
 * syntax error.
 *
 * @returns the object's text, or `null` when no complete `{…}` is present
 * (for example, output cut short).
 *
 * @example
 * ```ts
 * extractJsonObject('Sure!\n```json\n{"narrative": "Hi"}\n```'); // '{"narrative": "Hi"}'
 * ```
 */
export function extractJsonObject(raw: string): string | null {
  let first: string | null = null;
  let from = 0;
  for (let tries = 0; tries < MAX_CANDIDATES; tries++) {
    const start = raw.indexOf("{", from);
    if (start === -1) break;
    const end = objectEnd(raw, start);
    if (end === -1) {
      // Unbalanced: perhaps a stray brace in prose; try the next one.
      from = start + 1;
      continue;
    }
    const text = raw.slice(start, end);
    if (isJson(text)) return text;
    first ??= text;
    // Skip past the whole candidate so an inner object is never mistaken for the outer one.
    from = end;
  }
  return first;
}
