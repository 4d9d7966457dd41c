/** Order statistics for the replay report. */

/** Percentile `q` in [0, 100] of ascending `sorted` values, linear between closest ranks (0 if empty). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  if (n === 1) return sorted[0];
  const pos = (Math.min(100, Math.max(0, q)) / 100) * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** An ascending copy of the values as a Float64Array (numeric sort, no string comparison). */
export function sortedCopy(values: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(values);
  out.sort();
  return out;
}

/** A growable Float64Array, for millions of samples (inter-token latencies) without boxed numbers. */
export class SampleBuffer {
  private data = new Float64Array(1024);
  private n = 0;

  push(value: number): void {
    if (this.n === this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.n++] = value;
  }

  get length(): number {
    return this.n;
  }

  sorted(): Float64Array {
    const out = this.data.slice(0, this.n);
    out.sort();
    return out;
  }
}

/** `points` + 1 quantiles (0, 1/points, ..., 1) of ascending values: a compact CDF for the report. */
export function cdfPoints(sorted: ArrayLike<number>, points = 100): number[] {
  const out: number[] = [];
  if (sorted.length === 0) return out;
  for (let i = 0; i <= points; i++) out.push(percentile(sorted, (100 * i) / points));
  return out;
}

/** Rounds to `digits` decimals, so reports carry no float noise. */
export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
