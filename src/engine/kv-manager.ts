/**
 * The KV block pool of one data-parallel rank (Dynamo mocker's KvManager, vLLM's block pool):
 * - full blocks are keyed by their sequence hash and shared between requests (prefix caching);
 * - partial blocks (the unfinished tail of a sequence) belong to one request and have no hash;
 * - an active block has a reference count > 0; at 0 a full block joins an LRU pool of inactive
 *   (cached, evictable) blocks and a partial block is destroyed;
 * - capacity counts active + inactive blocks; a new block evicts the least recently used inactive
 *   block (a `removed` event) when the pool is full; active blocks are never evicted.
 * Every change of the set of full blocks is published as a KvCacheEvent with this rank's own
 * event id counter (from 0) and dp_rank, so the events alone rebuild the rank's block set.
 */
import type { KvCacheEvent, StoredBlock } from '../kv/events.ts';

export interface KvBlock {
  /** Sequence hash (the event's block_hash); null while the block is partial or anonymous. */
  seqHash: bigint | null;
  /** Local hash of the block's tokens (the event's tokens_hash); 0n while partial. */
  tokensHash: bigint;
  /** Sequence hash of the block before it, null for the first block. */
  parentHash: bigint | null;
  refs: number;
  /** LRU links, set while the block is inactive. */
  prev: KvBlock | null;
  next: KvBlock | null;
}

export interface KvManagerOptions {
  readonly capacity: number;
  readonly dpRank: number;
  /** Share full blocks by hash; off = every block is private to its request and never cached. */
  readonly enablePrefixCaching: boolean;
  /** Publish KV events (Dynamo: only with prefix caching, and never on decode workers). */
  readonly publishEvents: boolean;
  readonly onEvent?: (event: KvCacheEvent) => void;
}

/** Full blocks of a sequence: parallel arrays of sequence hashes and local (tokens) hashes. */
export interface BlockHashes {
  readonly seqHashes: readonly bigint[];
  readonly localHashes: readonly bigint[];
}

export class KvManager {
  readonly capacity: number;
  readonly dpRank: number;
  private readonly caching: boolean;
  private readonly publishing: boolean;
  private readonly onEvent: ((event: KvCacheEvent) => void) | undefined;
  private readonly byHash = new Map<bigint, KvBlock>();
  /** LRU list of inactive full blocks: head is the least recently used. */
  private lruHead: KvBlock | null = null;
  private lruTail: KvBlock | null = null;
  private inactive = 0;
  private active = 0;
  private nextEventId = 0;
  private evictions = 0;

  constructor(options: KvManagerOptions) {
    this.capacity = options.capacity;
    this.dpRank = options.dpRank;
    this.caching = options.enablePrefixCaching;
    this.publishing = options.publishEvents;
    this.onEvent = options.onEvent;
  }

  get activeBlocks(): number {
    return this.active;
  }

  get inactiveBlocks(): number {
    return this.inactive;
  }

  get usedBlocks(): number {
    return this.active + this.inactive;
  }

  /** Inactive blocks evicted so far. */
  get evictedBlocks(): number {
    return this.evictions;
  }

  /** Id the next published event will carry. */
  get nextEventIdValue(): number {
    return this.nextEventId;
  }

  /** How many leading blocks of `seqHashes` are held (active or inactive): the prefix-cache hit. */
  cachedPrefixBlocks(seqHashes: readonly bigint[], limit = seqHashes.length): number {
    if (!this.caching) return 0;
    const n = Math.min(limit, seqHashes.length);
    let i = 0;
    while (i < n && this.byHash.has(seqHashes[i])) i++;
    return i;
  }

  /**
   * Takes a reference on full blocks [from, to) of a sequence and, if asked, one new partial block,
   * appending them to `out` in order. New full blocks are published as stored events, one per
   * contiguous run, whose parent is the block just before the run. Returns how many leading blocks
   * were already held (the prefix-cache hit), or -1, changing nothing, when active blocks would
   * exceed the capacity.
   */
  acquire(hashes: BlockHashes, from: number, to: number, withPartial: boolean, out: KvBlock[]): number {
    const base = out.length;
    let needed = withPartial ? 1 : 0;
    if (!this.caching) {
      needed += to - from;
      if (this.active + needed > this.capacity) return -1;
      for (let i = from; i < to; i++) out.push(this.createAnonymous());
      if (withPartial) out.push(this.createAnonymous());
      return 0;
    }
    // One lookup per block: collect what is held, count what needs a slot.
    let missing = 0;
    let leading = 0;
    const byHash = this.byHash;
    const seqHashes = hashes.seqHashes;
    for (let i = from; i < to; i++) {
      const block = byHash.get(seqHashes[i]);
      if (block === undefined) {
        out.push(null as unknown as KvBlock);
        missing++;
        needed++;
      } else {
        out.push(block);
        if (block.refs === 0) needed++;
        if (leading === i - from) leading++;
      }
    }
    if (this.active + needed > this.capacity) {
      out.length = base;
      return -1;
    }
    // Reference every held block before making room for the new ones, so that eviction can never
    // take a block this very sequence is about to reuse.
    for (let j = base; j < out.length; j++) if (out[j] !== null) this.reference(out[j]);
    if (missing > 0) this.createMissing(hashes, from, to, out, base);
    if (withPartial) out.push(this.createAnonymous());
    return leading;
  }

  private createMissing(hashes: BlockHashes, from: number, to: number, out: KvBlock[], base: number): void {
    let run: StoredBlock[] | null = null;
    let runParent: bigint | null = null;
    for (let i = from; i < to; i++) {
      if (out[base + i - from] !== null) {
        if (run !== null) this.publishStored(runParent, run);
        run = null;
        continue;
      }
      const seqHash = hashes.seqHashes[i];
      const tokensHash = hashes.localHashes[i];
      const parentHash = i > 0 ? hashes.seqHashes[i - 1] : null;
      this.makeRoom();
      const block: KvBlock = { seqHash, tokensHash, parentHash, refs: 1, prev: null, next: null };
      this.byHash.set(seqHash, block);
      this.active++;
      out[base + i - from] = block;
      if (this.publishing) {
        if (run === null) {
          run = [];
          runParent = parentHash;
        }
        run.push({ blockHash: seqHash, tokensHash });
      }
    }
    if (run !== null) this.publishStored(runParent, run);
  }

  /**
   * Drops one reference on blocks[from, to), last block first (so a sequence's tail becomes
   * least recently used before its prefix and is evicted first).
   */
  release(blocks: readonly KvBlock[], from = 0, to = blocks.length): void {
    for (let i = to - 1; i >= from; i--) this.dereference(blocks[i]);
  }

  /**
   * Turns a sequence's partial block, now full, into a full block. If the pool already holds a
   * block with that hash the partial is destroyed and the held block is referenced instead (the
   * returned block); otherwise the partial block takes the hash and is published as stored.
   */
  promote(partial: KvBlock, seqHash: bigint, tokensHash: bigint, parentHash: bigint | null): KvBlock {
    if (!this.caching) return partial;
    const existing = this.byHash.get(seqHash);
    if (existing !== undefined) {
      this.dereference(partial);
      this.reference(existing);
      return existing;
    }
    partial.seqHash = seqHash;
    partial.tokensHash = tokensHash;
    partial.parentHash = parentHash;
    this.byHash.set(seqHash, partial);
    if (this.publishing) this.publishStored(parentHash, [{ blockHash: seqHash, tokensHash }]);
    return partial;
  }

  /** Whether a new block can be had (a free slot, or an inactive block to evict). */
  canAllocate(count = 1): boolean {
    return this.active + count <= this.capacity;
  }

  /** Allocates one partial block, or null when every block is active. */
  allocatePartial(): KvBlock | null {
    if (this.active >= this.capacity) return null;
    return this.createAnonymous();
  }

  /** Drops every inactive block and publishes `cleared`; refused while any block is active. */
  clear(): boolean {
    if (this.active > 0) return false;
    this.byHash.clear();
    this.lruHead = null;
    this.lruTail = null;
    this.inactive = 0;
    this.publish({ kind: 'cleared' });
    return true;
  }

  /** Full blocks held (active or inactive), in no particular order. */
  *fullBlocks(): IterableIterator<KvBlock> {
    yield* this.byHash.values();
  }

  has(seqHash: bigint): boolean {
    return this.byHash.has(seqHash);
  }

  refsOf(seqHash: bigint): number {
    return this.byHash.get(seqHash)?.refs ?? 0;
  }

  private createAnonymous(): KvBlock {
    this.makeRoom();
    this.active++;
    return { seqHash: null, tokensHash: 0n, parentHash: null, refs: 1, prev: null, next: null };
  }

  /** Evicts the LRU inactive block if the pool is full (callers checked that active < capacity). */
  private makeRoom(): void {
    if (this.active + this.inactive < this.capacity) return;
    const victim = this.lruHead;
    if (victim === null) throw new Error('KvManager: no block to evict (capacity check skipped)');
    this.unlinkInactive(victim);
    this.byHash.delete(victim.seqHash!);
    this.evictions++;
    if (this.publishing) this.publish({ kind: 'removed', blockHashes: [victim.seqHash!] });
  }

  private reference(block: KvBlock): void {
    if (block.refs === 0) {
      this.unlinkInactive(block);
      this.active++;
    }
    block.refs++;
  }

  private dereference(block: KvBlock): void {
    if (block.refs <= 0) throw new Error('KvManager: block released more often than acquired');
    if (--block.refs > 0) return;
    this.active--;
    if (block.seqHash === null) return; // partial or anonymous: destroyed
    if (!this.caching) {
      this.byHash.delete(block.seqHash);
      return;
    }
    // Most recently used goes to the tail.
    block.prev = this.lruTail;
    block.next = null;
    if (this.lruTail !== null) this.lruTail.next = block;
    else this.lruHead = block;
    this.lruTail = block;
    this.inactive++;
  }

  private unlinkInactive(block: KvBlock): void {
    if (block.prev !== null) block.prev.next = block.next;
    else this.lruHead = block.next;
    if (block.next !== null) block.next.prev = block.prev;
    else this.lruTail = block.prev;
    block.prev = null;
    block.next = null;
    this.inactive--;
  }

  private publishStored(parentHash: bigint | null, blocks: StoredBlock[]): void {
    this.publish({ kind: 'stored', parentHash, blocks });
  }

  private publish(data: KvCacheEvent['data']): void {
    if (!this.publishing) return;
    const event: KvCacheEvent = { eventId: BigInt(this.nextEventId++), dpRank: this.dpRank, data };
    this.onEvent?.(event);
  }
}
