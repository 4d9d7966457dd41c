import { describe, expect, it } from 'vitest';
import { KvRouter } from '../../src/routing/kv-router.ts';
import { seededRandom } from '../../src/routing/random.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { BS, blocks } from './helpers.ts';

/**
 * The queued prefill term of the cost: `overlap_weight × prefill_queue_weight × queued tokens /
 * block_size`. Two ranks, "queued" (few active blocks, prompt tokens waiting to prefill) and
 * "decoding" (more active blocks, nothing queued), are set so that only that term, with its weight,
 * orders them; every other rank is worse on both. The router must choose the same rank whether it
 * reads the least loaded ranks from its load order (24 ranks) or scores every rank.
 */
describe('KvRouter: queued prefill tokens weigh in the cost', () => {
  const WORKERS = 6;
  const DP = 4;
  const QUEUED = { workerId: 100n, dpRank: 1 };
  const DECODING = { workerId: 103n, dpRank: 2 };

  interface Case {
    readonly overlapScoreWeight: number;
    readonly prefillQueueWeight: number;
    /** The queued rank's active blocks and prompt tokens waiting to prefill. */
    readonly queuedBlocks: number;
    readonly queuedTokens: number;
    /** The decoding rank's active blocks (nothing queued). */
    readonly decodingBlocks: number;
  }

  // Each rank's cost past the part every rank shares (the request's own): w × q × queued / bs + blocks.
  // [name, overlap weight w, queue weight q, queued rank's blocks, its queued tokens, decoding rank's blocks, winner]
  const cases: [string, number, number, number, number, number, 'queued' | 'decoding'][] = [
    // queued: 8 + 1 = 9, decoding: 3.
    ['a long prefill queue outweighs fewer active blocks', 1, 1, 1, 8 * BS, 3, 'decoding'],
    // queued: 0.1 × 8 + 1 = 1.8, decoding: 3 (at queue weight 1 the queued rank would cost 9).
    ['a small queue weight lets the queued rank win', 1, 0.1, 1, 8 * BS, 3, 'queued'],
    // queued: 2 × 1.5 = 3, decoding: 2 (at queue weight 1 the queued rank would cost 1.5).
    ['a large queue weight makes a short queue lose', 1, 2, 0, 1.5 * BS, 2, 'decoding'],
    // queued: 2 × 1 × 1.5 = 3, decoding: 2 (the overlap weight scales the queued term too).
    ['the overlap weight scales the queued term', 2, 1, 0, 1.5 * BS, 2, 'decoding'],
  ];

  function loadedRouter(c: Case, scanAllCandidates: boolean): KvRouter {
    const router = new KvRouter(
      {
        blockSize: BS,
        overlapScoreWeight: c.overlapScoreWeight,
        prefillQueueWeight: c.prefillQueueWeight,
      },
      { clock: new ManualClock(), random: seededRandom(1), scanAllCandidates },
    );
    for (let w = 0; w < WORKERS; w++) router.addWorker(BigInt(100 + w), { dataParallelSize: DP });
    // The rank's load as another replica would report it: queued prompt tokens and active blocks.
    const load = (workerId: bigint, dpRank: number, activeBlocks: number, queuedTokens: number) =>
      router.applySequenceEvent({
        kind: 'add',
        requestId: `load-${workerId}-${dpRank}`,
        workerId,
        dpRank,
        blocks: null,
        unsharedBlocks: activeBlocks,
        isl: queuedTokens,
        overlapBlocks: 0,
      });
    for (let w = 0; w < WORKERS; w++)
      for (let r = 0; r < DP; r++) {
        const id = BigInt(100 + w);
        if (id === QUEUED.workerId && r === QUEUED.dpRank)
          expect(load(id, r, c.queuedBlocks, c.queuedTokens)).toBe(true);
        else if (id === DECODING.workerId && r === DECODING.dpRank)
          expect(load(id, r, c.decodingBlocks, 0)).toBe(true);
        else expect(load(id, r, 20, 20 * BS)).toBe(true);
      }
    return router;
  }

  const prompt = blocks(900, 901);

  it.each(cases)('%s', (_name, w, q, queuedBlocks, queuedTokens, decodingBlocks, winner) => {
    const c: Case = {
      overlapScoreWeight: w,
      prefillQueueWeight: q,
      queuedBlocks,
      queuedTokens,
      decodingBlocks,
    };
    const expected = winner === 'queued' ? QUEUED : DECODING;
    const other = winner === 'queued' ? DECODING : QUEUED;
    const fast = loadedRouter(c, false);
    const scanned = loadedRouter(c, true);

    // The costs of every rank (a full scan) put the expected rank strictly first.
    const loads = fast.potentialLoads(prompt);
    const costOf = (t: { workerId: bigint; dpRank: number }) =>
      loads.find((l) => l.workerId === t.workerId && l.dpRank === t.dpRank)!.cost;
    for (const l of loads)
      if (l.workerId !== expected.workerId || l.dpRank !== expected.dpRank)
        expect(l.cost).toBeGreaterThan(costOf(expected));
    expect(costOf(other) - costOf(expected)).toBeGreaterThan(0.5);

    // Both ways of choosing agree with the costs, on the first decision and after it.
    for (const router of [fast, scanned]) {
      expect(router.bestWorker(prompt)).toMatchObject(expected);
      expect(router.route('r1', prompt)).toMatchObject(expected);
    }
  });
});
