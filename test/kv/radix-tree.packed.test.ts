import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RouterEvent } from '../../src/kv/events.ts';
import { overlapToRecord } from '../../src/kv/indexer.ts';
import { RadixTreeIndexer } from '../../src/kv/radix-tree.ts';
import { packU64s } from '../../src/tokens/u64.ts';
import { canonicalDump, removedEvent, storedEvent } from './indexer.conformance.ts';

/** [tokensLo, tokensHi, blockLo, blockHi] per block, as applyStoredPacked takes them. */
function packedBlocks(event: RouterEvent): Uint32Array {
  if (event.event.data.kind !== 'stored') throw new Error('not a stored event');
  const blocks = event.event.data.blocks;
  const out = new Uint32Array(4 * blocks.length);
  blocks.forEach((block, i) => {
    out.set(packU64s([block.tokensHash]), 4 * i);
    out.set(packU64s([block.blockHash]), 4 * i + 2);
  });
  return out;
}

/** Applies a stored or removed event through the packed API of `tree`. */
function applyPacked(tree: RadixTreeIndexer, event: RouterEvent) {
  const owner = tree.owners.intern(event.workerId, event.event.dpRank);
  const data = event.event.data;
  if (data.kind === 'stored') {
    const parent = data.parentHash === null ? new Uint32Array(2) : packU64s([data.parentHash]);
    return tree.applyStoredPacked(owner, data.parentHash !== null, parent[0], parent[1], packedBlocks(event));
  }
  if (data.kind === 'removed') return tree.applyRemovedPacked(owner, packU64s(data.blockHashes));
  throw new Error('not a stored or removed event');
}

describe('RadixTreeIndexer packed event API', () => {
  it('stores and removes like apply(RouterEvent)', () => {
    const tree = new RadixTreeIndexer();
    expect(applyPacked(tree, storedEvent(1n, 0, [1, 2, 3]))).toBeNull();
    expect(applyPacked(tree, storedEvent(2n, 1, [1, 4], null))).toBeNull();
    expect(applyPacked(tree, storedEvent(2n, 1, [5], 400n))).toBeNull();
    const query = packU64s([1n, 4n, 5n]);
    expect(overlapToRecord(tree, tree.findMatches(query))).toEqual({
      '1:0': { blocks: 1, treeSize: 3 },
      '2:1': { blocks: 3, treeSize: 3 },
    });
    expect(applyPacked(tree, removedEvent(2n, 1, [400n]))).toBeNull();
    expect(overlapToRecord(tree, tree.findMatches(query))).toEqual({
      '1:0': { blocks: 1, treeSize: 3 },
      '2:1': { blocks: 1, treeSize: 2 },
    });
    expect(tree.stats().eventsApplied).toBe(4);
  });

  it('reports the same errors and applies nothing for a bad stored event', () => {
    const tree = new RadixTreeIndexer();
    expect(applyPacked(tree, storedEvent(1n, 0, [1, 2]))).toBeNull();
    expect(applyPacked(tree, storedEvent(1n, 0, [3], 999n))?.code).toBe('KV_PARENT_NOT_FOUND');
    expect(applyPacked(tree, storedEvent(1n, 0, [3, 4], 200n, [300n, 300n]))?.code).toBe(
      'KV_INVALID_BLOCK_SEQUENCE',
    );
    expect(applyPacked(tree, removedEvent(1n, 0, [100n, 12345n]))?.code).toBe('KV_BLOCK_NOT_FOUND');
    expect(tree.size).toBe(1);
    expect(tree.stats().eventErrors).toBe(3);
  });

  it('rejects owners that are not interned and arrays of the wrong shape without throwing', () => {
    const tree = new RadixTreeIndexer();
    const owner = tree.owners.intern(7n, 0);
    expect(tree.applyStoredPacked(owner + 1, false, 0, 0, new Uint32Array(4))?.code).toBe('KV_INVALID_EVENT');
    expect(tree.applyStoredPacked(-1, false, 0, 0, new Uint32Array(4))?.code).toBe('KV_INVALID_EVENT');
    expect(tree.applyStoredPacked(0.5, false, 0, 0, new Uint32Array(4))?.code).toBe('KV_INVALID_EVENT');
    expect(tree.applyStoredPacked(owner, false, 0, 0, new Uint32Array(6))?.code).toBe('KV_INVALID_EVENT');
    expect(tree.applyRemovedPacked(owner, new Uint32Array(3))?.code).toBe('KV_INVALID_EVENT');
    expect(tree.size).toBe(0);
  });

  it('keeps the full 64 bits of hashes', () => {
    const tree = new RadixTreeIndexer();
    const high = 0xffff_ffff_0000_0001n;
    expect(applyPacked(tree, storedEvent(1n, 0, [high, 2n], null, [high, 5n << 40n]))).toBeNull();
    expect(tree.dump().map((e) => e.event.data)).toEqual([
      { kind: 'stored', parentHash: null, blocks: [{ blockHash: high, tokensHash: high }] },
      { kind: 'stored', parentHash: high, blocks: [{ blockHash: 5n << 40n, tokensHash: 2n }] },
    ]);
    expect(applyPacked(tree, removedEvent(1n, 0, [5n << 40n]))).toBeNull();
    expect(tree.size).toBe(1);
  });

  it('ends in the same index as apply(RouterEvent) for random event sequences', () => {
    const operation = fc.record({
      stored: fc.boolean(),
      worker: fc.integer({ min: 0, max: 3 }),
      rank: fc.integer({ min: 0, max: 1 }),
      parent: fc.option(fc.integer({ min: 1, max: 30 }), { nil: null, freq: 3 }),
      tokens: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 5 }),
      hashes: fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 4 }),
    });
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 60 }), (ops) => {
        const viaEvents = new RadixTreeIndexer({ initialCapacity: 2 });
        const viaPacked = new RadixTreeIndexer({ initialCapacity: 2 });
        for (const o of ops) {
          let event: RouterEvent;
          if (o.stored) {
            let previous = o.parent ?? 0;
            const blockHashes = o.tokens.map((t) => {
              previous = ((previous * 7 + t) % 30) + 1;
              return BigInt(previous);
            });
            const parent = o.parent === null ? null : BigInt(o.parent);
            event = storedEvent(BigInt(o.worker), o.rank, o.tokens, parent, blockHashes);
          } else event = removedEvent(BigInt(o.worker), o.rank, o.hashes.map(BigInt));
          expect(applyPacked(viaPacked, event)?.code).toBe(viaEvents.apply(event)?.code);
        }
        for (const query of [[1], [1, 2], [2, 1, 4, 3], [1, 1, 1, 1], [3, 4, 1, 2]]) {
          const packed = packU64s(query.map(BigInt));
          expect(overlapToRecord(viaPacked, viaPacked.findMatches(packed))).toEqual(
            overlapToRecord(viaEvents, viaEvents.findMatches(packed)),
          );
        }
        expect(viaPacked.size).toBe(viaEvents.size);
        expect(canonicalDump(viaPacked)).toEqual(canonicalDump(viaEvents));
      }),
      { numRuns: 500 },
    );
  });
});
