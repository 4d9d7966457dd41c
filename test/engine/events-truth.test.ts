import { describe, expect, it } from 'vitest';
import { Mulberry32 } from '../../src/engine/prng.ts';
import type { KvCacheEvent, RouterEvent, StoredBlock } from '../../src/kv/events.ts';
import { NaiveIndexer } from '../../src/kv/naive-indexer.ts';
import { collector, harness, range } from './helpers.ts';

const WORKER = 5n;
const RANKS = 4;

function blockSet(blocks: readonly StoredBlock[]): string[] {
  return blocks.map((b) => `${b.blockHash}:${b.tokensHash}`).sort();
}

function dumpedBlocks(events: readonly RouterEvent[]): StoredBlock[] {
  return events.flatMap((e) => (e.event.data.kind === 'stored' ? e.event.data.blocks : []));
}

describe('KV events are the truth', () => {
  it('after 500 random requests with evictions on 4 ranks, each rank’s events rebuild exactly its blocks', () => {
    const { clock, engine, events } = harness({
      dataParallelSize: RANKS,
      numGpuBlocks: 48,
      blockSize: 8,
      maxNumSeqs: 6,
      maxNumBatchedTokens: 96,
      workerId: WORKER,
    });
    const rng = new Mulberry32(2024);
    // A few shared prefixes so requests hit, miss and share partially.
    const prefixes = Array.from({ length: 6 }, (_, i) => range(10_000 * (i + 1), 8 + (rng.nextU32() % 80)));
    const sinks: ReturnType<typeof collector>[] = [];
    let at = 0;
    for (let i = 0; i < 500; i++) {
      at += rng.nextU32() % 6;
      const prefix = prefixes[rng.nextU32() % prefixes.length].slice(0, 1 + (rng.nextU32() % 88));
      const tokens = [...prefix, ...range(100_000 + i * 100, rng.nextU32() % 60)];
      const pinned = rng.nextU32() % 3 !== 0;
      const request = {
        requestId: `r${i}`,
        tokenIds: tokens,
        sampling: { maxTokens: 1 + (rng.nextU32() % 40) },
        ...(pinned ? { dpRank: rng.nextU32() % RANKS } : {}),
      };
      const cancelAfter = rng.nextU32() % 10 === 0 ? rng.nextU32() % 50 : -1;
      clock.setTimer(() => {
        const sink = collector(clock);
        sinks.push(sink);
        engine.submit(request, sink);
        if (cancelAfter >= 0) clock.setTimer(() => engine.cancel(request.requestId), cancelAfter);
      }, at);
    }
    clock.runUntilIdle();
    expect(sinks).toHaveLength(500);
    for (const sink of sinks) expect(['length', 'cancelled']).toContain(sink.result?.reason);

    let evicted = 0;
    let preempted = 0;
    for (let rank = 0; rank < RANKS; rank++) {
      const m = engine.rankMetrics(rank);
      evicted += m.evictedBlocks;
      preempted += m.preemptions;
      expect(m.activeBlocks).toBe(0);
      const own: KvCacheEvent[] = events.filter((e) => e.dpRank === rank);
      // Each rank numbers its own events 0, 1, 2, ...
      expect(own.map((e) => e.eventId)).toEqual(own.map((_, i) => BigInt(i)));

      const indexer = new NaiveIndexer();
      for (const event of own) expect(indexer.apply({ workerId: WORKER, event })).toBeNull();
      const truth = blockSet(engine.heldBlocks(rank));
      expect(truth.length).toBeGreaterThan(0);
      expect(indexer.treeSize(indexer.owners.find(WORKER, rank))).toBe(truth.length);
      expect(blockSet(dumpedBlocks(indexer.dump()))).toEqual(truth);
      // The rank's local indexer (fed by the same events) agrees, and so does its dump.
      const local = engine.localIndexer(rank);
      expect(local.eventErrors).toBe(0);
      expect(local.size).toBe(truth.length);
      const fromDump = new NaiveIndexer();
      for (const e of local.dump()) expect(fromDump.apply(e)).toBeNull();
      expect(blockSet(dumpedBlocks(fromDump.dump()))).toEqual(truth);
    }
    expect(evicted).toBeGreaterThan(100);
    expect(preempted).toBeGreaterThan(0);
  });
});
