import { describe, expect, it } from 'vitest';
import { collector, harness, range, storedEvents } from './helpers.ts';

const BS = 4;

describe('eviction and preemption', () => {
  it('evicts least recently used inactive blocks first, leaves first, with removed events', () => {
    const { clock, engine, events } = harness({ numGpuBlocks: 10, blockSize: BS, watermark: 0 });
    for (const [id, start] of [
      ['r1', 100],
      ['r2', 200],
    ] as const) {
      engine.submit(
        { requestId: id, tokenIds: range(start, 16), sampling: { maxTokens: 1 } },
        collector(clock),
      );
      clock.runUntilIdle();
    }
    const [r1, r2] = storedEvents(events).map((e) => e.data.blocks.map((b) => b.blockHash));
    expect(engine.rankMetrics(0)).toMatchObject({ activeBlocks: 0, inactiveBlocks: 8 });
    const before = events.length;

    // 3 new blocks + 1 partial while decoding: 12 > 10, so two inactive blocks must go.
    engine.submit(
      { requestId: 'r3', tokenIds: range(300, 12), sampling: { maxTokens: 1 } },
      collector(clock),
    );
    clock.runUntilIdle();
    const removed = events.slice(before).filter((e) => e.data.kind === 'removed');
    // r1 was released first (tail first), so its last block is the least recently used.
    expect(removed.map((e) => (e.data.kind === 'removed' ? e.data.blockHashes : []))).toEqual([
      [r1[3]],
      [r1[2]],
    ]);
    const held = new Set(engine.heldBlocks(0).map((b) => b.blockHash));
    for (const hash of [r1[0], r1[1], ...r2]) expect(held.has(hash)).toBe(true);
    expect(held.has(r1[2]) || held.has(r1[3])).toBe(false);
    expect(engine.rankMetrics(0).evictedBlocks).toBe(2);
  });

  it('a reused prefix becomes recently used again and survives eviction', () => {
    const { clock, engine, events } = harness({ numGpuBlocks: 8, blockSize: BS, watermark: 0 });
    engine.submit({ requestId: 'a', tokenIds: range(100, 16), sampling: { maxTokens: 1 } }, collector(clock));
    clock.runUntilIdle();
    const [a] = storedEvents(events).map((e) => e.data.blocks.map((b) => b.blockHash));
    // Reuse a's first two blocks: they become the most recently used.
    const hit = collector(clock);
    engine.submit(
      { requestId: 'b', tokenIds: [...range(100, 8), ...range(900, 3)], sampling: { maxTokens: 1 } },
      hit,
    );
    clock.runUntilIdle();
    expect(hit.result?.usage.cachedTokens).toBe(8);
    const before = events.length;
    engine.submit({ requestId: 'c', tokenIds: range(500, 20), sampling: { maxTokens: 1 } }, collector(clock));
    clock.runUntilIdle();
    const removed = events
      .slice(before)
      .flatMap((e) => (e.data.kind === 'removed' ? e.data.blockHashes : []));
    expect(removed.slice(0, 2)).toEqual([a[3], a[2]]);
    expect(removed).not.toContain(a[0]);
  });

  it('never evicts active blocks', () => {
    const { clock, engine, events } = harness({ numGpuBlocks: 24, blockSize: BS, watermark: 0 });
    const long = collector(clock);
    engine.submit({ requestId: 'long', tokenIds: range(1, 16), sampling: { maxTokens: 20 } }, long);
    clock.runUntil(1); // long is admitted and prefilled
    const longBlocks = storedEvents(events)[0].data.blocks.map((b) => b.blockHash);
    let removalsWhileLongRuns = 0;
    engine.onKvEvent((event) => {
      if (event.data.kind !== 'removed' || long.result !== undefined) return;
      removalsWhileLongRuns++;
      for (const hash of longBlocks) expect(engine.blockRefs(0, hash)).toBeGreaterThan(0);
      expect(event.data.blockHashes.some((h) => longBlocks.includes(h))).toBe(false);
    });
    for (let i = 0; i < 14; i++)
      clock.setTimer(() => {
        engine.submit(
          { requestId: `s${i}`, tokenIds: range(1000 * (i + 1), 8), sampling: { maxTokens: 1 } },
          collector(clock),
        );
      }, 2 * i);
    clock.runUntilIdle();
    expect(long.result?.reason).toBe('length');
    expect(removalsWhileLongRuns).toBeGreaterThan(0);
    expect(engine.rankMetrics(0).preemptions).toBe(0);
  });

  it('preempts the oldest running request when blocks run out; it still completes with the same tokens', () => {
    const run = (numGpuBlocks: number) => {
      const { clock, engine } = harness({ numGpuBlocks, blockSize: BS, watermark: 0 });
      const sinks = ['p1', 'p2'].map((id, i) => {
        const sink = collector(clock);
        engine.submit(
          { requestId: id, tokenIds: range(100 * (i + 1), 12), sampling: { maxTokens: 12 } },
          sink,
        );
        return sink;
      });
      clock.runUntilIdle();
      return { engine, sinks };
    };
    const roomy = run(64);
    const tight = run(10);
    expect(roomy.engine.rankMetrics(0).preemptions).toBe(0);
    expect(tight.engine.rankMetrics(0).preemptions).toBeGreaterThan(0);
    expect(tight.engine.placement('p1')!.preemptions).toBeGreaterThan(0);
    for (let i = 0; i < 2; i++) {
      expect(tight.sinks[i].result?.reason).toBe('length');
      expect(tight.sinks[i].tokens).toHaveLength(12);
      expect(tight.sinks[i].tokens).toEqual(roomy.sinks[i].tokens);
    }
    // p2 (not preempted) finished before p1 (preempted and recomputed).
    expect(tight.sinks[1].result!.timing.finishedAt).toBeLessThan(tight.sinks[0].result!.timing.finishedAt);
    expect(tight.engine.rankMetrics(0).activeBlocks).toBe(0);
  });
});
