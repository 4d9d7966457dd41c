/**
 * Approximate indexing (Dynamo's `use_kv_events=false`): without engine events, the router records
 * the blocks of its own routing decisions as if the chosen (worker, rank) had stored them, and forgets
 * them after a TTL. Also serves short-lived "predicted blocks" (a few seconds' TTL).
 *
 * Every recorded block has an expiry (re-recording refreshes it); expired blocks are removed lazily on
 * the next call. When the inner index grows past `maxTreeSize`, recorded blocks are pruned down to
 * floor(maxTreeSize * pruneTargetRatio), earliest expiry first, ties deepest first.
 * Events passed to apply() go straight to the inner indexer; blocks they store or remove stop being
 * tracked (engine-reported blocks do not expire).
 */
import { u64FromHalves } from '../tokens/u64.ts';
import { type Clock, realClock } from '../util/clock.ts';
import type { KvEventError } from './errors.ts';
import type { RouterEvent, StoredBlock, WorkerId } from './events.ts';
import type { FindMatchesOptions, IndexerStats, KvIndexer, OverlapScores } from './indexer.ts';
import type { OwnerTable } from './owners.ts';
import { RadixTreeIndexer } from './radix-tree.ts';

export const DEFAULT_APPROX_TTL_MS = 120_000;
export const DEFAULT_MAX_TREE_SIZE = 2 ** 20;
export const DEFAULT_PRUNE_TARGET_RATIO = 0.8;

export interface ApproximateIndexerOptions {
  /** The index that holds the blocks; default a new RadixTreeIndexer sharing `owners`. */
  readonly inner?: KvIndexer;
  /** Owner table for the default inner indexer (ignored when `inner` is given). */
  readonly owners?: OwnerTable;
  readonly clock?: Clock;
  readonly ttlMs?: number;
  readonly maxTreeSize?: number;
  readonly pruneTargetRatio?: number;
}

interface Tracked {
  readonly owner: number;
  readonly blockHash: bigint;
  /** 1-based position in the recorded chain; deeper blocks are pruned first on equal expiry. */
  readonly depth: number;
  readonly expiresAt: number;
}

/** Earliest expiry first, then deepest first. */
function before(a: Tracked, b: Tracked): boolean {
  return a.expiresAt < b.expiresAt || (a.expiresAt === b.expiresAt && a.depth > b.depth);
}

/** Binary min-heap of tracked blocks; superseded entries are skipped lazily and compacted away. */
class ExpiryHeap {
  items: Tracked[] = [];

  get length(): number {
    return this.items.length;
  }

  peek(): Tracked | undefined {
    return this.items[0];
  }

  push(item: Tracked): void {
    const items = this.items;
    let i = items.length;
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(item, items[parent])) break;
      items[i] = items[parent];
      i = parent;
    }
    items[i] = item;
  }

  pop(): Tracked | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) this.siftDown(0, last);
    return top;
  }

  rebuild(live: Tracked[]): void {
    this.items = live;
    for (let i = (live.length >> 1) - 1; i >= 0; i--) this.siftDown(i, live[i]);
  }

  private siftDown(i: number, item: Tracked): void {
    const items = this.items;
    const n = items.length;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && before(items[child + 1], items[child])) child++;
      if (!before(items[child], item)) break;
      items[i] = items[child];
      i = child;
    }
    items[i] = item;
  }
}

export class ApproximateIndexer implements KvIndexer {
  readonly inner: KvIndexer;
  readonly ttlMs: number;
  readonly maxTreeSize: number;
  readonly pruneTargetRatio: number;
  private readonly clock: Clock;
  /** owner -> blockHash -> its current tracking record. */
  private readonly tracked = new Map<number, Map<bigint, Tracked>>();
  private trackedCount = 0;
  private readonly heap = new ExpiryHeap();

  constructor(options: ApproximateIndexerOptions = {}) {
    this.inner = options.inner ?? new RadixTreeIndexer({ owners: options.owners });
    this.clock = options.clock ?? realClock;
    this.ttlMs = options.ttlMs ?? DEFAULT_APPROX_TTL_MS;
    this.maxTreeSize = options.maxTreeSize ?? DEFAULT_MAX_TREE_SIZE;
    this.pruneTargetRatio = options.pruneTargetRatio ?? DEFAULT_PRUNE_TARGET_RATIO;
    if (!(this.ttlMs > 0)) throw new RangeError(`ttlMs must be positive, got ${this.ttlMs}`);
    if (!(this.maxTreeSize >= 1)) throw new RangeError(`maxTreeSize must be >= 1, got ${this.maxTreeSize}`);
    if (!(this.pruneTargetRatio > 0 && this.pruneTargetRatio <= 1))
      throw new RangeError(`pruneTargetRatio must be in (0, 1], got ${this.pruneTargetRatio}`);
  }

  get owners(): OwnerTable {
    return this.inner.owners;
  }

  get size(): number {
    this.purgeExpired();
    return this.inner.size;
  }

  /** Blocks currently held with an expiry. */
  get trackedBlocks(): number {
    this.purgeExpired();
    return this.trackedCount;
  }

  /**
   * Records that the request with these block hashes was routed to (workerId, dpRank): its chain of
   * blocks (tokens hash = local hash, block hash = sequence hash, from the root) is indexed for that
   * owner until `ttlMs` (default: the indexer's) from now. Returns the inner indexer's error, if any.
   */
  recordRoute(
    workerId: WorkerId,
    dpRank: number,
    localHashes: Uint32Array,
    sequenceHashes: Uint32Array,
    ttlMs = this.ttlMs,
  ): KvEventError | null {
    this.purgeExpired();
    const count = Math.min(localHashes.length, sequenceHashes.length) >>> 1;
    if (count === 0) return null;
    const blocks = new Array<StoredBlock>(count);
    for (let i = 0; i < count; i++)
      blocks[i] = {
        tokensHash: u64FromHalves(localHashes[2 * i], localHashes[2 * i + 1]),
        blockHash: u64FromHalves(sequenceHashes[2 * i], sequenceHashes[2 * i + 1]),
      };
    const error = this.inner.apply({
      workerId,
      event: { eventId: 0n, dpRank, data: { kind: 'stored', parentHash: null, blocks } },
    });
    if (error !== null) return error;
    const owner = this.inner.owners.find(workerId, dpRank);
    let byHash = this.tracked.get(owner);
    if (byHash === undefined) {
      byHash = new Map();
      this.tracked.set(owner, byHash);
    }
    const expiresAt = this.clock.now() + ttlMs;
    for (let i = 0; i < count; i++) {
      const blockHash = blocks[i].blockHash;
      const entry: Tracked = { owner, blockHash, depth: i + 1, expiresAt };
      if (!byHash.has(blockHash)) this.trackedCount++;
      byHash.set(blockHash, entry);
      this.heap.push(entry);
    }
    this.compactHeap();
    if (this.inner.size > this.maxTreeSize) this.prune();
    return null;
  }

  apply(event: RouterEvent): KvEventError | null {
    this.purgeExpired();
    const { data, dpRank } = event.event;
    if (data.kind === 'cleared') this.untrackWorker(event.workerId);
    else {
      const byHash = this.tracked.get(this.inner.owners.find(event.workerId, dpRank));
      if (byHash !== undefined) {
        const hashes = data.kind === 'stored' ? data.blocks.map((b) => b.blockHash) : data.blockHashes;
        for (const hash of hashes) if (byHash.delete(hash)) this.trackedCount--;
      }
    }
    return this.inner.apply(event);
  }

  removeWorker(workerId: WorkerId): void {
    this.purgeExpired();
    this.untrackWorker(workerId);
    this.inner.removeWorker(workerId);
  }

  findMatches(localHashes: Uint32Array, options?: FindMatchesOptions): OverlapScores {
    this.purgeExpired();
    return this.inner.findMatches(localHashes, options);
  }

  treeSize(owner: number): number {
    this.purgeExpired();
    return this.inner.treeSize(owner);
  }

  dump(): RouterEvent[] {
    this.purgeExpired();
    return this.inner.dump();
  }

  stats(): IndexerStats {
    this.purgeExpired();
    const inner = this.inner.stats();
    return { ...inner, bytes: inner.bytes + this.trackedCount * 120 + this.heap.length * 8 };
  }

  /** Removes every recorded block whose expiry has passed; returns how many. */
  purgeExpired(): number {
    const now = this.clock.now();
    let top = this.heap.peek();
    if (top === undefined || top.expiresAt > now) return 0;
    const victims = new Map<number, bigint[]>();
    let removed = 0;
    while (top !== undefined && top.expiresAt <= now) {
      this.heap.pop();
      if (this.takeIfCurrent(top, victims)) removed++;
      top = this.heap.peek();
    }
    this.removeFromInner(victims);
    return removed;
  }

  /** Prunes recorded blocks until the inner index is at the target size (or nothing is left to prune). */
  private prune(): void {
    const target = Math.floor(this.maxTreeSize * this.pruneTargetRatio);
    let excess = this.inner.size - target;
    const victims = new Map<number, bigint[]>();
    while (excess > 0 && this.heap.length > 0) {
      const entry = this.heap.pop()!;
      if (this.takeIfCurrent(entry, victims)) excess--;
    }
    this.removeFromInner(victims);
  }

  /** Untracks `entry` into `victims` when it is still the live record of its block. */
  private takeIfCurrent(entry: Tracked, victims: Map<number, bigint[]>): boolean {
    const byHash = this.tracked.get(entry.owner);
    if (byHash === undefined || byHash.get(entry.blockHash) !== entry) return false;
    byHash.delete(entry.blockHash);
    this.trackedCount--;
    const list = victims.get(entry.owner);
    if (list === undefined) victims.set(entry.owner, [entry.blockHash]);
    else list.push(entry.blockHash);
    return true;
  }

  private removeFromInner(victims: Map<number, bigint[]>): void {
    for (const [owner, blockHashes] of victims) {
      if (!this.inner.owners.isLive(owner)) continue;
      const { workerId, dpRank } = this.inner.owners.pairOf(owner);
      // Blocks already removed by the inner index (e.g. worker removed) are not an error here.
      this.inner.apply({ workerId, event: { eventId: 0n, dpRank, data: { kind: 'removed', blockHashes } } });
    }
  }

  private untrackWorker(workerId: WorkerId): void {
    for (const owner of this.inner.owners.ownersOf(workerId)) {
      const byHash = this.tracked.get(owner);
      if (byHash === undefined) continue;
      this.trackedCount -= byHash.size;
      this.tracked.delete(owner);
    }
  }

  /** Drops superseded heap entries once they outnumber the live ones. */
  private compactHeap(): void {
    if (this.heap.length <= 2 * this.trackedCount + 1024) return;
    const live: Tracked[] = [];
    for (const byHash of this.tracked.values()) for (const entry of byHash.values()) live.push(entry);
    this.heap.rebuild(live);
  }
}
