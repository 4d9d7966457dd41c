/**
 * The conformance suite every KvIndexer runs (radix tree, approximate, naive reference):
 * `runIndexerConformance('RadixTreeIndexer', () => new RadixTreeIndexer())` inside a test file.
 *
 * Semantics pinned here (Dynamo's, see src/kv/naive-indexer.ts for the reference):
 * - stored chains from the owner's block `parentHash` (root when null); unknown parent: KV_PARENT_NOT_FOUND,
 *   nothing applied; a block hash equal to the parent or repeated in the event: KV_INVALID_BLOCK_SEQUENCE,
 *   nothing applied; re-storing what is already there changes nothing.
 * - removed: every known hash is removed even when another is unknown (KV_BLOCK_NOT_FOUND, the first error).
 *   No cascade: the owner stops matching at the removed level, and re-storing that block brings the deeper
 *   blocks it still holds back into its matches.
 * - cleared (whatever the event's dp_rank) and removeWorker drop every rank of the worker.
 * - findMatches: an owner scores d when it holds the query's first d blocks (tree path by tokens hash);
 *   only owners with d >= 1 appear; treeSizes are the owners' indexed block counts. earlyExit (Dynamo's
 *   early_exit): the walk stops as soon as a single owner is left; it scores the depth reached so far.
 * - dump(): single-block stored events that rebuild an index with equal matches and an equal dump.
 */
import { describe, expect, it } from 'vitest';
import { encodeRouterEvent } from '../../src/kv/codec.ts';
import type { RouterEvent } from '../../src/kv/events.ts';
import { type KvIndexer, overlapToRecord } from '../../src/kv/indexer.ts';
import { packU64s } from '../../src/tokens/u64.ts';

/** Dynamo's test convention: tokens hash t has block hash t * 100 unless given. */
export function storedEvent(
  workerId: bigint,
  dpRank: number,
  tokens: readonly (number | bigint)[],
  parentHash: bigint | null = null,
  blockHashes: readonly bigint[] = tokens.map((t) => BigInt(t) * 100n),
): RouterEvent {
  return {
    workerId,
    event: {
      eventId: 0n,
      dpRank,
      data: {
        kind: 'stored',
        parentHash,
        blocks: tokens.map((t, i) => ({ blockHash: blockHashes[i], tokensHash: BigInt(t) })),
      },
    },
  };
}

export function removedEvent(workerId: bigint, dpRank: number, blockHashes: readonly bigint[]): RouterEvent {
  return { workerId, event: { eventId: 0n, dpRank, data: { kind: 'removed', blockHashes } } };
}

export function clearedEvent(workerId: bigint, dpRank = 0): RouterEvent {
  return { workerId, event: { eventId: 0n, dpRank, data: { kind: 'cleared' } } };
}

/** Matches of a query of tokens hashes, as `{ "worker:rank": { blocks, treeSize } }`. */
export function matches(
  indexer: KvIndexer,
  tokens: readonly (number | bigint)[],
  earlyExit = false,
): Record<string, { blocks: number; treeSize: number }> {
  return overlapToRecord(indexer, indexer.findMatches(packU64s(tokens.map(BigInt)), { earlyExit }));
}

/** Blocks only, for comparisons where tree sizes are not the point. */
export function matchedBlocks(
  indexer: KvIndexer,
  tokens: readonly (number | bigint)[],
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(matches(indexer, tokens))) out[key] = value.blocks;
  return out;
}

/** A dump as sorted JSON lines, so two dumps compare regardless of order. */
export function canonicalDump(indexer: KvIndexer): string[] {
  return indexer
    .dump()
    .map(encodeRouterEvent)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function applyAll(indexer: KvIndexer, events: readonly RouterEvent[]): void {
  for (const event of events) expect(indexer.apply(event)).toBeNull();
}

export function runIndexerConformance(name: string, factory: () => KvIndexer): void {
  describe(`${name} conformance`, () => {
    it('scores leading blocks per worker (Dynamo radix-tree test)', () => {
      const indexer = factory();
      applyAll(indexer, [storedEvent(1n, 0, [1, 2, 3]), storedEvent(2n, 0, [1, 4, 5])]);
      expect(matches(indexer, [1, 2, 3])).toEqual({
        '1:0': { blocks: 3, treeSize: 3 },
        '2:0': { blocks: 1, treeSize: 3 },
      });
      expect(matches(indexer, [1, 4])).toEqual({
        '1:0': { blocks: 1, treeSize: 3 },
        '2:0': { blocks: 2, treeSize: 3 },
      });
      expect(matches(indexer, [9, 1])).toEqual({});
      expect(indexer.size).toBe(6);
    });

    it('returns nothing for an empty query or an empty index', () => {
      const indexer = factory();
      expect(indexer.findMatches(new Uint32Array(0)).count).toBe(0);
      applyAll(indexer, [storedEvent(1n, 0, [1, 2])]);
      expect(indexer.findMatches(new Uint32Array(0)).count).toBe(0);
      expect(indexer.findMatches(new Uint32Array(0), { earlyExit: true }).count).toBe(0);
    });

    it('scores every dp rank of a worker separately, rank 0 included', () => {
      const indexer = factory();
      for (let rank = 0; rank < 4; rank++)
        applyAll(indexer, [storedEvent(7n, rank, [10, 11, 12, 13].slice(0, rank + 1))]);
      expect(matches(indexer, [10, 11, 12, 13])).toEqual({
        '7:0': { blocks: 1, treeSize: 1 },
        '7:1': { blocks: 2, treeSize: 2 },
        '7:2': { blocks: 3, treeSize: 3 },
        '7:3': { blocks: 4, treeSize: 4 },
      });
      const rank2 = indexer.owners.find(7n, 2);
      expect(rank2).toBeGreaterThanOrEqual(0);
      expect(indexer.treeSize(rank2)).toBe(3);
      expect(indexer.size).toBe(10);
    });

    it('extends a chain from its parent hash', () => {
      const indexer = factory();
      applyAll(indexer, [storedEvent(1n, 0, [1, 2]), storedEvent(1n, 0, [3, 4], 200n)]);
      expect(matches(indexer, [1, 2, 3, 4, 5])).toEqual({ '1:0': { blocks: 4, treeSize: 4 } });
      // A second branch off block 1.
      applyAll(indexer, [storedEvent(1n, 0, [6], 100n)]);
      expect(matches(indexer, [1, 6, 3])).toEqual({ '1:0': { blocks: 2, treeSize: 5 } });
    });

    it('keeps all 64 bits of hashes', () => {
      const indexer = factory();
      const big = 0xffff_ffff_ffff_ffffn;
      const near = 9_007_199_254_740_993n; // 2^53 + 1
      applyAll(indexer, [storedEvent(big, 0, [big, near], null, [near, big])]);
      expect(matches(indexer, [big, near])).toEqual({ [`${big}:0`]: { blocks: 2, treeSize: 2 } });
      expect(matches(indexer, [big, near - 1n])).toEqual({ [`${big}:0`]: { blocks: 1, treeSize: 2 } });
      expect(matches(indexer, [big - 1n])).toEqual({});
      expect(indexer.apply(removedEvent(big, 0, [big]))).toBeNull();
      expect(matches(indexer, [big, near])).toEqual({ [`${big}:0`]: { blocks: 1, treeSize: 1 } });
    });

    it('cleared drops every rank of the worker and nothing else', () => {
      const indexer = factory();
      for (let rank = 0; rank < 4; rank++) applyAll(indexer, [storedEvent(7n, rank, [1, 2])]);
      applyAll(indexer, [storedEvent(8n, 0, [1, 2, 3])]);
      expect(indexer.apply(clearedEvent(7n, 2))).toBeNull();
      expect(matches(indexer, [1, 2, 3])).toEqual({ '8:0': { blocks: 3, treeSize: 3 } });
      expect(indexer.size).toBe(3);
      for (let rank = 0; rank < 4; rank++) {
        const owner = indexer.owners.find(7n, rank);
        if (owner >= 0) expect(indexer.treeSize(owner)).toBe(0);
      }
      // The worker can store again after a clear.
      applyAll(indexer, [storedEvent(7n, 1, [1])]);
      expect(matches(indexer, [1, 2])).toEqual({
        '7:1': { blocks: 1, treeSize: 1 },
        '8:0': { blocks: 2, treeSize: 3 },
      });
    });

    it('removeWorker drops every rank of the worker and nothing else', () => {
      const indexer = factory();
      for (let rank = 0; rank < 3; rank++) applyAll(indexer, [storedEvent(7n, rank, [1, 2])]);
      applyAll(indexer, [storedEvent(8n, 1, [1, 4])]);
      indexer.removeWorker(7n);
      expect(matches(indexer, [1, 2])).toEqual({ '8:1': { blocks: 1, treeSize: 2 } });
      expect(indexer.size).toBe(2);
      expect(canonicalDump(indexer)).toHaveLength(2);
      indexer.removeWorker(7n); // again: nothing to do
      indexer.removeWorker(99n); // never seen
      expect(indexer.size).toBe(2);
    });

    it('removeRank drops one rank of a worker and nothing else; the rank indexes again afterwards', () => {
      const indexer = factory();
      for (let rank = 0; rank < 3; rank++) applyAll(indexer, [storedEvent(7n, rank, [1, 2])]);
      applyAll(indexer, [storedEvent(8n, 1, [1, 4])]);
      indexer.removeRank(7n, 1);
      expect(matches(indexer, [1, 2])).toEqual({
        '7:0': { blocks: 2, treeSize: 2 },
        '7:2': { blocks: 2, treeSize: 2 },
        '8:1': { blocks: 1, treeSize: 2 },
      });
      expect(indexer.size).toBe(6);
      expect(canonicalDump(indexer)).toHaveLength(6);
      indexer.removeRank(7n, 1); // again: nothing to do
      indexer.removeRank(7n, 9); // a rank never seen
      indexer.removeRank(99n, 0); // a worker never seen
      expect(indexer.size).toBe(6);
      expect(indexer.apply(storedEvent(7n, 1, [1, 2, 3]))).toBeNull();
      expect(matches(indexer, [1, 2, 3])['7:1']).toEqual({ blocks: 3, treeSize: 3 });
      // Rank 0 too (a rank lost as a falsy 0 would leave its blocks behind).
      indexer.removeRank(7n, 0);
      expect(matches(indexer, [1, 2])['7:0']).toBeUndefined();
    });

    it('rejects a stored event with an unknown parent and applies nothing', () => {
      const indexer = factory();
      applyAll(indexer, [storedEvent(1n, 0, [1, 2]), storedEvent(2n, 0, [1])]);
      const before = canonicalDump(indexer);
      // 200 is worker 1's block, not worker 2's: parents are looked up per owner.
      const error = indexer.apply(storedEvent(2n, 0, [5, 6], 200n));
      expect(error?.code).toBe('KV_PARENT_NOT_FOUND');
      expect(indexer.apply(storedEvent(1n, 1, [5], 100n))?.code).toBe('KV_PARENT_NOT_FOUND');
      expect(canonicalDump(indexer)).toEqual(before);
      expect(indexer.size).toBe(3);
      expect(matches(indexer, [1, 2, 5])).toEqual({
        '1:0': { blocks: 2, treeSize: 2 },
        '2:0': { blocks: 1, treeSize: 1 },
      });
    });

    it('rejects a self-referencing block sequence and applies nothing', () => {
      const indexer = factory();
      applyAll(indexer, [storedEvent(1n, 0, [1])]);
      const before = canonicalDump(indexer);
      // Block hash 100 is also the parent (Dynamo's InvalidBlockSequence test).
      expect(indexer.apply(storedEvent(1n, 0, [1, 2, 3], 100n))?.code).toBe('KV_INVALID_BLOCK_SEQUENCE');
      // A block hash repeated inside one event.
      expect(indexer.apply(storedEvent(1n, 0, [4, 5], null, [900n, 900n]))?.code).toBe(
        'KV_INVALID_BLOCK_SEQUENCE',
      );
      expect(canonicalDump(indexer)).toEqual(before);
      expect(indexer.size).toBe(1);
    });

    it('removes the rest of a batch when one hash is unknown', () => {
      const indexer = factory();
      applyAll(indexer, [storedEvent(1n, 0, [1, 2, 3, 4]), storedEvent(2n, 0, [1, 2])]);
      const error = indexer.apply(removedEvent(1n, 0, [400n, 12345n, 300n]));
      expect(error?.code).toBe('KV_BLOCK_NOT_FOUND');
      expect(indexer.size).toBe(4);
      expect(matches(indexer, [1, 2, 3, 4])).toEqual({
        '1:0': { blocks: 2, treeSize: 2 },
        '2:0': { blocks: 2, treeSize: 2 },
      });
      // Another owner's hash is unknown for this owner.
      expect(indexer.apply(removedEvent(1n, 3, [100n]))?.code).toBe('KV_BLOCK_NOT_FOUND');
      expect(indexer.size).toBe(4);
    });

    it('drops an owner at the level of a removed middle block, without cascade', () => {
      const indexer = factory();
      applyAll(indexer, [storedEvent(1n, 0, [1, 2, 3, 4]), storedEvent(2n, 0, [1, 2, 3])]);
      applyAll(indexer, [removedEvent(1n, 0, [200n])]);
      expect(matches(indexer, [1, 2, 3, 4])).toEqual({
        '1:0': { blocks: 1, treeSize: 3 },
        '2:0': { blocks: 3, treeSize: 3 },
      });
      // The deeper blocks are still indexed for worker 1 and can still be removed.
      expect(indexer.size).toBe(6);
      // Re-storing the middle block makes them count again.
      applyAll(indexer, [storedEvent(1n, 0, [2], 100n)]);
      expect(matches(indexer, [1, 2, 3, 4])).toEqual({
        '1:0': { blocks: 4, treeSize: 4 },
        '2:0': { blocks: 3, treeSize: 3 },
      });
      applyAll(indexer, [removedEvent(1n, 0, [400n, 300n, 200n, 100n])]);
      expect(matches(indexer, [1, 2, 3, 4])).toEqual({ '2:0': { blocks: 3, treeSize: 3 } });
      expect(indexer.size).toBe(3);
    });

    it('drops an owner at a removed middle block even when it is the only holder', () => {
      const indexer = factory();
      applyAll(indexer, [storedEvent(1n, 0, [1, 2, 3])]);
      applyAll(indexer, [removedEvent(1n, 0, [200n])]);
      expect(matches(indexer, [1, 2, 3])).toEqual({ '1:0': { blocks: 1, treeSize: 2 } });
      applyAll(indexer, [removedEvent(1n, 0, [300n, 100n])]);
      expect(matches(indexer, [1, 2, 3])).toEqual({});
      expect(indexer.size).toBe(0);
    });

    it('re-storing the same blocks is idempotent', () => {
      const indexer = factory();
      applyAll(indexer, [storedEvent(1n, 0, [1, 2, 3]), storedEvent(2n, 0, [1])]);
      const before = canonicalDump(indexer);
      applyAll(indexer, [
        storedEvent(1n, 0, [1, 2, 3]),
        storedEvent(1n, 0, [2, 3], 100n),
        storedEvent(2n, 0, [1]),
      ]);
      expect(canonicalDump(indexer)).toEqual(before);
      expect(indexer.size).toBe(4);
      expect(matches(indexer, [1, 2, 3])).toEqual({
        '1:0': { blocks: 3, treeSize: 3 },
        '2:0': { blocks: 1, treeSize: 1 },
      });
    });

    it('reports tree sizes of the owners that scored', () => {
      const indexer = factory();
      applyAll(indexer, [
        storedEvent(1n, 0, [1, 2, 3]),
        storedEvent(1n, 0, [7, 8]),
        storedEvent(2n, 0, [1]),
        storedEvent(3n, 0, [9]),
      ]);
      expect(matches(indexer, [1, 2])).toEqual({
        '1:0': { blocks: 2, treeSize: 5 },
        '2:0': { blocks: 1, treeSize: 1 },
      });
      expect(indexer.treeSize(indexer.owners.find(3n, 0))).toBe(1);
      expect(indexer.size).toBe(7);
      expect(indexer.stats().entries).toBe(7);
    });

    it('earlyExit stops when a single owner is left', () => {
      const indexer = factory();
      applyAll(indexer, [storedEvent(1n, 0, [1, 2, 3, 4]), storedEvent(2n, 0, [1, 2, 5])]);
      expect(matches(indexer, [1, 2, 3, 4], true)).toEqual({
        '1:0': { blocks: 3, treeSize: 4 },
        '2:0': { blocks: 2, treeSize: 3 },
      });
      expect(matches(indexer, [1, 2, 3, 4], false)).toEqual({
        '1:0': { blocks: 4, treeSize: 4 },
        '2:0': { blocks: 2, treeSize: 3 },
      });
      const single = factory();
      applyAll(single, [storedEvent(1n, 0, [1, 2, 3])]);
      expect(matches(single, [1, 2, 3], true)).toEqual({ '1:0': { blocks: 1, treeSize: 3 } });
      expect(matches(single, [1, 2, 3], false)).toEqual({ '1:0': { blocks: 3, treeSize: 3 } });
    });

    it('dump rebuilds an identical index', () => {
      const indexer = factory();
      applyAll(indexer, [
        storedEvent(1n, 0, [1, 2, 3]),
        storedEvent(1n, 0, [4], 100n),
        storedEvent(2n, 0, [1, 2, 5]),
        storedEvent(2n, 3, [1, 9]),
        storedEvent(0xffff_ffff_ffff_ffffn, 1, [6, 7], null, [9_007_199_254_740_993n, 2n ** 63n]),
      ]);
      expect(indexer.apply(removedEvent(2n, 0, [500n]))).toBeNull();
      const dump = indexer.dump();
      for (const event of dump) {
        expect(event.event.data.kind).toBe('stored');
        expect(event.event.eventId).toBe(0n);
      }
      const rebuilt = factory();
      applyAll(rebuilt, dump);
      expect(canonicalDump(rebuilt)).toEqual(canonicalDump(indexer));
      expect(rebuilt.size).toBe(indexer.size);
      for (const query of [
        [1, 2, 3],
        [1, 4],
        [1, 9],
        [6, 7],
        [1, 2, 5],
      ])
        expect(matches(rebuilt, query)).toEqual(matches(indexer, query));
    });

    it('dumps nothing for an empty index', () => {
      const indexer = factory();
      expect(indexer.dump()).toEqual([]);
      applyAll(indexer, [storedEvent(1n, 0, [1]), clearedEvent(1n)]);
      expect(indexer.dump()).toEqual([]);
      expect(indexer.size).toBe(0);
    });

    it('counts applied events and errors', () => {
      const indexer = factory();
      applyAll(indexer, [storedEvent(1n, 0, [1])]);
      indexer.apply(storedEvent(1n, 0, [2], 999n));
      const stats = indexer.stats();
      expect(stats.eventsApplied).toBe(1);
      expect(stats.eventErrors).toBe(1);
      expect(stats.entries).toBe(1);
      expect(stats.bytes).toBeGreaterThan(0);
    });
  });
}
