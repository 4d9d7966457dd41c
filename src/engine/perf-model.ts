/**
 * Timing models of one engine iteration (milliseconds of GPU time, before the speed-up ratio).
 * `PolynomialPerfModel` is Dynamo's mocker default; `InterpolatedPerfModel` is piecewise-linear
 * over measured points (Dynamo's `Interpolated`, reduced to one axis for decode).
 */

export interface PerfModel {
  /** Time of a prefill step that computes `newTokens` uncached prompt tokens (summed over the batch). */
  prefillMs(newTokens: number): number;
  /**
   * Time of a decode step of `batchSize` requests whose contexts hold `activeKvTokens` tokens in
   * total, on a rank with room for `totalKvTokens`.
   */
  decodeMs(activeKvTokens: number, totalKvTokens: number, batchSize: number): number;
}

/** Dynamo's polynomial fit: prefill quadratic in new tokens, decode quadratic in KV occupancy. */
export class PolynomialPerfModel implements PerfModel {
  prefillMs(newTokens: number): number {
    if (newTokens <= 0) return 0;
    return 4.209989e-7 * newTokens * newTokens + 1.518344e-2 * newTokens + 16.50142;
  }

  decodeMs(activeKvTokens: number, totalKvTokens: number, batchSize: number): number {
    if (batchSize <= 0) return 0;
    const p = totalKvTokens > 0 ? Math.min(1, activeKvTokens / totalKvTokens) : 1;
    return Math.max(1, -25.74 * p * p + 54.01 * p + 5.74);
  }
}

export type PerfPoint = readonly [x: number, ms: number];

export interface InterpolatedPerfModelOptions {
  /** (uncached prompt tokens in the step, prefill ms), at least two points. */
  readonly prefill: readonly PerfPoint[];
  /** (active KV tokens in the decode batch, decode ms), at least two points. */
  readonly decode: readonly PerfPoint[];
}

/** Piecewise-linear interpolation over sorted points, extrapolating the end segments linearly. */
export class PiecewiseLinear {
  private readonly xs: Float64Array;
  private readonly ys: Float64Array;

  constructor(points: readonly PerfPoint[]) {
    if (points.length < 2) throw new RangeError('a piecewise-linear model needs at least two points');
    const sorted = [...points].sort((a, b) => a[0] - b[0]);
    this.xs = new Float64Array(sorted.map((p) => p[0]));
    this.ys = new Float64Array(sorted.map((p) => p[1]));
    for (let i = 0; i < sorted.length; i++) {
      if (!Number.isFinite(this.xs[i]) || !Number.isFinite(this.ys[i]))
        throw new RangeError(`point ${i} is not finite`);
      if (i > 0 && this.xs[i] === this.xs[i - 1]) throw new RangeError(`duplicate x ${this.xs[i]}`);
    }
  }

  at(x: number): number {
    const xs = this.xs;
    const n = xs.length;
    let hi = 1;
    if (x >= xs[n - 1]) hi = n - 1;
    else if (x > xs[0]) {
      let lo = 0;
      hi = n - 1;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (xs[mid] <= x) lo = mid;
        else hi = mid;
      }
    }
    const x0 = xs[hi - 1];
    const y0 = this.ys[hi - 1];
    return y0 + ((this.ys[hi] - y0) * (x - x0)) / (xs[hi] - x0);
  }
}

export class InterpolatedPerfModel implements PerfModel {
  private readonly prefill: PiecewiseLinear;
  private readonly decode: PiecewiseLinear;

  constructor(options: InterpolatedPerfModelOptions) {
    this.prefill = new PiecewiseLinear(options.prefill);
    this.decode = new PiecewiseLinear(options.decode);
  }

  prefillMs(newTokens: number): number {
    return newTokens <= 0 ? 0 : Math.max(0, this.prefill.at(newTokens));
  }

  decodeMs(activeKvTokens: number, _totalKvTokens: number, batchSize: number): number {
    // Like Dynamo, a token-emitting step never takes less than 1 ms.
    return batchSize <= 0 ? 0 : Math.max(1, this.decode.at(activeKvTokens));
  }
}
