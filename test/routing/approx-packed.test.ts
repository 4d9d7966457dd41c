import { describe, expect, it } from 'vitest';
import { ApproximateIndexer } from '../../src/kv/approx-indexer.ts';
import { overlapToRecord } from '../../src/kv/indexer.ts';
import { NaiveIndexer } from '../../src/kv/naive-indexer.ts';
import { OwnerTable } from '../../src/kv/owners.ts';
import { RadixTreeIndexer } from '../../src/kv/radix-tree.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { hasher, randomTokens } from './helpers.ts';

/**
 * ApproximateIndexer stores recorded routes in a radix tree through its packed (no bigint) API, and
 * in any other indexer through bigint events: both must index the same blocks, expire and prune them
 * the same way.
 */
describe('ApproximateIndexer: packed path into the radix tree = event path', () => {
  it('same matches after records, refreshes, expiry and pruning', () => {
    const clock = new ManualClock();
    const options = { clock, ttlMs: 1000, maxTreeSize: 400, pruneTargetRatio: 0.5 };
    const radixOwners = new OwnerTable();
    const naiveOwners = new OwnerTable();
    const packed = new ApproximateIndexer({
      ...options,
      inner: new RadixTreeIndexer({ owners: radixOwners }),
    });
    const events = new ApproximateIndexer({ ...options, inner: new NaiveIndexer({ owners: naiveOwners }) });
    const prefix = randomTokens(16 * 6, 1);
    const prompts = Array.from({ length: 12 }, (_, i) => [
      ...prefix,
      ...randomTokens(16 * (2 + (i % 5)), 100 + i),
    ]);
    const hashed = prompts.map((tokens) => {
      const local = hasher.localHashes(tokens);
      return { local, sequence: hasher.sequenceHashes(local) };
    });
    const compare = () => {
      for (const { local } of hashed) {
        const a = overlapToRecord(packed, packed.findMatches(local));
        const b = overlapToRecord(events, events.findMatches(local));
        expect(a).toEqual(b);
      }
      expect(packed.size).toBe(events.size);
      expect(packed.trackedBlocks).toBe(events.trackedBlocks);
    };
    for (let step = 0; step < 60; step++) {
      const { local, sequence } = hashed[(step * 7) % hashed.length];
      const workerId = BigInt(step % 5);
      const dpRank = step % 3;
      expect(packed.recordRoute(workerId, dpRank, local, sequence)).toBeNull();
      expect(events.recordRoute(workerId, dpRank, local, sequence)).toBeNull();
      clock.advance(step % 4 === 0 ? 400 : 50);
      compare();
    }
    expect(packed.size).toBeGreaterThan(0);
    clock.advance(5000);
    compare();
    expect(packed.size).toBe(0);
  });
});
