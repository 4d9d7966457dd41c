import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KvRouter } from '../../src/routing/kv-router.ts';
import { seededRandom } from '../../src/routing/random.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { BS, blocks, storedEvent } from './helpers.ts';

/**
 * The router picks the least loaded ranks from an ordered view of the loads instead of scoring all
 * of them; these tests check every decision against the costs of every candidate (potentialLoads)
 * and against a router that scores every candidate (same seed: same tie-breaks).
 */
describe('KvRouter: decisions equal the argmin of every candidate’s cost', () => {
  const WORKERS = 6;
  const DP = 4; // 24 candidates: above the size where the router scans them all

  function prompt(letters: readonly number[]): number[] {
    // Shared prefixes: letters pick among a few blocks per position.
    return blocks(...letters.map((letter, i) => 1 + i * 10 + letter));
  }

  const op = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({
        kind: fc.constant('route' as const),
        letters: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 8 }),
        extra: fc.integer({ min: 0, max: BS - 1 }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('prefilled' as const), pick: fc.nat() }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('cache' as const),
        worker: fc.integer({ min: 0, max: WORKERS - 1 }),
        rank: fc.integer({ min: 0, max: DP - 1 }),
        letters: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 8 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('output' as const), pick: fc.nat() }) },
  );

  it('for random loads, caches and prompts (weights 1, 0.7 and 8; prefill queue weights 1, 0.5 and 2)', () => {
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 60 }),
        fc.constantFrom(1, 0.7, 8),
        fc.constantFrom(1, 0.5, 2),
        (ops, weight, queueWeight) => {
          const config = {
            blockSize: BS,
            overlapScoreWeight: weight,
            prefillQueueWeight: queueWeight,
            trackOutputBlocks: true,
          };
          const router = new KvRouter(config, { clock: new ManualClock(), random: seededRandom(3) });
          const reference = new KvRouter(config, {
            clock: new ManualClock(),
            random: seededRandom(3),
            scanAllCandidates: true,
          });
          const both = [router, reference];
          for (let w = 0; w < WORKERS; w++)
            for (const r of both) r.addWorker(BigInt(100 + w), { dataParallelSize: DP });
          const live: string[] = [];
          let next = 0;
          for (const o of ops) {
            if (o.kind === 'route') {
              const tokens = [...prompt(o.letters), ...Array.from({ length: o.extra }, (_, i) => 7 + i)];
              const loads = router.potentialLoads(tokens);
              let lowest = Number.POSITIVE_INFINITY;
              for (const load of loads) lowest = Math.min(lowest, load.cost);
              const tied = loads.filter((load) => load.cost === lowest);
              const id = `r${next++}`;
              const decision = router.route(id, tokens);
              expect(reference.route(id, tokens)).toEqual(decision);
              live.push(id);
              const chosen = loads.find(
                (l) => l.workerId === decision.workerId && l.dpRank === decision.dpRank,
              )!;
              expect(chosen.cost).toBe(lowest);
              expect(decision.overlapBlocks).toBe(chosen.overlapBlocks);
              if (tied.length === 1) expect(chosen).toBe(tied[0]);
            } else if (o.kind === 'cache') {
              const event = storedEvent(BigInt(100 + o.worker), o.rank, prompt(o.letters));
              for (const r of both) expect(r.applyEvent(event)).toBeNull();
            } else if (live.length > 0) {
              const id = live[o.pick % live.length];
              for (const r of both) {
                if (o.kind === 'prefilled') r.markPrefillCompleted(id);
                else if (o.kind === 'output') r.addOutputBlock(id, 0.5);
                else r.free(id);
              }
              if (o.kind === 'free') {
                live.splice(live.indexOf(id), 1);
              }
            }
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('after workers leave and join again (owner ids reused, order rebuilt)', () => {
    const router = new KvRouter({ blockSize: BS }, { clock: new ManualClock(), random: seededRandom(5) });
    for (let w = 0; w < WORKERS; w++) router.addWorker(BigInt(w), { dataParallelSize: DP });
    for (let i = 0; i < 40; i++) router.route(`a${i}`, prompt([i % 3, (i >> 2) % 3, 1]));
    router.removeWorker(2n);
    router.removeWorker(4n);
    router.addWorker(9n, { dataParallelSize: 2 * DP });
    for (let i = 0; i < 40; i++) {
      const tokens = prompt([(i >> 1) % 3, i % 3]);
      const loads = router.potentialLoads(tokens);
      const lowest = Math.min(...loads.map((l) => l.cost));
      const decision = router.route(`b${i}`, tokens);
      expect(decision.workerId === 2n || decision.workerId === 4n).toBe(false);
      const chosen = loads.find((l) => l.workerId === decision.workerId && l.dpRank === decision.dpRank)!;
      expect(chosen.cost).toBe(lowest);
      if (i % 3 === 0) router.free(`a${i}`);
    }
  });

  it('finds a loaded rank whose cached prefix makes it the cheapest', () => {
    const config = { blockSize: BS };
    const router = new KvRouter(config, { clock: new ManualClock(), random: seededRandom(9) });
    const reference = new KvRouter(config, {
      clock: new ManualClock(),
      random: seededRandom(9),
      scanAllCandidates: true,
    });
    const both = [router, reference];
    for (const r of both) for (let w = 0; w < WORKERS; w++) r.addWorker(BigInt(w), { dataParallelSize: DP });
    // Every rank carries a different load (k + 1 blocks of its own), so no two ranks tie.
    for (let k = 0; k < WORKERS * DP; k++) {
      const pinned = { workerId: BigInt(Math.floor(k / DP)), dpRank: k % DP };
      const tokens = blocks(...Array.from({ length: k + 1 }, (_, i) => 1000 + 100 * k + i));
      for (const r of both) {
        r.route(`load${k}`, tokens, { pinned });
        r.markPrefillCompleted(`load${k}`);
      }
    }
    // A long prompt cached on a heavily loaded rank: its overlap still makes it the cheapest.
    const cached = blocks(...Array.from({ length: 40 }, (_, i) => 50 + i));
    for (const r of both) expect(r.applyEvent(storedEvent(5n, 2, cached))).toBeNull();
    const loads = router.potentialLoads(cached);
    const lowest = Math.min(...loads.map((l) => l.cost));
    expect(loads.filter((l) => l.cost === lowest)).toMatchObject([{ workerId: 5n, dpRank: 2 }]);
    const decision = router.route('q', cached);
    expect(decision).toEqual({ workerId: 5n, dpRank: 2, overlapBlocks: 40 });
    expect(reference.route('q', cached)).toEqual(decision);
  });
});
