/**
 * Cost and selection (Dynamo's scheduler.rs): cost = weight × prefill_blocks + decode_blocks, lowest
 * wins; with a temperature > 0, a softmax over range-normalised costs is sampled instead. Ties go
 * to the smaller tree, then to a random pick. Works over preallocated typed arrays indexed by
 * candidate: nothing is allocated per candidate or per call.
 */
import { type RandomSource, randomIndex } from './random.ts';

/** Dynamo's logit: `overlap_weight × prefill_blocks + decode_blocks` (lower is better). */
export function routingCost(overlapWeight: number, prefillBlocks: number, decodeBlocks: number): number {
  return overlapWeight * prefillBlocks + decodeBlocks;
}

/**
 * Softmax weights (unnormalised, largest = 1) of `costs[0..count)`: s_i = −(c_i / (max − min)) / T,
 * w_i = exp(s_i − max s). Requires T > 0 and max > min. Returns the sum of the weights.
 */
export function softmaxWeights(
  costs: Float64Array,
  count: number,
  temperature: number,
  out: Float64Array,
): number {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < count; i++) {
    const c = costs[i];
    if (c < min) min = c;
    if (c > max) max = c;
  }
  const range = max - min;
  const top = -(min / range) / temperature;
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const w = Math.exp(-(costs[i] / range) / temperature - top);
    out[i] = w;
    sum += w;
  }
  return sum;
}

export class CostSelector {
  private ties = new Int32Array(64);
  private weights = new Float64Array(64);

  constructor(private readonly random: RandomSource) {}

  /**
   * Picks a candidate index in [0, count). `treeSize(i)` is only asked for candidates tied at the
   * lowest cost (deterministic mode).
   */
  select(
    costs: Float64Array,
    count: number,
    temperature: number,
    treeSize: (candidate: number) => number,
  ): number {
    if (count <= 1) return 0;
    if (this.ties.length < count) {
      this.ties = new Int32Array(count * 2);
      this.weights = new Float64Array(count * 2);
    }
    if (temperature > 0) return this.sample(costs, count, temperature);

    let min = Number.POSITIVE_INFINITY;
    let tieCount = 0;
    const ties = this.ties;
    for (let i = 0; i < count; i++) {
      const c = costs[i];
      if (c < min) {
        min = c;
        tieCount = 0;
        ties[tieCount++] = i;
      } else if (c === min) {
        ties[tieCount++] = i;
      }
    }
    if (tieCount === 1) return ties[0];
    return this.breakTies(tieCount, treeSize);
  }

  /**
   * The choice select() makes when exactly the candidates `tied[0..n)` (ascending candidate indices)
   * share the lowest cost in deterministic mode: smallest tree, then uniform random.
   */
  pickAmongTied(tied: Int32Array, n: number, treeSize: (candidate: number) => number): number {
    if (n === 1) return tied[0];
    if (this.ties.length < n) {
      this.ties = new Int32Array(n * 2);
      this.weights = new Float64Array(n * 2);
    }
    this.ties.set(tied.subarray(0, n));
    return this.breakTies(n, treeSize);
  }

  /** Among ties[0..n): smallest tree, then uniform random. */
  private breakTies(n: number, treeSize: (candidate: number) => number): number {
    const ties = this.ties;
    let smallest = Number.POSITIVE_INFINITY;
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const candidate = ties[i];
      const size = treeSize(candidate);
      if (size < smallest) {
        smallest = size;
        kept = 0;
        ties[kept++] = candidate;
      } else if (size === smallest) {
        ties[kept++] = candidate;
      }
    }
    return kept === 1 ? ties[0] : ties[randomIndex(this.random, kept)];
  }

  private sample(costs: Float64Array, count: number, temperature: number): number {
    let min = costs[0];
    let max = costs[0];
    for (let i = 1; i < count; i++) {
      const c = costs[i];
      if (c < min) min = c;
      if (c > max) max = c;
    }
    if (max === min) return randomIndex(this.random, count);
    const weights = this.weights;
    const sum = softmaxWeights(costs, count, temperature, weights);
    const target = this.random() * sum;
    let cumulative = 0;
    for (let i = 0; i < count; i++) {
      cumulative += weights[i];
      if (target < cumulative) return i;
    }
    return count - 1;
  }
}
