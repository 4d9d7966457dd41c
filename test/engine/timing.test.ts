import { describe, expect, it } from 'vitest';
import { InterpolatedPerfModel, PolynomialPerfModel } from '../../src/engine/perf-model.ts';
import { collector, harness, range } from './helpers.ts';

// Dynamo's mocker polynomials (reference §9), written out independently of the implementation.
const prefillMs = (t: number) => 4.209989e-7 * t * t + 1.518344e-2 * t + 16.50142;
const decodeMs = (p: number) => Math.max(1, -25.74 * p * p + 54.01 * p + 5.74);
const TOTAL_TOKENS = 16384 * 64;

describe('timing on a virtual clock', () => {
  it("an idle rank's TTFT for a 4k uncached prompt is prefill(4096) + one decode step", () => {
    const { clock, engine } = harness();
    const sink = collector(clock);
    engine.submit({ requestId: 'a', tokenIds: range(0, 4096), sampling: { maxTokens: 3 } }, sink);
    clock.runUntilIdle();
    const ttft = prefillMs(4096) + decodeMs(4096 / TOTAL_TOKENS);
    expect(sink.firstTokenAt).toBeCloseTo(ttft, 9);
    expect(engine.placement('a')!.firstTokenAt).toBeCloseTo(ttft, 9);
    // Each later token is one decode step over the grown context.
    const end = ttft + decodeMs(4097 / TOTAL_TOKENS) + decodeMs(4098 / TOTAL_TOKENS);
    expect(sink.result!.timing.finishedAt).toBeCloseTo(end, 9);
  });

  it('a cached prefix lowers TTFT to the cost of the uncached suffix', () => {
    const { clock, engine } = harness();
    const shared = range(0, 3072);
    engine.submit(
      { requestId: 'warm', tokenIds: [...shared, ...range(90_000, 1024)], sampling: { maxTokens: 1 } },
      collector(clock),
    );
    clock.runUntilIdle();
    const start = clock.now();
    const sink = collector(clock);
    engine.submit(
      { requestId: 'b', tokenIds: [...shared, ...range(70_000, 1024)], sampling: { maxTokens: 1 } },
      sink,
    );
    clock.runUntilIdle();
    expect(sink.result!.usage.cachedTokens).toBe(3072);
    const ttft = prefillMs(1024) + decodeMs(4096 / TOTAL_TOKENS);
    expect(sink.firstTokenAt - start).toBeCloseTo(ttft, 9);
    expect(ttft).toBeLessThan(prefillMs(4096));
  });

  it('divides simulated time by the speed-up ratio; 0 means no delay', () => {
    for (const [ratio, scale] of [
      [10, 0.1],
      [0, 0],
    ] as const) {
      const { clock, engine } = harness({ speedupRatio: ratio });
      const sink = collector(clock);
      engine.submit({ requestId: 'a', tokenIds: range(0, 4096), sampling: { maxTokens: 2 } }, sink);
      clock.runUntilIdle();
      expect(sink.firstTokenAt).toBeCloseTo((prefillMs(4096) + decodeMs(4096 / TOTAL_TOKENS)) * scale, 9);
      expect(sink.tokens).toHaveLength(2);
      // busyMs is GPU time, independent of the ratio.
      expect(engine.rankMetrics(0).busyMs).toBeGreaterThan(prefillMs(4096));
    }
  });

  it('chunked prefill splits a long prompt over iterations by the token budget', () => {
    const { clock, engine } = harness({ maxNumBatchedTokens: 2048 });
    const sink = collector(clock);
    engine.submit({ requestId: 'a', tokenIds: range(0, 5000), sampling: { maxTokens: 1 } }, sink);
    clock.runUntilIdle();
    const ttft = prefillMs(2048) + prefillMs(2048) + prefillMs(904) + decodeMs(5000 / TOTAL_TOKENS);
    expect(sink.firstTokenAt).toBeCloseTo(ttft, 9);
    expect(engine.rankMetrics(0).iterations).toBe(3);
  });

  it('batches prefills of concurrent arrivals into one step', () => {
    const { clock, engine } = harness();
    const sinks = [0, 1].map((i) => {
      const sink = collector(clock);
      engine.submit(
        { requestId: `r${i}`, tokenIds: range(i * 10_000, 1000), sampling: { maxTokens: 1 } },
        sink,
      );
      return sink;
    });
    clock.runUntilIdle();
    const ttft = prefillMs(2000) + decodeMs(2000 / TOTAL_TOKENS);
    for (const sink of sinks) expect(sink.firstTokenAt).toBeCloseTo(ttft, 9);
  });

  it('accepts a table-interpolated perf model', () => {
    const perfModel = new InterpolatedPerfModel({
      prefill: [
        [0, 10],
        [1000, 110],
        [5000, 610],
      ],
      decode: [
        [0, 5],
        [10_000, 15],
      ],
    });
    expect(perfModel.prefillMs(500)).toBeCloseTo(60, 9);
    expect(perfModel.prefillMs(3000)).toBeCloseTo(360, 9);
    expect(perfModel.prefillMs(6000)).toBeCloseTo(735, 9); // extrapolated
    expect(perfModel.decodeMs(5000, 1, 1)).toBeCloseTo(10, 9);
    expect(perfModel.decodeMs(5000, 1, 0)).toBe(0);
    const { clock, engine } = harness({ perfModel });
    const sink = collector(clock);
    engine.submit({ requestId: 'a', tokenIds: range(0, 3000), sampling: { maxTokens: 1 } }, sink);
    clock.runUntilIdle();
    expect(sink.firstTokenAt).toBeCloseTo(360 + (5 + 10 * (3000 / 10_000)), 9);
    expect(new PolynomialPerfModel().prefillMs(0)).toBe(0);
    expect(
      () =>
        new InterpolatedPerfModel({
          prefill: [[0, 1]],
          decode: [
            [0, 1],
            [1, 2],
          ],
        }),
    ).toThrow(RangeError);
  });
});
