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
import { isU64, u64FromHalves, u64Hi, u64Lo } from '../tokens/u64.ts';
import { type Clock, realClock } from '../util/clock.ts';
import type { KvEventError } from './errors.ts';
import { isDpRank, type RouterEvent, type StoredBlock, type WorkerId } from './events.ts';
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
  /** The block (sequence) hash as u32 halves: refreshes look blocks up without allocating. */
  readonly lo: number;
  readonly hi: number;
  /** 1-based position in the recorded chain; deeper blocks are pruned first on equal expiry. */
  readonly depth: number;
  /** When the block expires; only ever moves later. */
  expiresAt: number;
  /** The expiry the heap has it filed under (<= expiresAt; refreshed entries are re-filed when they surface). */
  heapKey: number;
  /** False once untracked (expired, pruned, or taken over by events); the heap then skips it. */
  live: boolean;
  /** Next entry whose `lo` collides in the owner's table. */
  next: Tracked | null;
}

/** Earliest expiry first, then deepest first. */
function before(a: Tracked, b: Tracked): boolean {
  return a.heapKey < b.heapKey || (a.heapKey === b.heapKey && a.depth > b.depth);
}

/** Binary min-heap of tracked blocks, each present at most once. */
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

  rebuild(items: Tracked[]): void {
    this.items = items;
    for (let i = (items.length >> 1) - 1; i >= 0; i--) this.siftDown(i, items[i]);
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

/** One owner's tracked blocks, keyed by the hash's low half with collision chains. */
class OwnerBlocks {
  readonly byLo = new Map<number, Tracked>();
  count = 0;

  find(lo: number, hi: number): Tracked | undefined {
    for (let entry = this.byLo.get(lo) ?? null; entry !== null; entry = entry.next)
      if (entry.hi === hi) return entry;
    return undefined;
  }

  add(entry: Tracked): void {
    entry.next = this.byLo.get(entry.lo) ?? null;
    this.byLo.set(entry.lo, entry);
    this.count++;
  }

  delete(entry: Tracked): void {
    let previous: Tracked | null = null;
    let cursor = this.byLo.get(entry.lo) ?? null;
    while (cursor !== null && cursor !== entry) {
      previous = cursor;
      cursor = cursor.next;
    }
    if (cursor === null) return;
    if (previous === null) {
      if (entry.next === null) this.byLo.delete(entry.lo);
      else this.byLo.set(entry.lo, entry.next);
    } else previous.next = entry.next;
    entry.next = null;
    entry.live = false;
    this.count--;
  }
}

export class ApproximateIndexer implements KvIndexer {
  readonly inner: KvIndexer;
  readonly ttlMs: number;
  readonly maxTreeSize: number;
  readonly pruneTargetRatio: number;
  private readonly clock: Clock;
  private readonly tracked = new Map<number, OwnerBlocks>();
  private trackedCount = 0;
  private readonly heap = new ExpiryHeap();
  /** The inner index when it takes packed hashes (no bigint per recorded block), else null. */
  private readonly packedInner: RadixTreeIndexer | null;
  /** [tokensLo, tokensHi, blockLo, blockHi] per block of the chain being stored. */
  private packedBlocks = new Uint32Array(1024);

  constructor(options: ApproximateIndexerOptions = {}) {
    this.inner = options.inner ?? new RadixTreeIndexer({ owners: options.owners });
    this.packedInner = this.inner instanceof RadixTreeIndexer ? this.inner : null;
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
   * owner until at least `ttlMs` (default: the indexer's) from now; a block never expires sooner
   * because of a re-record with a shorter TTL. Returns the inner indexer's error, if any; the
   * chain's already tracked prefix is refreshed even when its tail cannot be stored.
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
    const expiresAt = this.clock.now() + ttlMs;
    let owner = this.inner.owners.find(workerId, dpRank);
    let blocks = owner < 0 ? undefined : this.tracked.get(owner);
    // The chain's tracked prefix is in the inner index already: it is refreshed, only the tail stored.
    let first = 0;
    if (blocks !== undefined)
      for (; first < count; first++) {
        const entry = blocks.find(sequenceHashes[2 * first], sequenceHashes[2 * first + 1]);
        if (entry === undefined || entry.depth !== first + 1) break;
        if (expiresAt > entry.expiresAt) entry.expiresAt = expiresAt;
      }
    if (first < count) {
      let error = this.storeBlocks(workerId, dpRank, localHashes, sequenceHashes, first, count);
      // Should the inner index have lost the tracked prefix, store the whole chain from the root.
      if (error !== null && first > 0)
        error = this.storeBlocks(workerId, dpRank, localHashes, sequenceHashes, 0, count);
      if (error !== null) return error;
      if (blocks === undefined) {
        // The owner's first tracked chain: the store interned the owner if it was new.
        if (owner < 0) owner = this.inner.owners.find(workerId, dpRank);
        blocks = new OwnerBlocks();
        this.tracked.set(owner, blocks);
      }
    }
    for (let i = first; i < count; i++) {
      const lo = sequenceHashes[2 * i];
      const hi = sequenceHashes[2 * i + 1];
      const entry = blocks!.find(lo, hi);
      if (entry !== undefined && entry.depth === i + 1) {
        if (expiresAt > entry.expiresAt) entry.expiresAt = expiresAt;
        continue;
      }
      if (entry !== undefined) this.untrack(blocks!, entry);
      const fresh: Tracked = {
        owner,
        lo,
        hi,
        depth: i + 1,
        expiresAt,
        heapKey: expiresAt,
        live: true,
        next: null,
      };
      blocks!.add(fresh);
      this.trackedCount++;
      this.heap.push(fresh);
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
      const blocks = this.tracked.get(this.inner.owners.find(event.workerId, dpRank));
      if (blocks !== undefined) {
        const hashes = data.kind === 'stored' ? data.blocks.map((b) => b.blockHash) : data.blockHashes;
        for (const hash of hashes) {
          const entry = blocks.find(u64Lo(hash), u64Hi(hash));
          if (entry !== undefined) this.untrack(blocks, entry);
        }
      }
    }
    return this.inner.apply(event);
  }

  removeWorker(workerId: WorkerId): void {
    this.purgeExpired();
    this.untrackWorker(workerId);
    this.inner.removeWorker(workerId);
  }

  removeRank(workerId: WorkerId, dpRank: number): void {
    this.purgeExpired();
    this.untrackOwner(this.inner.owners.find(workerId, dpRank));
    this.inner.removeRank(workerId, dpRank);
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
    return { ...inner, bytes: inner.bytes + this.trackedCount * 100 + this.heap.length * 8 };
  }

  /** Removes every recorded block whose expiry has passed; returns how many. */
  purgeExpired(): number {
    const now = this.clock.now();
    let top = this.heap.peek();
    if (top === undefined || top.heapKey > now) return 0;
    const victims = new Map<number, number[]>();
    let removed = 0;
    while (top !== undefined && top.heapKey <= now) {
      this.heap.pop();
      if (top.live) {
        if (top.expiresAt > now) this.refile(top);
        else {
          this.take(top, victims);
          removed++;
        }
      }
      top = this.heap.peek();
    }
    this.removeFromInner(victims);
    return removed;
  }

  /**
   * Stores blocks [first, count) of the chain under block first − 1 (the root when first is 0):
   * through the radix tree's packed API when it can (no bigint per block), else as a stored event.
   */
  private storeBlocks(
    workerId: WorkerId,
    dpRank: number,
    localHashes: Uint32Array,
    sequenceHashes: Uint32Array,
    first: number,
    count: number,
  ): KvEventError | null {
    const hasParent = first > 0;
    const parentLo = hasParent ? sequenceHashes[2 * first - 2] : 0;
    const parentHi = hasParent ? sequenceHashes[2 * first - 1] : 0;
    if (this.packedInner !== null && isU64(workerId) && isDpRank(dpRank)) {
      const words = 4 * (count - first);
      if (this.packedBlocks.length < words) this.packedBlocks = new Uint32Array(2 * words);
      const packed = this.packedBlocks;
      for (let i = first, at = 0; i < count; i++, at += 4) {
        packed[at] = localHashes[2 * i];
        packed[at + 1] = localHashes[2 * i + 1];
        packed[at + 2] = sequenceHashes[2 * i];
        packed[at + 3] = sequenceHashes[2 * i + 1];
      }
      const owner = this.inner.owners.intern(workerId, dpRank);
      return this.packedInner.applyStoredPacked(
        owner,
        hasParent,
        parentLo,
        parentHi,
        packed.subarray(0, words),
      );
    }
    const blocks = new Array<StoredBlock>(count - first);
    for (let i = first; i < count; i++)
      blocks[i - first] = {
        tokensHash: u64FromHalves(localHashes[2 * i], localHashes[2 * i + 1]),
        blockHash: u64FromHalves(sequenceHashes[2 * i], sequenceHashes[2 * i + 1]),
      };
    const parentHash = hasParent ? u64FromHalves(parentLo, parentHi) : null;
    return this.inner.apply({
      workerId,
      event: { eventId: 0n, dpRank, data: { kind: 'stored', parentHash, blocks } },
    });
  }

  /** Prunes recorded blocks until the inner index is at the target size (or nothing is left to prune). */
  private prune(): void {
    const target = Math.floor(this.maxTreeSize * this.pruneTargetRatio);
    let excess = this.inner.size - target;
    const victims = new Map<number, number[]>();
    while (excess > 0 && this.heap.length > 0) {
      const entry = this.heap.pop()!;
      if (!entry.live) continue;
      if (entry.heapKey < entry.expiresAt) this.refile(entry);
      else {
        this.take(entry, victims);
        excess--;
      }
    }
    this.removeFromInner(victims);
  }

  /** Files a refreshed entry under its current expiry. */
  private refile(entry: Tracked): void {
    entry.heapKey = entry.expiresAt;
    this.heap.push(entry);
  }

  /** Untracks a live entry and queues its block ([lo, hi]) for removal from the inner index. */
  private take(entry: Tracked, victims: Map<number, number[]>): void {
    const blocks = this.tracked.get(entry.owner)!;
    this.untrack(blocks, entry);
    const list = victims.get(entry.owner);
    if (list === undefined) victims.set(entry.owner, [entry.lo, entry.hi]);
    else list.push(entry.lo, entry.hi);
  }

  private untrack(blocks: OwnerBlocks, entry: Tracked): void {
    blocks.delete(entry);
    this.trackedCount--;
  }

  /** Removes queued blocks (per owner, [lo, hi] pairs) from the inner index. */
  private removeFromInner(victims: Map<number, number[]>): void {
    for (const [owner, halves] of victims) {
      if (!this.inner.owners.isLive(owner)) continue;
      // Blocks already removed from the inner index are not an error here.
      if (this.packedInner !== null) {
        this.packedInner.applyRemovedPacked(owner, Uint32Array.from(halves));
        continue;
      }
      const { workerId, dpRank } = this.inner.owners.pairOf(owner);
      const blockHashes: bigint[] = [];
      for (let i = 0; i < halves.length; i += 2) blockHashes.push(u64FromHalves(halves[i], halves[i + 1]));
      this.inner.apply({ workerId, event: { eventId: 0n, dpRank, data: { kind: 'removed', blockHashes } } });
    }
  }

  private untrackWorker(workerId: WorkerId): void {
    for (const owner of this.inner.owners.ownersOf(workerId)) this.untrackOwner(owner);
  }

  private untrackOwner(owner: number): void {
    const blocks = this.tracked.get(owner);
    if (blocks === undefined) return;
    for (const head of blocks.byLo.values())
      for (let entry: Tracked | null = head; entry !== null; entry = entry.next) entry.live = false;
    this.trackedCount -= blocks.count;
    this.tracked.delete(owner);
  }

  /** Drops dead heap entries once they outnumber the live ones. */
  private compactHeap(): void {
    if (this.heap.length <= 2 * this.trackedCount + 1024) return;
    this.heap.rebuild(this.heap.items.filter((entry) => entry.live));
  }
}
