/**
 * The infinite-cache oracle: the best KV hit rate any routing policy could reach on a trace. A
 * prompt block (at the engine block size) is a hit when any earlier request, in arrival order, had a
 * block with the same sequence hash (same tokens and same prefix). Real engines have finite caches
 * and several ranks, so no policy can beat it.
 */
import { BlockHasher } from '../tokens/block-hash.ts';
import { U64Set } from './u64-set.ts';

export class PrefixCacheOracle {
  readonly blockSize: number;
  private readonly hasher: BlockHasher;
  private readonly seen = new U64Set(1 << 16);
  private local = new Uint32Array(0);
  private seq = new Uint32Array(0);
  private hitTokensTotal = 0;
  private promptTokensTotal = 0;

  constructor(blockSize: number, seed?: bigint) {
    this.blockSize = blockSize;
    this.hasher = new BlockHasher(seed === undefined ? { blockSize } : { blockSize, seed });
  }

  /** Records one request's prompt, in arrival order; returns its prompt tokens an infinite cache holds. */
  observe(tokens: ArrayLike<number>): number {
    const blocks = this.hasher.blockCount(tokens.length);
    if (this.local.length < blocks * 2) {
      this.local = new Uint32Array(blocks * 4);
      this.seq = new Uint32Array(blocks * 4);
    }
    const local = this.hasher.localHashes(tokens, this.local.subarray(0, blocks * 2));
    const seq = this.hasher.sequenceHashes(local, this.seq.subarray(0, blocks * 2));
    let hits = 0;
    for (let b = 0; b < blocks; b++) {
      if (!this.seen.add(seq[2 * b], seq[2 * b + 1])) hits++;
    }
    const hitTokens = hits * this.blockSize;
    this.hitTokensTotal += hitTokens;
    this.promptTokensTotal += tokens.length;
    return hitTokens;
  }

  get hitTokens(): number {
    return this.hitTokensTotal;
  }

  get promptTokens(): number {
    return this.promptTokensTotal;
  }

  /** Hit tokens / prompt tokens (0 before any request). */
  get hitRate(): number {
    return this.promptTokensTotal === 0 ? 0 : this.hitTokensTotal / this.promptTokensTotal;
  }

  /** Distinct blocks seen. */
  get distinctBlocks(): number {
    return this.seen.size;
  }
}
