/**
 * Reproducible rolls. With a seed, every roll is a pure function of
 * (seed, character id, turn number, roll name), so replays and restarts give
 * the same results and a new plugin's rolls never shift another plugin's.
 * Without a seed, rolls come from the platform CSPRNG.
 *
 * @example
 * ```ts
 * const rng = createRoller({ seed: "42", characterId: id, turnNumber: 7 });
 * if (rng.roll("quest") < 0.3) startQuest();
 * ```
 *
 * @module
 */
import { createHash } from "node:crypto";

/** Rolls for one turn of one character. */
export interface Roller {
  /** A number in [0, 1) for the named roll. */
  roll(name: string): number;
  /** One of `items`, chosen by the named roll; undefined when empty. */
  pick<T>(name: string, items: readonly T[]): T | undefined;
}

/** Where a roller's randomness comes from. */
export interface RollerOptions {
  seed: string | null;
  characterId: string;
  turnNumber: number;
}

const TWO_POW_53 = 2 ** 53;

function seededUnit(seed: string, characterId: string, turn: number, name: string): number {
  // Length-prefixed parts keep ("a:b","c") and ("a","b:c") apart.
  const parts = [seed, characterId, String(turn), name].map((p) => `${p.length}:${p}`).join("|");
  const digest = createHash("sha256").update(parts).digest();
  // 53 random bits give every representable double in [0,1) on a 2^-53 grid.
  const hi = digest.readUInt32BE(0) >>> 5; // 27 bits
  const lo = digest.readUInt32BE(4) >>> 6; // 26 bits
  return (hi * 67108864 + lo) / TWO_POW_53;
}

function cryptoUnit(): number {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return ((words[0] >>> 5) * 67108864 + (words[1] >>> 6)) / TWO_POW_53;
}

/** Create the roller of one turn. */
export function createRoller(options: RollerOptions): Roller {
  const unit = options.seed === null
    ? (_name: string) => cryptoUnit()
    : (name: string) => seededUnit(options.seed!, options.characterId, options.turnNumber, name);
  return {
    roll: unit,
    pick<T>(name: string, items: readonly T[]): T | undefined {
      if (items.length === 0) return undefined;
      return items[Math.min(items.length - 1, Math.floor(unit(name) * items.length))];
    },
  };
}
