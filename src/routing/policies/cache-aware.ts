/**
 * SGLang's cache_aware policy (sgl-router policies/cache_aware.rs), with a (worker, dp_rank) as the
 * unit and token blocks instead of characters:
 * - load = in-flight requests per rank;
 * - imbalanced when (max − min) > balanceAbsThreshold and max > min × balanceRelThreshold:
 *   route to the least-loaded rank;
 * - otherwise prefix-match the prompt in an approximate tree of past decisions per rank; when the
 *   best match covers more than cacheThreshold of the prompt's blocks, route there, else to the
 *   least-loaded rank (newer SGLang; older versions took the smallest tree, ignoring load);
 * - the prompt is then inserted into the chosen rank's tree (in both cases).
 * The tree keeps at most maxTreeSize blocks, evicting the least recently routed first (eviction
 * runs on insert, so the bound is never exceeded between eviction ticks).
 */
import type { WorkerId } from '../../kv/events.ts';
import { BlockHasher } from '../../tokens/block-hash.ts';
import { createDecisionIndexer, type DecisionIndexer } from '../indexers.ts';
import type { PolicyName } from '../policy.ts';
import { TokenBuffer } from '../request-input.ts';
import { BaselinePolicy, type BaselinePolicyOptions } from './baseline.ts';

export interface CacheAwareOptions {
  /** Minimum matched share of the prompt to follow the cache (SGLang CLI default 0.3). */
  readonly cacheThreshold?: number;
  /** Absolute in-flight request spread that counts as imbalance (default 64). */
  readonly balanceAbsThreshold?: number;
  /** Relative spread (max > min × this) that counts as imbalance (default 1.5). */
  readonly balanceRelThreshold?: number;
  /** Blocks kept in the tree (SGLang's 67,108,864 characters ≈ 2^20 blocks of 16 tokens). */
  readonly maxTreeSize?: number;
}

export const CACHE_AWARE_DEFAULTS = {
  cacheThreshold: 0.3,
  balanceAbsThreshold: 64,
  balanceRelThreshold: 1.5,
  maxTreeSize: 2 ** 20,
} as const;

/** Entries never expire by age: only size-based LRU eviction removes them. */
const NO_EXPIRY_SECS = 10 * 365 * 24 * 3600;

export class CacheAwarePolicy extends BaselinePolicy {
  readonly name: PolicyName = 'cache-aware';
  readonly settings: Required<CacheAwareOptions>;
  private readonly tree: DecisionIndexer;
  private readonly hasher: BlockHasher;
  private readonly tokens = new TokenBuffer();
  private matched = new Int32Array(64);
  private readonly requestLoad = (owner: number): number => this.active.activeRequests(owner);

  constructor(options: BaselinePolicyOptions & CacheAwareOptions = {}) {
    super(options);
    this.settings = {
      cacheThreshold: options.cacheThreshold ?? CACHE_AWARE_DEFAULTS.cacheThreshold,
      balanceAbsThreshold: options.balanceAbsThreshold ?? CACHE_AWARE_DEFAULTS.balanceAbsThreshold,
      balanceRelThreshold: options.balanceRelThreshold ?? CACHE_AWARE_DEFAULTS.balanceRelThreshold,
      maxTreeSize: options.maxTreeSize ?? CACHE_AWARE_DEFAULTS.maxTreeSize,
    };
    const { cacheThreshold, balanceAbsThreshold, balanceRelThreshold, maxTreeSize } = this.settings;
    if (!(cacheThreshold >= 0 && cacheThreshold <= 1))
      throw new RangeError('cacheThreshold must be in [0, 1]');
    if (!(balanceAbsThreshold >= 0)) throw new RangeError('balanceAbsThreshold must be >= 0');
    if (!(balanceRelThreshold >= 1)) throw new RangeError('balanceRelThreshold must be >= 1');
    if (!Number.isInteger(maxTreeSize) || maxTreeSize < 1)
      throw new RangeError('maxTreeSize must be a positive integer');
    this.hasher = new BlockHasher({ blockSize: this.blockSize });
    this.tree = createDecisionIndexer({
      owners: this.owners,
      clock: this.clock,
      ttlSecs: NO_EXPIRY_SECS,
      maxTreeSize,
      pruneTargetRatio: 1,
    });
  }

  /** Blocks held in the approximate tree. */
  get treeSize(): number {
    return this.tree.size;
  }

  protected override needsChoiceForSingle(): boolean {
    return true;
  }

  protected override forgetWorker(workerId: WorkerId): void {
    this.tree.removeWorker(workerId);
  }

  protected choose(
    tokens: ArrayLike<number>,
    candidates: Int32Array,
    count: number,
    commit: boolean,
  ): number {
    const local = this.hasher.localHashes(this.tokens.read(tokens));
    const blockCount = local.length >>> 1;
    this.collectMatches(local, blockCount);

    let index: number;
    if (this.imbalanced(candidates, count)) {
      index = this.leastLoaded(candidates, count, this.requestLoad);
    } else {
      index = this.bestMatch(candidates, count);
      const ratio = blockCount === 0 ? 0 : this.matched[candidates[index]] / blockCount;
      if (!(ratio > this.settings.cacheThreshold))
        index = this.leastLoaded(candidates, count, this.requestLoad);
    }
    const owner = candidates[index];
    this.lastOverlap = this.matched[owner];
    this.matched.fill(0);
    if (commit && blockCount > 0)
      this.tree.recordRoute(
        this.owners.workerOf(owner),
        this.owners.rankOf(owner),
        local,
        this.hasher.sequenceHashes(local),
      );
    return index;
  }

  private collectMatches(local: Uint32Array, blockCount: number): void {
    if (this.matched.length < this.owners.capacity) this.matched = new Int32Array(this.owners.capacity * 2);
    if (blockCount === 0) return;
    const scores = this.tree.findMatches(local);
    for (let i = 0; i < scores.count; i++) {
      const owner = scores.owners[i];
      if (owner < this.matched.length) this.matched[owner] = scores.blocks[i];
    }
  }

  private imbalanced(candidates: Int32Array, count: number): boolean {
    let min = Number.POSITIVE_INFINITY;
    let max = 0;
    for (let i = 0; i < count; i++) {
      const load = this.active.activeRequests(candidates[i]);
      if (load < min) min = load;
      if (load > max) max = load;
    }
    return max - min > this.settings.balanceAbsThreshold && max > min * this.settings.balanceRelThreshold;
  }

  /** Candidate with the longest match; ties to the fewest in-flight requests, then at random. */
  private bestMatch(candidates: Int32Array, count: number): number {
    let best = 0;
    let bestBlocks = -1;
    let bestLoad = Number.POSITIVE_INFINITY;
    let ties = 0;
    for (let i = 0; i < count; i++) {
      const owner = candidates[i];
      const blocks = this.matched[owner];
      const load = this.active.activeRequests(owner);
      if (blocks > bestBlocks || (blocks === bestBlocks && load < bestLoad)) {
        best = i;
        bestBlocks = blocks;
        bestLoad = load;
        ties = 1;
      } else if (blocks === bestBlocks && load === bestLoad && Math.floor(this.random() * ++ties) === 0) {
        best = i;
      }
    }
    return best;
  }
}
