/**
 * Keyed token buckets for turn rates (per character, per user). Idle buckets
 * are dropped so memory stays bounded by the number of active keys.
 *
 * @module
 */

/** A rate limit: `rate` tokens per second, holding at most `burst`. */
export interface RateSpec {
  rate: number;
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Token buckets keyed by string. */
export class TokenBuckets {
  #buckets = new Map<string, Bucket>();

  constructor(readonly spec: RateSpec, readonly now: () => number = () => performance.now()) {}

  /**
   * Take one token for `key`. Returns 0 on success, else the seconds to wait
   * before a token is available.
   */
  take(key: string): number {
    const t = this.now();
    const b = this.#buckets.get(key) ?? { tokens: this.spec.burst, at: t };
    b.tokens = Math.min(this.spec.burst, b.tokens + ((t - b.at) / 1000) * this.spec.rate);
    b.at = t;
    this.#buckets.set(key, b);
    if (this.#buckets.size > 10_000) this.#sweep(t);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return (1 - b.tokens) / this.spec.rate;
  }

  #sweep(t: number): void {
    const full = (this.spec.burst / this.spec.rate) * 1000;
    for (const [k, b] of this.#buckets) if (t - b.at > full) this.#buckets.delete(k);
  }
}
