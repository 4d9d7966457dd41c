import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ApproximateIndexer } from '../../src/kv/approx-indexer.ts';
import { NaiveIndexer } from '../../src/kv/naive-indexer.ts';
import { OwnerTable } from '../../src/kv/owners.ts';
import { RadixTreeIndexer } from '../../src/kv/radix-tree.ts';
import { packU64s } from '../../src/tokens/u64.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { matchedBlocks, runIndexerConformance, storedEvent } from './indexer.conformance.ts';

runIndexerConformance('ApproximateIndexer', () => new ApproximateIndexer({ clock: new ManualClock() }));
runIndexerConformance(
  'ApproximateIndexer over NaiveIndexer',
  () => new ApproximateIndexer({ inner: new NaiveIndexer(), clock: new ManualClock() }),
);

const TTL = 120_000;

/** A request's chain: tokens hashes as given, sequence hashes 1000 + prefix-dependent. */
function chain(tokens: readonly number[]): { local: Uint32Array; seq: Uint32Array } {
  const seq: bigint[] = [];
  let rolling = 0n;
  for (const t of tokens) {
    rolling = rolling * 131n + BigInt(t);
    seq.push(1000n + rolling);
  }
  return { local: packU64s(tokens.map(BigInt)), seq: packU64s(seq) };
}

function record(indexer: ApproximateIndexer, worker: bigint, rank: number, tokens: number[], ttlMs?: number) {
  const { local, seq } = chain(tokens);
  expect(indexer.recordRoute(worker, rank, local, seq, ttlMs)).toBeNull();
}

describe('ApproximateIndexer', () => {
  it('keeps a routing decision for the TTL and forgets it after', () => {
    const clock = new ManualClock(5_000);
    const indexer = new ApproximateIndexer({ clock });
    record(indexer, 1n, 2, [1, 2, 3]);
    expect(matchedBlocks(indexer, [1, 2, 3, 4])).toEqual({ '1:2': 3 });
    expect(indexer.trackedBlocks).toBe(3);
    clock.advance(TTL - 1);
    expect(matchedBlocks(indexer, [1, 2, 3])).toEqual({ '1:2': 3 });
    clock.advance(1);
    expect(matchedBlocks(indexer, [1, 2, 3])).toEqual({});
    expect(indexer.size).toBe(0);
    expect(indexer.trackedBlocks).toBe(0);
    expect(indexer.dump()).toEqual([]);
  });

  it('a re-recorded chain gets a fresh TTL; the unrefreshed tail expires first', () => {
    const clock = new ManualClock();
    const indexer = new ApproximateIndexer({ clock });
    record(indexer, 1n, 0, [1, 2, 3]);
    clock.advance(60_000);
    record(indexer, 1n, 0, [1, 2]);
    clock.advance(60_000); // t = 120 s: block 3 expired, blocks 1-2 live until 180 s
    expect(matchedBlocks(indexer, [1, 2, 3])).toEqual({ '1:0': 2 });
    expect(indexer.size).toBe(2);
    clock.advance(59_999);
    expect(matchedBlocks(indexer, [1, 2, 3])).toEqual({ '1:0': 2 });
    clock.advance(1);
    expect(matchedBlocks(indexer, [1, 2, 3])).toEqual({});
  });

  it('refreshes survive many repeats and still expire on time', () => {
    const clock = new ManualClock();
    const indexer = new ApproximateIndexer({ clock, ttlMs: 1_000 });
    for (let i = 0; i < 3_000; i++) {
      record(indexer, 1n, 0, [1, 2, 3, 4]);
      clock.advance(1);
    }
    expect(indexer.trackedBlocks).toBe(4);
    expect(indexer.stats().bytes).toBeLessThan(1_000_000);
    clock.advance(998);
    expect(matchedBlocks(indexer, [1, 2, 3, 4])).toEqual({ '1:0': 4 });
    clock.advance(1);
    expect(indexer.size).toBe(0);
  });

  it('scores owners per rank and expires them independently', () => {
    const clock = new ManualClock();
    const indexer = new ApproximateIndexer({ clock });
    record(indexer, 7n, 0, [1, 2]);
    clock.advance(10_000);
    record(indexer, 7n, 1, [1, 2, 3]);
    expect(matchedBlocks(indexer, [1, 2, 3])).toEqual({ '7:0': 2, '7:1': 3 });
    clock.advance(TTL - 10_000);
    expect(matchedBlocks(indexer, [1, 2, 3])).toEqual({ '7:1': 3 });
  });

  it('supports a shorter TTL per call (predicted blocks)', () => {
    const clock = new ManualClock();
    const indexer = new ApproximateIndexer({ clock });
    record(indexer, 1n, 0, [1, 2]);
    record(indexer, 2n, 0, [1, 2], 5_000);
    clock.advance(5_000);
    expect(matchedBlocks(indexer, [1, 2])).toEqual({ '1:0': 2 });
  });

  it('prunes to floor(max * ratio), earliest expiry first', () => {
    const clock = new ManualClock();
    const indexer = new ApproximateIndexer({ clock, maxTreeSize: 10, pruneTargetRatio: 0.8 });
    record(indexer, 1n, 0, [1, 2, 3, 4]);
    clock.advance(1);
    record(indexer, 2n, 0, [1, 2, 3, 4]);
    clock.advance(1);
    expect(indexer.size).toBe(8);
    record(indexer, 3n, 0, [5, 6, 7]); // 11 > 10: prune 3 blocks, the oldest (worker 1), deepest first
    expect(indexer.size).toBe(8);
    expect(matchedBlocks(indexer, [1, 2, 3, 4])).toEqual({ '1:0': 1, '2:0': 4 });
    expect(matchedBlocks(indexer, [5, 6, 7])).toEqual({ '3:0': 3 });
  });

  it('prunes the deepest blocks first among equal expiries', () => {
    const clock = new ManualClock();
    const indexer = new ApproximateIndexer({ clock, maxTreeSize: 5, pruneTargetRatio: 0.8 });
    record(indexer, 1n, 0, [1, 2, 3]);
    record(indexer, 2n, 0, [1, 2, 3]); // 6 > 5: prune to 4, both depth-3 blocks go
    expect(indexer.size).toBe(4);
    expect(matchedBlocks(indexer, [1, 2, 3])).toEqual({ '1:0': 2, '2:0': 2 });
  });

  it('never expires blocks reported by events, and events take over recorded blocks', () => {
    const clock = new ManualClock();
    const indexer = new ApproximateIndexer({ clock });
    expect(indexer.apply(storedEvent(1n, 0, [1, 2]))).toBeNull();
    const { local, seq } = chain([5, 6]);
    expect(indexer.recordRoute(2n, 0, local, seq)).toBeNull();
    // The engine confirms the first recorded block: it no longer expires.
    expect(indexer.apply(storedEvent(2n, 0, [5], null, [1005n]))).toBeNull();
    expect(indexer.trackedBlocks).toBe(1);
    clock.advance(TTL);
    expect(matchedBlocks(indexer, [1, 2])).toEqual({ '1:0': 2 });
    expect(matchedBlocks(indexer, [5, 6])).toEqual({ '2:0': 1 });
  });

  it('removeWorker and cleared drop the recorded blocks of every rank', () => {
    const clock = new ManualClock();
    const indexer = new ApproximateIndexer({ clock });
    record(indexer, 1n, 0, [1, 2]);
    record(indexer, 1n, 3, [1, 2]);
    record(indexer, 2n, 0, [1]);
    indexer.removeWorker(1n);
    expect(indexer.trackedBlocks).toBe(1);
    expect(matchedBlocks(indexer, [1, 2])).toEqual({ '2:0': 1 });
    expect(
      indexer.apply({ workerId: 2n, event: { eventId: 0n, dpRank: 0, data: { kind: 'cleared' } } }),
    ).toBeNull();
    expect(indexer.trackedBlocks).toBe(0);
    clock.advance(TTL);
    expect(indexer.size).toBe(0);
    // A worker recorded again after removal is tracked afresh.
    record(indexer, 1n, 0, [9]);
    expect(matchedBlocks(indexer, [9])).toEqual({ '1:0': 1 });
  });

  it("removeRank drops that rank's recorded blocks; what the rank's dump stores again does not expire", () => {
    const clock = new ManualClock();
    const indexer = new ApproximateIndexer({ clock });
    record(indexer, 1n, 0, [1, 2]);
    record(indexer, 1n, 1, [1, 2]);
    indexer.removeRank(1n, 1);
    expect(indexer.trackedBlocks).toBe(2);
    expect(matchedBlocks(indexer, [1, 2])).toEqual({ '1:0': 2 });
    expect(indexer.apply(storedEvent(1n, 1, [1, 2]))).toBeNull();
    clock.advance(TTL);
    expect(matchedBlocks(indexer, [1, 2])).toEqual({ '1:1': 2 });
  });

  it('defaults to a radix tree sharing the given owner table', () => {
    const owners = new OwnerTable();
    const indexer = new ApproximateIndexer({ owners, clock: new ManualClock() });
    expect(indexer.inner).toBeInstanceOf(RadixTreeIndexer);
    expect(indexer.owners).toBe(owners);
  });

  it('wraps a given inner indexer and shares its owner table', () => {
    const owners = new OwnerTable();
    const inner = new NaiveIndexer({ owners });
    const clock = new ManualClock();
    const indexer = new ApproximateIndexer({ inner, clock });
    expect(indexer.owners).toBe(owners);
    record(indexer, 4n, 1, [1, 2]);
    expect(inner.size).toBe(2);
    expect(owners.find(4n, 1)).toBeGreaterThanOrEqual(0);
    clock.advance(TTL);
    indexer.purgeExpired();
    expect(inner.size).toBe(0);
  });

  it('ignores empty chains and rejects bad options', () => {
    const indexer = new ApproximateIndexer({ clock: new ManualClock() });
    expect(indexer.recordRoute(1n, 0, new Uint32Array(0), new Uint32Array(0))).toBeNull();
    expect(indexer.size).toBe(0);
    expect(() => new ApproximateIndexer({ ttlMs: 0 })).toThrow(RangeError);
    expect(() => new ApproximateIndexer({ maxTreeSize: 0 })).toThrow(RangeError);
    expect(() => new ApproximateIndexer({ pruneTargetRatio: 1.5 })).toThrow(RangeError);
  });

  it("a shorter-TTL re-record never shortens a block's life", () => {
    const clock = new ManualClock();
    const indexer = new ApproximateIndexer({ clock });
    record(indexer, 1n, 0, [1, 2]);
    record(indexer, 1n, 0, [1, 2], 5_000);
    clock.advance(60_000);
    expect(matchedBlocks(indexer, [1, 2])).toEqual({ '1:0': 2 });
  });

  it('stores only the untracked tail of a known chain', () => {
    const clock = new ManualClock();
    const inner = new NaiveIndexer();
    const indexer = new ApproximateIndexer({ inner, clock });
    record(indexer, 1n, 0, [1, 2]);
    record(indexer, 1n, 0, [1, 2]);
    expect(inner.stats().eventsApplied).toBe(1);
    record(indexer, 1n, 0, [1, 2, 3]);
    expect(inner.stats().eventsApplied).toBe(2);
    expect(inner.dump()).toHaveLength(3);
    expect(matchedBlocks(indexer, [1, 2, 3])).toEqual({ '1:0': 3 });
  });

  it('agrees with a TTL model over random routes, time steps and worker removals', () => {
    type Op =
      | { kind: 'route'; worker: number; rank: number; tokens: number[]; ttl: number }
      | { kind: 'advance'; ms: number }
      | { kind: 'removeWorker'; worker: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({
          kind: fc.constant('route' as const),
          worker: fc.integer({ min: 1, max: 3 }),
          rank: fc.integer({ min: 0, max: 1 }),
          tokens: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 4 }),
          ttl: fc.constantFrom(1_000, 5_000),
        }),
      },
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant('advance' as const),
          ms: fc.integer({ min: 0, max: 3_000 }),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('removeWorker' as const),
          worker: fc.integer({ min: 1, max: 3 }),
        }),
      },
    );
    const queries: number[][] = [];
    for (const a of [1, 2, 3])
      for (const b of [1, 2, 3]) for (const c of [1, 2, 3]) queries.push([a, b, c, 1], [a, b, c, 2]);
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => {
        const clock = new ManualClock();
        const indexer = new ApproximateIndexer({ clock });
        // Model: owner -> path -> expiry; a path is held while its expiry is in the future.
        const model = new Map<string, Map<string, number>>();
        for (const o of ops) {
          if (o.kind === 'advance') clock.advance(o.ms);
          else if (o.kind === 'removeWorker') {
            indexer.removeWorker(BigInt(o.worker));
            for (const key of [...model.keys()]) if (key.startsWith(`${o.worker}:`)) model.delete(key);
          } else {
            record(indexer, BigInt(o.worker), o.rank, o.tokens, o.ttl);
            const key = `${o.worker}:${o.rank}`;
            const paths = model.get(key) ?? new Map<string, number>();
            model.set(key, paths);
            const now = clock.now();
            for (let i = 1; i <= o.tokens.length; i++) {
              const path = o.tokens.slice(0, i).join('/');
              const current = paths.get(path);
              const alive = current !== undefined && current > now;
              paths.set(path, Math.max(alive ? current : 0, now + o.ttl));
            }
          }
          const now = clock.now();
          let live = 0;
          for (const paths of model.values()) for (const expiry of paths.values()) if (expiry > now) live++;
          expect(indexer.size).toBe(live);
          for (const query of queries) {
            const expected: Record<string, number> = {};
            for (const [key, paths] of model) {
              let depth = 0;
              while (depth < query.length && (paths.get(query.slice(0, depth + 1).join('/')) ?? 0) > now)
                depth++;
              if (depth > 0) expected[key] = depth;
            }
            expect(matchedBlocks(indexer, query)).toEqual(expected);
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  it('prunes to the target, dropping only blocks that sort (expiry, deepest) before every kept one', () => {
    const seqHashes = (tokens: number[]) => {
      let rolling = 0n;
      return tokens.map((t) => {
        rolling = rolling * 131n + BigInt(t);
        return 1000n + rolling;
      });
    };
    const earlier = (a: { at: number; depth: number }, b: { at: number; depth: number }) =>
      a.at < b.at || (a.at === b.at && a.depth >= b.depth);
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            worker: fc.integer({ min: 1, max: 4 }),
            tokens: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 5 }),
            advance: fc.integer({ min: 0, max: 50 }),
          }),
          { minLength: 1, maxLength: 30 },
        ),
        (routes) => {
          const clock = new ManualClock();
          const indexer = new ApproximateIndexer({ clock, maxTreeSize: 12, pruneTargetRatio: 0.75 });
          const recorded = new Map<string, { at: number; depth: number }>();
          const present = () => {
            const keys = new Set<string>();
            for (const event of indexer.dump())
              if (event.event.data.kind === 'stored')
                for (const block of event.event.data.blocks) keys.add(`${event.workerId}:${block.blockHash}`);
            return keys;
          };
          for (const route of routes) {
            clock.advance(route.advance);
            const before = present();
            const keys = seqHashes(route.tokens).map((hash) => `${route.worker}:${hash}`);
            const added = keys.filter((key) => !before.has(key)).length;
            record(indexer, BigInt(route.worker), 0, route.tokens);
            for (const [i, key] of keys.entries()) recorded.set(key, { at: clock.now() + TTL, depth: i + 1 });
            const after = present();
            expect(indexer.size).toBe(after.size);
            expect(indexer.size).toBe(before.size + added > 12 ? 9 : before.size + added);
            for (const [key, dropped] of recorded) {
              if (after.has(key)) continue;
              for (const kept of after)
                expect(earlier(dropped, recorded.get(kept)!), `${key} before ${kept}`).toBe(true);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
