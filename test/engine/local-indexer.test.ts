import { describe, expect, it } from 'vitest';
import { LocalIndexer } from '../../src/engine/local-indexer.ts';
import type { KvCacheEvent } from '../../src/kv/events.ts';
import { NaiveIndexer } from '../../src/kv/naive-indexer.ts';

function stored(id: number, parent: bigint | null, hashes: number[]): KvCacheEvent {
  return {
    eventId: BigInt(id),
    dpRank: 1,
    data: {
      kind: 'stored',
      parentHash: parent,
      blocks: hashes.map((h) => ({ blockHash: BigInt(h), tokensHash: BigInt(h + 100) })),
    },
  };
}

describe('LocalIndexer', () => {
  it('serves buffered event ranges and says when a range is gone', () => {
    const indexer = new LocalIndexer(3n, 1, 4, new NaiveIndexer());
    for (let i = 0; i < 6; i++) indexer.apply(stored(i, i === 0 ? null : BigInt(i - 1), [i]));
    expect(indexer.newestEventId).toBe(5n);
    const hit = indexer.eventsInRange(3n, 5n);
    expect(hit.kind).toBe('events');
    if (hit.kind === 'events') {
      expect(hit.events.map((e) => e.event.eventId)).toEqual([3n, 4n, 5n]);
      expect(hit.events.every((e) => e.workerId === 3n && e.event.dpRank === 1)).toBe(true);
    }
    expect(indexer.eventsInRange(1n, 3n)).toEqual({ kind: 'unavailable', oldest: 2n, newest: 5n });
    expect(indexer.eventsInRange(5n, 6n)).toEqual({ kind: 'unavailable', oldest: 2n, newest: 5n });
    expect(indexer.eventsInRange(4n, 3n)).toEqual({ kind: 'events', events: [] });
    expect(new LocalIndexer(3n, 1, 100, new NaiveIndexer()).eventsInRange(0n, 0n).kind).toBe('unavailable');
  });

  it('dumps events that rebuild its blocks, after removals and clears', () => {
    const indexer = new LocalIndexer(3n, 1, 100, new NaiveIndexer());
    indexer.apply(stored(0, null, [1, 2, 3]));
    indexer.apply(stored(1, 2n, [7]));
    indexer.apply({ eventId: 2n, dpRank: 1, data: { kind: 'removed', blockHashes: [3n] } });
    expect(indexer.size).toBe(3);
    const hashes = indexer
      .dump()
      .flatMap((e) => (e.event.data.kind === 'stored' ? e.event.data.blocks.map((b) => b.blockHash) : []));
    expect(hashes.sort()).toEqual([1n, 2n, 7n]);
    indexer.apply({ eventId: 3n, dpRank: 1, data: { kind: 'cleared' } });
    expect(indexer.size).toBe(0);
    expect(indexer.dump()).toEqual([]);
    expect(indexer.eventErrors).toBe(0);
    indexer.apply(stored(4, 999n, [8]));
    expect(indexer.eventErrors).toBe(1);
  });
});
