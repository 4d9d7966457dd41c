import { describe, expect, it } from 'vitest';
import { CancelSource } from '../../src/util/cancel.ts';
import { collector, drain, harness, range } from './helpers.ts';

describe('cancellation', () => {
  it.each([
    ['an AbortSignal', () => new AbortController()],
    ['a CancelSource', () => new CancelSource()],
  ])('an abort (through %s) frees the running request’s blocks and load at once', (_, cancellation) => {
    const { clock, engine } = harness({ dataParallelSize: 2 });
    const controller = cancellation();
    const sink = collector(clock);
    engine.submit(
      { requestId: 'a', tokenIds: range(0, 1000), sampling: { maxTokens: 1000 }, dpRank: 1 },
      sink,
      controller.signal,
    );
    clock.runUntil(200);
    expect(sink.tokens.length).toBeGreaterThan(5);
    expect(engine.rankMetrics(1).activeBlocks).toBeGreaterThan(0);
    expect(engine.load(1)).toBe(1);
    controller.abort();
    // No clock step in between: freed synchronously.
    expect(engine.rankMetrics(1)).toMatchObject({ activeBlocks: 0, running: 0, waiting: 0 });
    expect(engine.load(1)).toBe(0);
    expect(sink.result?.reason).toBe('cancelled');
    expect(sink.result?.usage.completionTokens).toBe(sink.tokens.length);
    const emitted = sink.tokens.length;
    clock.runUntilIdle();
    expect(sink.tokens).toHaveLength(emitted);
    expect(engine.placement('a')!.finishReason).toBe('cancelled');
  });

  it('cancels a waiting request and lets the next one in', () => {
    const { clock, engine } = harness({ maxNumSeqs: 1 });
    const first = collector(clock);
    const second = collector(clock);
    engine.submit({ requestId: 'a', tokenIds: range(0, 100), sampling: { maxTokens: 50 } }, first);
    engine.submit({ requestId: 'b', tokenIds: range(500, 100), sampling: { maxTokens: 50 } }, second);
    clock.runUntil(30);
    expect(engine.rankMetrics(0)).toMatchObject({ running: 1, waiting: 1 });
    expect(engine.cancel('b')).toBe(true);
    expect(engine.rankMetrics(0)).toMatchObject({ running: 1, waiting: 0 });
    expect(second.result?.reason).toBe('cancelled');
    expect(engine.cancel('b')).toBe(false);
    expect(engine.cancel('a')).toBe(true);
    expect(engine.rankMetrics(0)).toMatchObject({ running: 0, activeBlocks: 0 });
  });

  it('an already aborted signal finishes the request as cancelled', async () => {
    const { clock, engine } = harness();
    const controller = new AbortController();
    controller.abort();
    const chunks = await drain(
      engine.generate({ requestId: 'x', tokenIds: [1, 2, 3], sampling: { maxTokens: 4 } }, controller.signal),
    );
    clock.runUntilIdle();
    expect(chunks.at(-1)?.finishReason).toBe('cancelled');
    expect(engine.load(0)).toBe(0);
  });

  it('leaving the async iteration early cancels the request', async () => {
    const { clock, engine } = harness();
    const stream = engine.generate({ requestId: 'y', tokenIds: range(0, 200), sampling: { maxTokens: 100 } });
    clock.runUntil(100);
    for await (const chunk of stream) {
      expect(chunk.tokenIds.length).toBeGreaterThan(0);
      break;
    }
    expect(engine.load(0)).toBe(0);
    expect(engine.rankMetrics(0).activeBlocks).toBe(0);
    expect(engine.placement('y')!.finishReason).toBe('cancelled');
  });
});

describe('misbehaving consumers and cache flush', () => {
  it('a sink that throws ends its own request with an error; the rank keeps serving others', () => {
    const { clock, engine } = harness();
    const good = collector(clock);
    let finished: string | undefined;
    engine.submit(
      { requestId: 'bad', tokenIds: range(0, 100), sampling: { maxTokens: 10 } },
      {
        onToken() {
          throw new Error('consumer broke');
        },
        onFinish(result) {
          finished = result.error?.code;
        },
      },
    );
    engine.submit({ requestId: 'good', tokenIds: range(500, 100), sampling: { maxTokens: 10 } }, good);
    clock.runUntilIdle();
    expect(finished).toBe('ENGINE_SINK_FAILED');
    expect(good.tokens).toHaveLength(10);
    expect(good.result?.reason).toBe('length');
    expect(engine.rankMetrics(0).activeBlocks).toBe(0);
  });

  it('clearCache flushes every rank (cleared events) only when nothing is active', () => {
    const { clock, engine, events } = harness({ dataParallelSize: 2 });
    engine.submit({ requestId: 'a', tokenIds: range(0, 200), sampling: { maxTokens: 50 } }, collector(clock));
    clock.runUntil(1);
    expect(engine.clearCache()).toBe(false);
    clock.runUntilIdle();
    expect(engine.rankMetrics(0).inactiveBlocks).toBe(3);
    expect(engine.clearCache()).toBe(true);
    expect(events.filter((e) => e.data.kind === 'cleared').map((e) => e.dpRank)).toEqual([0, 1]);
    expect(engine.heldBlocks(0)).toEqual([]);
    expect(engine.localIndexer(0).size).toBe(0);
  });
});
