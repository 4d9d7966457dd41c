/**
 * A rank's local indexer (Dynamo's `enable_local_indexer`): fed only by the rank's own published
 * events, it answers a router that noticed a gap in event ids ("events [a, b]", from a bounded ring
 * buffer) and a router that starts or lost track ("full dump": stored events rebuilding exactly the
 * blocks this rank holds).
 */
import type { KvCacheEvent, RouterEvent, StoredBlock, WorkerId } from '../kv/events.ts';

interface IndexedBlock {
  readonly tokensHash: bigint;
  readonly parentHash: bigint | null;
}

export type EventRangeResult =
  | { readonly kind: 'events'; readonly events: RouterEvent[] }
  /** Some of the range is no longer buffered (or not published yet): use the full dump. */
  | { readonly kind: 'unavailable'; readonly oldest: bigint | null; readonly newest: bigint | null };

export class LocalIndexer {
  readonly workerId: WorkerId;
  readonly dpRank: number;
  private readonly ring: (RouterEvent | undefined)[];
  private ringStart = 0;
  private ringCount = 0;
  private readonly blocks = new Map<bigint, IndexedBlock>();
  private lastEventId: bigint | null = null;

  constructor(workerId: WorkerId, dpRank: number, bufferSize = 10_000) {
    if (!Number.isInteger(bufferSize) || bufferSize < 1) throw new RangeError('bufferSize must be >= 1');
    this.workerId = workerId;
    this.dpRank = dpRank;
    this.ring = new Array(bufferSize);
  }

  /** Blocks held by the rank according to its events. */
  get size(): number {
    return this.blocks.size;
  }

  /** Id of the newest event seen, null before any. */
  get newestEventId(): bigint | null {
    return this.lastEventId;
  }

  has(blockHash: bigint): boolean {
    return this.blocks.has(blockHash);
  }

  /** Block hashes held by the rank according to its events. */
  blockHashes(): IterableIterator<bigint> {
    return this.blocks.keys();
  }

  apply(event: KvCacheEvent): void {
    const data = event.data;
    if (data.kind === 'stored') {
      let parent = data.parentHash;
      for (const block of data.blocks) {
        this.blocks.set(block.blockHash, { tokensHash: block.tokensHash, parentHash: parent });
        parent = block.blockHash;
      }
    } else if (data.kind === 'removed') {
      for (const hash of data.blockHashes) this.blocks.delete(hash);
    } else {
      this.blocks.clear();
    }
    this.lastEventId = event.eventId;
    const capacity = this.ring.length;
    const routerEvent: RouterEvent = { workerId: this.workerId, event };
    if (this.ringCount < capacity) {
      this.ring[(this.ringStart + this.ringCount) % capacity] = routerEvent;
      this.ringCount++;
    } else {
      this.ring[this.ringStart] = routerEvent;
      this.ringStart = (this.ringStart + 1) % capacity;
    }
  }

  /** Buffered events with ids in [from, to] (inclusive), or why they cannot be given. */
  eventsInRange(from: bigint, to: bigint): EventRangeResult {
    const oldest = this.ringCount > 0 ? this.ring[this.ringStart]!.event.eventId : null;
    const newest = this.lastEventId;
    if (to < from) return { kind: 'events', events: [] };
    if (oldest === null || newest === null || from < oldest || to > newest)
      return { kind: 'unavailable', oldest, newest };
    const events: RouterEvent[] = [];
    const capacity = this.ring.length;
    const first = Number(from - oldest);
    const last = Number(to - oldest);
    for (let i = first; i <= last; i++) events.push(this.ring[(this.ringStart + i) % capacity]!);
    return { kind: 'events', events };
  }

  /**
   * Stored events (event id 0, parents before children) that rebuild this rank's blocks in an
   * empty indexer. A block whose parent is no longer held is re-rooted (parent null).
   */
  dump(): RouterEvent[] {
    const children = new Map<bigint | null, bigint[]>();
    for (const [hash, block] of this.blocks) {
      const parent = block.parentHash !== null && this.blocks.has(block.parentHash) ? block.parentHash : null;
      let list = children.get(parent);
      if (list === undefined) {
        list = [];
        children.set(parent, list);
      }
      list.push(hash);
    }
    const events: RouterEvent[] = [];
    // Depth-first from the roots; each chain of single children becomes one stored event.
    const stack: { parent: bigint | null; hash: bigint }[] = [];
    for (const root of children.get(null) ?? []) stack.push({ parent: null, hash: root });
    while (stack.length > 0) {
      const { parent, hash: start } = stack.pop()!;
      const run: StoredBlock[] = [];
      let hash: bigint | undefined = start;
      while (hash !== undefined) {
        run.push({ blockHash: hash, tokensHash: this.blocks.get(hash)!.tokensHash });
        const next = children.get(hash);
        if (next === undefined) break;
        for (let i = 1; i < next.length; i++) stack.push({ parent: hash, hash: next[i] });
        hash = next[0];
      }
      events.push({
        workerId: this.workerId,
        event: {
          eventId: 0n,
          dpRank: this.dpRank,
          data: { kind: 'stored', parentHash: parent, blocks: run },
        },
      });
    }
    return events;
  }
}
