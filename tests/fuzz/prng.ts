/**
 * A tiny seeded PRNG (mulberry32) and helpers, so a fuzz seed names exactly
 * one sequence of generated cases.
 */

/** A deterministic random source. */
export class Rng {
  #state: number;

  constructor(readonly seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** Call one of the given generators. */
  oneOf<T>(generators: readonly (() => T)[]): T {
    return this.pick(generators)();
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(0, 255);
    return out;
  }

  /** A v4-shaped UUID from this source (lower case). */
  uuid(): string {
    const hex = Array.from(this.bytes(16), (b) => b.toString(16).padStart(2, "0")).join("");
    const variant = ((parseInt(hex[16], 16) & 0x3) | 0x8).toString(16);
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${
      hex.slice(17, 20)
    }-${hex.slice(20, 32)}`;
  }

  /** A string of `n` characters from `alphabet`. */
  string(n: number, alphabet: string): string {
    let s = "";
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(this.next() * alphabet.length)];
    return s;
  }
}

/** Parse a seed from text (decimal or 0x-hex); NaN-safe. */
export function parseSeed(text: string | undefined, fallback: number): number {
  if (text === undefined || text.trim() === "") return fallback >>> 0;
  const n = Number(text.trim());
  if (!Number.isFinite(n)) throw new Error(`DM_FUZZ_SEED must be a number, not ${text}`);
  return n >>> 0;
}
