/**
 * The worker's own view of one engine rank's KV blocks, built from the engine's published events
 * (the real engines keep none we could query). It answers the router's kv_indexer_query like the
 * mock engine's local indexer: events of a range of ids, or a full dump. Event ids are the adapter's
 * dense per-rank ids; several events under one id are tolerated (the ring keeps batches).
 */
import type { KvCacheEvent, RouterEvent, WorkerId } from '../../kv/events.ts';
import type { KvIndexer } from '../../kv/indexer.ts';
import { RadixTreeIndexer } from '../../kv/radix-tree.ts';
import type { EventRangeResult } from '../local-indexer.ts';

interface Batch {
  readonly id: bigint;
  readonly events: RouterEvent[];
}

export class RankEventLog {
  readonly workerId: WorkerId;
  readonly dpRank: number;
  private indexer: KvIndexer;
  private readonly capacity: number;
  private readonly ring: Batch[] = [];
  private lastId: bigint | null = null;
  private refused = 0;

  constructor(workerId: WorkerId, dpRank: number, capacity = 10_000) {
    this.workerId = workerId;
    this.dpRank = dpRank;
    this.capacity = capacity;
    this.indexer = new RadixTreeIndexer();
  }

  get newestEventId(): bigint | null {
    return this.lastId;
  }

  /** Events the index refused (e.g. a removal of a block it never saw). */
  get refusedEvents(): number {
    return this.refused;
  }

  get size(): number {
    const owner = this.indexer.owners.find(this.workerId, this.dpRank);
    return owner < 0 ? 0 : this.indexer.treeSize(owner);
  }

  apply(event: KvCacheEvent): void {
    const routerEvent: RouterEvent = { workerId: this.workerId, event };
    if (this.indexer.apply(routerEvent) !== null) this.refused++;
    const last = this.ring.at(-1);
    if (last !== undefined && last.id === event.eventId) last.events.push(routerEvent);
    else {
      this.ring.push({ id: event.eventId, events: [routerEvent] });
      if (this.ring.length > this.capacity) this.ring.shift();
    }
    if (this.lastId === null || event.eventId > this.lastId) this.lastId = event.eventId;
  }

  /** Forgets every block (the engine was reset or lost track); the ring restarts too. */
  reset(): void {
    this.indexer = new RadixTreeIndexer();
    this.ring.length = 0;
  }

  /** Buffered events with ids in [from, to]; `unavailable` when part of the range is not buffered. */
  eventsInRange(from: bigint, to: bigint): EventRangeResult {
    const oldest = this.ring[0]?.id ?? null;
    const newest = this.lastId;
    if (to < from) return { kind: 'events', events: [] };
    if (oldest === null || newest === null || from < oldest || to > newest)
      return { kind: 'unavailable', oldest, newest };
    const events: RouterEvent[] = [];
    let expected = from;
    for (const batch of this.ring) {
      if (batch.id < from) continue;
      if (batch.id > to) break;
      // A batch id the engine skipped and we never recovered: the range has a hole.
      if (batch.id !== expected) return { kind: 'unavailable', oldest, newest };
      for (const e of batch.events) events.push(e);
      expected = batch.id + 1n;
    }
    if (expected !== to + 1n) return { kind: 'unavailable', oldest, newest };
    return { kind: 'events', events };
  }

  dump(): RouterEvent[] {
    return this.indexer.dump();
  }
}
