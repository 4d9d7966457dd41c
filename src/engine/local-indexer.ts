/**
 * A rank's local indexer (Dynamo's `enable_local_indexer`): fed only by the rank's own published
 * events, it answers a router that noticed a gap in event ids ("events [a, b]", from a bounded ring
 * buffer) and a router that starts or lost track ("full dump": stored events rebuilding exactly the
 * blocks this rank holds). The block state lives in a KvIndexer from src/kv (the same semantics
 * as the router's), so its dump is what a router would have built from the same events.
 */
import type { KvCacheEvent, RouterEvent, WorkerId } from '../kv/events.ts';
import type { KvIndexer } from '../kv/indexer.ts';

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
  private readonly indexer: KvIndexer;
  private lastEventId: bigint | null = null;
  private errors = 0;

  constructor(workerId: WorkerId, dpRank: number, bufferSize: number, indexer: KvIndexer) {
    if (!Number.isInteger(bufferSize) || bufferSize < 1) throw new RangeError('bufferSize must be >= 1');
    this.workerId = workerId;
    this.dpRank = dpRank;
    this.ring = new Array(bufferSize);
    this.indexer = indexer;
  }

  /** Blocks held by the rank according to its events. */
  get size(): number {
    const owner = this.indexer.owners.find(this.workerId, this.dpRank);
    return owner < 0 ? 0 : this.indexer.treeSize(owner);
  }

  /** Id of the newest event seen, null before any. */
  get newestEventId(): bigint | null {
    return this.lastEventId;
  }

  /** Events the indexer refused (an engine bug if ever non-zero). */
  get eventErrors(): number {
    return this.errors;
  }

  apply(event: KvCacheEvent): void {
    const routerEvent: RouterEvent = { workerId: this.workerId, event };
    if (this.indexer.apply(routerEvent) !== null) this.errors++;
    this.lastEventId = event.eventId;
    const capacity = this.ring.length;
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

  /** Stored events (event id 0, parents before children) that rebuild this rank's blocks in an empty indexer. */
  dump(): RouterEvent[] {
    return this.indexer.dump();
  }
}
