import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/engine/errors.ts';
import { collector, drain, harness, range } from './helpers.ts';

describe('data-parallel ranks', () => {
  it('honours rank 0 exactly', async () => {
    const { clock, engine, events } = harness({ dataParallelSize: 4 });
    // Load rank 0 so a balancer would not pick it.
    engine.submit(
      { requestId: 'busy', tokenIds: range(0, 500), sampling: { maxTokens: 50 }, dpRank: 0 },
      collector(clock),
    );
    const stream = engine.generate({
      requestId: 'zero',
      tokenIds: range(7000, 300),
      sampling: { maxTokens: 4 },
      dpRank: 0,
    });
    expect(engine.load(0)).toBe(2);
    clock.runUntilIdle();
    const chunks = await drain(stream);
    expect(chunks[0].dpRank).toBe(0);
    expect(chunks.at(-1)?.finishReason).toBe('length');
    expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(4);
    expect(engine.placement('zero')!.dpRank).toBe(0);
    expect(events.every((e) => e.dpRank === 0)).toBe(true);
    expect(engine.rankMetrics(1).iterations + engine.rankMetrics(2).iterations).toBe(0);
  });

  it('rejects a rank outside [0, dp_size) with a typed error naming the range', () => {
    const { engine } = harness({ dataParallelSize: 4 });
    for (const rank of [4, 17, -1]) {
      let caught: unknown;
      try {
        engine.generate({
          requestId: `r${rank}`,
          tokenIds: [1, 2, 3],
          sampling: { maxTokens: 1 },
          dpRank: rank,
        });
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(EngineError);
      expect((caught as EngineError).code).toBe('ENGINE_RANK_OUT_OF_RANGE');
      expect((caught as EngineError).message).toBe(`rank ${rank} out of range [0, 4)`);
    }
    for (let rank = 0; rank < 4; rank++) expect(engine.load(rank)).toBe(0);
    expect(() => engine.rankMetrics(4)).toThrow(/rank 4 out of range \[0, 4\)/);
  });

  it('spreads requests without a rank over the least loaded ranks', () => {
    const { clock, engine } = harness({ dataParallelSize: 4 });
    const sinks = Array.from({ length: 12 }, (_, i) => {
      const sink = collector(clock);
      engine.submit({ requestId: `r${i}`, tokenIds: range(i * 1000, 200), sampling: { maxTokens: 8 } }, sink);
      return sink;
    });
    expect([0, 1, 2, 3].map((r) => engine.load(r))).toEqual([3, 3, 3, 3]);
    clock.runUntilIdle();
    const perRank = [0, 0, 0, 0];
    for (const sink of sinks) perRank[sink.result!.dpRank]++;
    expect(perRank).toEqual([3, 3, 3, 3]);
    // A rank loaded by pinned requests is avoided.
    engine.submit(
      { requestId: 'p0', tokenIds: range(0, 100), sampling: { maxTokens: 8 }, dpRank: 0 },
      collector(clock),
    );
    engine.submit(
      { requestId: 'p1', tokenIds: range(0, 100), sampling: { maxTokens: 8 }, dpRank: 1 },
      collector(clock),
    );
    engine.submit(
      { requestId: 'free', tokenIds: range(0, 100), sampling: { maxTokens: 8 } },
      collector(clock),
    );
    expect(engine.placement('free')!.dpRank).toBe(2);
  });

  it('reports per-rank metrics', () => {
    const { clock, engine } = harness({ dataParallelSize: 2, maxNumSeqs: 1 });
    engine.submit(
      { requestId: 'a', tokenIds: range(0, 640), sampling: { maxTokens: 20 }, dpRank: 1 },
      collector(clock),
    );
    engine.submit(
      { requestId: 'b', tokenIds: range(5000, 64), sampling: { maxTokens: 20 }, dpRank: 1 },
      collector(clock),
    );
    clock.runUntil(1);
    const m = engine.rankMetrics(1);
    // 640 prompt tokens = 10 full blocks; the first token (end of the iteration) opens an 11th.
    expect(m).toMatchObject({ dpRank: 1, running: 1, waiting: 1, activeBlocks: 10, totalBlocks: 16384 });
    expect(m.usage).toBeCloseTo(10 / 16384, 12);
    expect(engine.rankMetrics(0)).toMatchObject({ running: 0, waiting: 0, activeBlocks: 0 });
    expect(engine.rankMetrics()).toHaveLength(2);
    clock.runUntilIdle();
    expect(engine.rankMetrics(1)).toMatchObject({
      running: 0,
      waiting: 0,
      activeBlocks: 0,
      inactiveBlocks: 11,
    });
  });
});
