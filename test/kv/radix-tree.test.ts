import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RouterEvent } from '../../src/kv/events.ts';
import { overlapToRecord } from '../../src/kv/indexer.ts';
import { NaiveIndexer } from '../../src/kv/naive-indexer.ts';
import { OwnerTable } from '../../src/kv/owners.ts';
import { RadixTreeIndexer } from '../../src/kv/radix-tree.ts';
import { packU64s } from '../../src/tokens/u64.ts';
import {
  canonicalDump,
  clearedEvent,
  matchedBlocks,
  matches,
  removedEvent,
  runIndexerConformance,
  storedEvent,
} from './indexer.conformance.ts';

runIndexerConformance('RadixTreeIndexer', () => new RadixTreeIndexer());
runIndexerConformance(
  'RadixTreeIndexer (tiny initial capacity)',
  () => new RadixTreeIndexer({ initialCapacity: 2 }),
);

function ok(indexer: RadixTreeIndexer, ...events: RouterEvent[]): void {
  for (const event of events) expect(indexer.apply(event)).toBeNull();
}

describe('RadixTreeIndexer', () => {
  it('scores w1=3, w2=1 for [1,2,3] after w1 [1,2,3] and w2 [1,4,5]', () => {
    const tree = new RadixTreeIndexer();
    ok(tree, storedEvent(1n, 0, [1, 2, 3]), storedEvent(2n, 0, [1, 4, 5]));
    const record = overlapToRecord(tree, tree.findMatches(packU64s([1n, 2n, 3n])));
    expect(record).toEqual({ '1:0': { blocks: 3, treeSize: 3 }, '2:0': { blocks: 1, treeSize: 3 } });
    expect(tree.stats().nodes).toBe(5);
  });

  it('keeps stale descendants below a removed middle block out of the matches', () => {
    const tree = new RadixTreeIndexer();
    ok(
      tree,
      storedEvent(1n, 0, [1, 2, 3, 4, 5]),
      storedEvent(2n, 0, [1, 2, 3, 4]),
      storedEvent(3n, 0, [1, 2]),
    );
    ok(tree, removedEvent(1n, 0, [300n]));
    // Node 4 now holds {1, 2} while its parent holds only {2}: the counts alone would mislead.
    expect(matchedBlocks(tree, [1, 2, 3, 4, 5])).toEqual({ '1:0': 2, '2:0': 4, '3:0': 2 });
    ok(tree, removedEvent(2n, 0, [300n]));
    // Node 3 has no owner left but keeps its children: the walk stops there.
    expect(matchedBlocks(tree, [1, 2, 3, 4, 5])).toEqual({ '1:0': 2, '2:0': 2, '3:0': 2 });
    expect(tree.stats().nodes).toBe(5);
    // Stale entries can still be removed and used as parents.
    ok(tree, storedEvent(1n, 0, [6], 500n));
    expect(tree.treeSize(tree.owners.find(1n, 0))).toBe(5);
    // Re-storing block 3 for worker 1 brings its deeper blocks back, not worker 2's.
    ok(tree, storedEvent(1n, 0, [3], 200n));
    expect(matchedBlocks(tree, [1, 2, 3, 4, 5, 6])).toEqual({ '1:0': 6, '2:0': 2, '3:0': 2 });
    ok(tree, removedEvent(2n, 0, [400n, 200n, 100n]), removedEvent(3n, 0, [100n, 200n]));
    expect(matchedBlocks(tree, [1, 2, 3, 4, 5, 6])).toEqual({ '1:0': 6 });
    ok(tree, removedEvent(1n, 0, [100n, 200n, 300n, 400n, 500n, 600n]));
    expect(tree.size).toBe(0);
    expect(tree.stats().nodes).toBe(0);
  });

  it('intersects explicitly when a stale owner would otherwise fill the count back up', () => {
    const tree = new RadixTreeIndexer();
    ok(tree, storedEvent(1n, 0, [1, 2, 3]), storedEvent(2n, 0, [1, 2, 3]));
    ok(tree, storedEvent(3n, 0, [1, 2]));
    ok(tree, removedEvent(1n, 0, [200n]));
    // Node 2 = {2, 3}, node 3 = {1 (stale), 2}: equal counts, different sets.
    expect(matchedBlocks(tree, [1, 2, 3])).toEqual({ '1:0': 1, '2:0': 3, '3:0': 2 });
    expect(matches(tree, [1, 2, 3], true)).toEqual({
      '1:0': { blocks: 1, treeSize: 2 },
      '2:0': { blocks: 3, treeSize: 3 },
      '3:0': { blocks: 2, treeSize: 2 },
    });
  });

  it('grows past its initial capacities with thousands of nodes and many owners', () => {
    const tree = new RadixTreeIndexer({ initialCapacity: 4 });
    const owners = 300;
    for (let w = 0; w < owners; w++) {
      // A shared 3-block prefix, then 20 private blocks per owner.
      const tokens = [1, 2, 3, ...Array.from({ length: 20 }, (_, i) => 1000 + w * 100 + i)];
      ok(tree, storedEvent(BigInt(w), w % 4, tokens));
    }
    expect(tree.stats().nodes).toBe(3 + owners * 20);
    expect(tree.size).toBe(owners * 23);
    for (const w of [0, 123, 299]) {
      const query = [1, 2, 3, ...Array.from({ length: 20 }, (_, i) => 1000 + w * 100 + i)];
      const blocks = matchedBlocks(tree, query);
      expect(Object.keys(blocks)).toHaveLength(owners);
      expect(blocks[`${w}:${w % 4}`]).toBe(23);
      expect(blocks[`${(w + 1) % owners}:${((w + 1) % owners) % 4}`]).toBe(3);
    }
    for (let w = 0; w < owners; w += 2) tree.removeWorker(BigInt(w));
    expect(tree.size).toBe((owners / 2) * 23);
    expect(tree.stats().nodes).toBe(3 + (owners / 2) * 20);
  });

  it('returns to zero nodes and entries after storing and removing 100k blocks', () => {
    const tree = new RadixTreeIndexer();
    let seed = 12345;
    const random = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const live: bigint[][] = Array.from({ length: 16 }, () => []);
    let stored = 0;
    while (stored < 100_000) {
      const w = random(16);
      const chain = live[w];
      const length = 1 + random(8);
      const base = BigInt(stored + 1);
      const tokens = Array.from({ length }, (_, i) => base + BigInt(i));
      const parent = chain.length > 0 && random(2) === 0 ? chain[chain.length - 1] : null;
      ok(tree, storedEvent(BigInt(w), 0, tokens, parent));
      chain.push(...tokens.map((t) => t * 100n));
      stored += length;
      if (chain.length > 50) {
        // Remove in a scrambled order, sometimes parents before children.
        const victims = chain.splice(0, 10 + random(20));
        victims.sort(() => random(3) - 1);
        ok(tree, removedEvent(BigInt(w), 0, victims));
      }
    }
    for (let w = 0; w < 16; w++) if (live[w].length > 0) ok(tree, removedEvent(BigInt(w), 0, live[w]));
    expect(tree.size).toBe(0);
    expect(tree.stats().nodes).toBe(0);
    expect(tree.stats().entries).toBe(0);
  });

  it('handles a 32-block prefix held by 1,024 owners', () => {
    const tree = new RadixTreeIndexer();
    const prefix = Array.from({ length: 32 }, (_, i) => i + 1);
    const privateOf = (w: number) => Array.from({ length: 30 }, (_, i) => 100_000 + w * 64 + i);
    for (let w = 0; w < 1024; w++) {
      ok(tree, storedEvent(BigInt(w >> 2), w & 3, [...prefix, ...privateOf(w)]));
    }
    expect(tree.size).toBe(1024 * 62);
    const query = [...prefix, ...privateOf(517)];
    const blocks = matchedBlocks(tree, query);
    expect(Object.keys(blocks)).toHaveLength(1024);
    for (const [key, value] of Object.entries(blocks)) expect(value).toBe(key === '129:1' ? 62 : 32);
    // Owner 517 drops prefix block 10: it keeps its stale deeper blocks but matches 9.
    ok(tree, removedEvent(129n, 1, [1000n]));
    const after = matchedBlocks(tree, query);
    expect(after['129:1']).toBe(9);
    expect(after['0:0']).toBe(32);
    expect(matches(tree, query, true)['129:1']).toEqual({ blocks: 9, treeSize: 61 });
    ok(tree, storedEvent(129n, 1, [10], 900n));
    expect(matchedBlocks(tree, query)['129:1']).toBe(62);
  });

  it('scores a wide set that narrows level by level', () => {
    const tree = new RadixTreeIndexer();
    // 40 owners hold [1,2,3]; owners w < 12 also hold 4, w < 5 also 5, w < 2 also 6; w 0 also 7.
    for (let w = 0; w < 40; w++) {
      const tokens = [1, 2, 3, 4, 5, 6, 7].slice(
        0,
        3 + (w < 12 ? 1 : 0) + (w < 5 ? 1 : 0) + (w < 2 ? 1 : 0) + (w < 1 ? 1 : 0),
      );
      ok(tree, storedEvent(BigInt(w), 0, tokens));
    }
    const expected = (w: number) =>
      3 + (w < 12 ? 1 : 0) + (w < 5 ? 1 : 0) + (w < 2 ? 1 : 0) + (w < 1 ? 1 : 0);
    const blocks = matchedBlocks(tree, [1, 2, 3, 4, 5, 6, 7, 8]);
    expect(Object.keys(blocks)).toHaveLength(40);
    for (let w = 0; w < 40; w++) expect(blocks[`${w}:0`]).toBe(expected(w));
    // earlyExit: the walk stops at level 7, where owner 0 is the only one left.
    const exitEarly = matches(tree, [1, 2, 3, 4, 5, 6, 7, 8], true);
    expect(exitEarly['0:0']).toEqual({ blocks: 7, treeSize: 7 });
    expect(exitEarly['1:0']).toEqual({ blocks: 6, treeSize: 6 });
    expect(exitEarly['39:0']).toEqual({ blocks: 3, treeSize: 3 });
    // A stale owner below the narrowing point does not come back.
    ok(tree, removedEvent(3n, 0, [400n]));
    expect(matchedBlocks(tree, [1, 2, 3, 4, 5])['3:0']).toBe(3);
    expect(matchedBlocks(tree, [1, 2, 3, 4, 5])['4:0']).toBe(5);
  });

  it('rebuilds an equal tree from its dump', () => {
    const tree = new RadixTreeIndexer();
    for (let w = 0; w < 20; w++) {
      ok(tree, storedEvent(BigInt(w % 5), w % 3, [1, 2, 3 + (w % 4), 10 + w]));
    }
    ok(tree, removedEvent(1n, 1, [1100n]));
    const rebuilt = new RadixTreeIndexer();
    ok(rebuilt, ...tree.dump());
    expect(canonicalDump(rebuilt)).toEqual(canonicalDump(tree));
    expect(rebuilt.size).toBe(tree.size);
    expect(rebuilt.stats().nodes).toBe(tree.stats().nodes);
    for (const query of [
      [1, 2, 3],
      [1, 2, 4, 11],
      [1, 2, 6, 23],
    ])
      expect(matches(rebuilt, query)).toEqual(matches(tree, query));
  });

  it('keeps an engine-reported second block hash for the same node as its own key', () => {
    const tree = new RadixTreeIndexer();
    ok(tree, storedEvent(1n, 0, [1, 2]), storedEvent(1n, 0, [1, 2], null, [100n, 777n]));
    expect(tree.size).toBe(3);
    expect(matchedBlocks(tree, [1, 2])).toEqual({ '1:0': 2 });
    ok(tree, removedEvent(1n, 0, [200n]));
    expect(matchedBlocks(tree, [1, 2])).toEqual({ '1:0': 2 });
    ok(tree, removedEvent(1n, 0, [777n]));
    expect(matchedBlocks(tree, [1, 2])).toEqual({ '1:0': 1 });
    expect(tree.size).toBe(1);
  });

  it('rejects malformed events without throwing', () => {
    const tree = new RadixTreeIndexer();
    const bad = [
      { workerId: -1n, event: { eventId: 0n, dpRank: 0, data: { kind: 'cleared' } } },
      { workerId: 1n, event: { eventId: 0n, dpRank: -1, data: { kind: 'cleared' } } },
      storedEvent(1n, 0, [1], null, [2n ** 64n]),
      {
        workerId: 1n,
        event: { eventId: 0n, dpRank: 0, data: { kind: 'stored', parentHash: null, blocks: [null] } },
      },
      { workerId: 1n, event: { eventId: 0n, dpRank: 0, data: { kind: 'removed', blockHashes: [1] } } },
      { workerId: 1n, event: null },
    ] as unknown as RouterEvent[];
    for (const event of bad) expect(tree.apply(event)?.code).toBe('KV_INVALID_EVENT');
    expect(tree.size).toBe(0);
    expect(tree.stats().eventErrors).toBe(bad.length);
  });

  it('rejects long stored events with a repeated block hash wherever it repeats, and accepts distinct ones', () => {
    const n = 5000; // more blocks than the quick pass has buckets: distinct hashes share buckets
    const tokens = Array.from({ length: n }, (_, i) => i + 1);
    const hashes = tokens.map((t) => BigInt.asUintN(64, BigInt(t) * 0x9e3779b97f4a7c15n));
    for (const [at, from] of [
      [1, 0],
      [20, 19],
      [n - 1, 0],
      [n - 1, n - 2],
      [4097, 3],
    ]) {
      const tree = new RadixTreeIndexer();
      const repeated = [...hashes];
      repeated[at] = repeated[from];
      expect(tree.apply(storedEvent(1n, 0, tokens, null, repeated))?.code).toBe('KV_INVALID_BLOCK_SEQUENCE');
      expect(tree.size).toBe(0);
      expect(tree.stats().nodes).toBe(0);
    }
    const tree = new RadixTreeIndexer();
    ok(tree, storedEvent(1n, 0, [1], null, [hashes[0]]));
    // The parent's hash repeated at the end of a long event.
    const long = tokens.slice(1, 40);
    const withParent = hashes.slice(1, 40);
    withParent[38] = hashes[0];
    expect(tree.apply(storedEvent(1n, 0, long, hashes[0], withParent))?.code).toBe(
      'KV_INVALID_BLOCK_SEQUENCE',
    );
    expect(tree.size).toBe(1);
    ok(tree, storedEvent(1n, 0, tokens.slice(1), hashes[0], hashes.slice(1)));
    expect(tree.size).toBe(n);
    expect(matchedBlocks(tree, tokens)).toEqual({ '1:0': n });
  });

  it('keeps u64 hashes at 2^64-1 and 2^53+1 exact through stored and removed events', () => {
    const tree = new RadixTreeIndexer();
    const max = 2n ** 64n - 1n;
    const odd = 2n ** 53n + 1n;
    ok(tree, storedEvent(max, 0, [max, odd, 3], null, [max, odd, 2n ** 53n]));
    expect(matchedBlocks(tree, [max, odd, 3])).toEqual({ [`${max}:0`]: 3 });
    expect(tree.apply(removedEvent(max, 0, [2n ** 53n + 2n]))?.code).toBe('KV_BLOCK_NOT_FOUND');
    ok(tree, removedEvent(max, 0, [2n ** 53n]));
    expect(matchedBlocks(tree, [max, odd, 3])).toEqual({ [`${max}:0`]: 2 });
    ok(tree, removedEvent(max, 0, [odd]));
    expect(tree.apply(removedEvent(max, 0, [max, 2n ** 64n]))?.code).toBe('KV_INVALID_EVENT');
    expect(tree.apply(removedEvent(max, 0, [-1n]))?.code).toBe('KV_INVALID_EVENT');
    expect(tree.size).toBe(1);
    ok(tree, removedEvent(max, 0, [max]));
    expect(tree.size).toBe(0);
  });

  it('maps (worker, rank) to the right owner when ids are released and reused', () => {
    const owners = new OwnerTable();
    const tree = new RadixTreeIndexer({ owners });
    ok(tree, storedEvent(7n, 1, [1, 2]), storedEvent(8n, 1, [1]));
    const seven = owners.find(7n, 1);
    tree.removeWorker(7n); // a shared table: the tree drops the entries, its creator releases the ids
    owners.releaseWorker(7n);
    // Another pair takes the released id; events of worker 7 must not land on it.
    expect(owners.intern(9n, 3)).toBe(seven);
    ok(tree, storedEvent(7n, 1, [5]));
    expect(owners.find(7n, 1)).not.toBe(seven);
    expect(matchedBlocks(tree, [5])).toEqual({ '7:1': 1 });
    ok(tree, storedEvent(7n, 2, [6]), storedEvent(8n, 1, [2], 100n));
    expect(matchedBlocks(tree, [6])).toEqual({ '7:2': 1 });
    expect(matchedBlocks(tree, [1, 2])).toEqual({ '8:1': 2 });
    ok(tree, storedEvent(9n, 3, [1]));
    expect(matchedBlocks(tree, [1, 2])).toEqual({ '8:1': 2, '9:3': 1 });
  });

  it('leaves a shared owner table to its creator', () => {
    const owners = new OwnerTable();
    const tree = new RadixTreeIndexer({ owners });
    ok(tree, storedEvent(5n, 2, [1]));
    const id = owners.find(5n, 2);
    tree.removeWorker(5n);
    expect(owners.find(5n, 2)).toBe(id);
    const own = new RadixTreeIndexer();
    ok(own, storedEvent(5n, 2, [1]));
    own.removeWorker(5n);
    expect(own.owners.find(5n, 2)).toBe(-1);
    ok(own, storedEvent(6n, 0, [1, 2]));
    expect(matchedBlocks(own, [1, 2])).toEqual({ '6:0': 2 });
  });

  // Block-table slots derive a key's home from their hash tag while the tag bits cover it; a big
  // table in a big entry pool has too few tag bits and reads the entries instead. Both must hold up
  // under removals in scattered order (backward-shift deletion) and table growth and shrinking.
  for (const initialCapacity of [2, 1 << 19]) {
    it(`keeps every key findable through churn (initial capacity ${initialCapacity})`, () => {
      const tree = new RadixTreeIndexer({ initialCapacity });
      const naive = new NaiveIndexer();
      const n = 6000;
      const tokens = Array.from({ length: n }, (_, i) => i + 1);
      const hashes = tokens.map((t) => BigInt.asUintN(64, BigInt(t) * 0x9e3779b97f4a7c15n + 7n));
      for (const indexer of [tree, naive]) {
        expect(indexer.apply(storedEvent(1n, 0, tokens, null, hashes))).toBeNull();
        expect(indexer.apply(storedEvent(2n, 0, tokens.slice(0, 50), null, hashes.slice(0, 50)))).toBeNull();
      }
      const order = fc.sample(fc.shuffledSubarray(hashes, { minLength: n, maxLength: n }), {
        numRuns: 1,
        seed: 7,
      })[0];
      for (const [i, hash] of order.entries()) {
        if (i % 3 === 2) continue;
        expect(tree.apply(removedEvent(1n, 0, [hash]))).toBeNull();
        expect(naive.apply(removedEvent(1n, 0, [hash]))).toBeNull();
        expect(tree.apply(removedEvent(1n, 0, [hash]))?.code).toBe('KV_BLOCK_NOT_FOUND');
      }
      expect(tree.size).toBe(naive.size);
      for (const query of [tokens.slice(0, 60), tokens.slice(0, n)])
        expect(overlapToRecord(tree, tree.findMatches(packU64s(query.map(BigInt))))).toEqual(
          overlapToRecord(naive, naive.findMatches(packU64s(query.map(BigInt)))),
        );
      expect(canonicalDump(tree)).toEqual(canonicalDump(naive));
      for (const [i, hash] of order.entries())
        if (i % 3 === 2) expect(tree.apply(removedEvent(1n, 0, [hash]))).toBeNull();
      expect(tree.treeSize(tree.owners.find(1n, 0))).toBe(0);
      expect(tree.size).toBe(50);
    });
  }
});

/** Random event streams over a small alphabet, checked against the reference indexer. */
describe('RadixTreeIndexer against NaiveIndexer', () => {
  function operations(workers: number, alphabet: number, hashes: number) {
    return fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({
          kind: fc.constant('stored' as const),
          worker: fc.integer({ min: 0, max: workers - 1 }),
          rank: fc.integer({ min: 0, max: 1 }),
          parent: fc.option(fc.integer({ min: 1, max: hashes }), { nil: null, freq: 3 }),
          tokens: fc.array(fc.integer({ min: 1, max: alphabet }), { minLength: 1, maxLength: 5 }),
        }),
      },
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant('removed' as const),
          worker: fc.integer({ min: 0, max: workers - 1 }),
          rank: fc.integer({ min: 0, max: 1 }),
          hashes: fc.array(fc.integer({ min: 1, max: hashes }), { minLength: 1, maxLength: 4 }),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('cleared' as const),
          worker: fc.integer({ min: 0, max: workers - 1 }),
        }),
      },
    );
  }
  type Operation = {
    kind: 'stored' | 'removed' | 'cleared';
    worker: number;
    rank?: number;
    parent?: number | null;
    tokens?: number[];
    hashes?: number[];
  };

  function toEvent(o: Operation, hashes: number): RouterEvent {
    if (o.kind === 'stored') {
      // Block hashes: a rolling function of the parent and tokens, with collisions on purpose.
      let previous = o.parent ?? 0;
      const blockHashes = o.tokens!.map((t) => {
        previous = ((previous * 7 + t) % hashes) + 1;
        return BigInt(previous);
      });
      const parent = o.parent === null || o.parent === undefined ? null : BigInt(o.parent);
      return storedEvent(BigInt(o.worker), o.rank!, o.tokens!, parent, blockHashes);
    }
    if (o.kind === 'removed') return removedEvent(BigInt(o.worker), o.rank!, o.hashes!.map(BigInt));
    return clearedEvent(BigInt(o.worker));
  }

  const queries = [
    [1],
    [1, 2],
    [1, 2, 3],
    [2, 1, 4, 3],
    [1, 1, 1, 1, 1],
    [3, 4, 1, 2, 2],
    [4, 4, 4],
    [2, 2, 1],
  ];

  function agree(ops: Operation[], earlyExit: boolean, hashes: number, withRemoveWorker: boolean): void {
    const tree = new RadixTreeIndexer({ initialCapacity: 2 });
    const naive = new NaiveIndexer();
    for (const [i, o] of ops.entries()) {
      if (withRemoveWorker && o.kind === 'cleared' && i % 2 === 0) {
        tree.removeWorker(BigInt(o.worker));
        naive.removeWorker(BigInt(o.worker));
      } else {
        const event = toEvent(o, hashes);
        expect(tree.apply(event)?.code).toBe(naive.apply(event)?.code);
      }
      expect(tree.size).toBe(naive.size);
    }
    for (const query of queries) {
      const packed = packU64s(query.map(BigInt));
      expect(overlapToRecord(tree, tree.findMatches(packed, { earlyExit }))).toEqual(
        overlapToRecord(naive, naive.findMatches(packed, { earlyExit })),
      );
    }
    expect(tree.stats().nodes).toBe(naive.stats().nodes);
    expect(canonicalDump(tree)).toEqual(canonicalDump(naive));
  }

  it('matches, sizes, errors and dumps agree (few owners, colliding hashes)', () => {
    fc.assert(
      fc.property(fc.array(operations(4, 4, 40), { maxLength: 60 }), fc.boolean(), (ops, earlyExit) =>
        agree(ops, earlyExit, 40, false),
      ),
      { numRuns: 1500 },
    );
  });

  it('agrees with many owners sharing few nodes (owner slices grow and shrink)', () => {
    fc.assert(
      fc.property(
        fc.array(operations(40, 3, 400), { minLength: 50, maxLength: 250 }),
        fc.boolean(),
        (ops, earlyExit) => agree(ops, earlyExit, 400, true),
      ),
      { numRuns: 200 },
    );
  });
});
