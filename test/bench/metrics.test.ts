import { describe, expect, it } from 'vitest';
import { PolicyMetrics } from '../../src/bench/metrics.ts';
import { cdfPoints, percentile, SampleBuffer, sortedCopy } from '../../src/bench/stats.ts';

describe('order statistics', () => {
  it('interpolates percentiles between closest ranks', () => {
    const s = sortedCopy([40, 10, 30, 20]);
    expect(Array.from(s)).toEqual([10, 20, 30, 40]);
    expect(percentile(s, 0)).toBe(10);
    expect(percentile(s, 50)).toBe(25);
    expect(percentile(s, 100)).toBe(40);
    expect(percentile(s, 90)).toBeCloseTo(37, 10);
    expect(percentile(new Float64Array(0), 50)).toBe(0);
    expect(percentile([7], 99)).toBe(7);
    expect(cdfPoints(s, 4)).toEqual([10, 17.5, 25, 32.5, 40]);
  });

  it('sorts numerically, not as strings', () => {
    const buf = new SampleBuffer();
    for (const v of [100, 9, 1000, 20]) buf.push(v);
    expect(Array.from(buf.sorted())).toEqual([9, 20, 100, 1000]);
    for (let i = 0; i < 5000; i++) buf.push(i);
    expect(buf.length).toBe(5004);
  });
});

describe('per-policy metrics', () => {
  it('measures TTFT, inter-token gaps, end-to-end latency, throughput, hit rate and imbalance', () => {
    const m = new PolicyMetrics('kv', 2);
    m.arrived(0, 100, '1:0');
    m.arrived(1, 200, '1:1');
    m.tokens(0, 150, 1); // TTFT 50
    m.tokens(0, 160, 1); // gap 10
    m.tokens(0, 180, 2); // two tokens in one chunk: gaps of 10 each
    m.finished(0, 180, 1000, 600);
    m.tokens(1, 400, 1); // TTFT 200
    m.finished(1, 400, 1000, 0);
    const r = m.summarise(
      [
        { workerId: '1', dpRank: 0, busyMs: 300, preemptions: 1 },
        { workerId: '1', dpRank: 1, busyMs: 100, preemptions: 2 },
      ],
      0,
    );
    expect(r.completed).toBe(2);
    expect(r.ttftMs.p50).toBe(125);
    expect(r.ttftMs.mean).toBe(125);
    expect(r.itlMs.p50).toBe(10);
    expect(r.itlMs.p99).toBe(10);
    expect(r.e2eMs.p99).toBeCloseTo(80 + (200 - 80) * 0.99, 3);
    expect(r.makespanMs).toBe(300);
    expect(r.outputTokensPerS).toBeCloseTo((5 * 1000) / 300, 3);
    expect(r.hitRate).toBe(0.3);
    expect(r.loadImbalance).toBe(1.5);
    expect(r.preemptions).toBe(3);
    expect(r.ranks.map((x) => x.requests)).toEqual([1, 1]);
    expect(r.ttftCdfMs).toHaveLength(101);
    expect(r.ttftCdfMs[0]).toBe(50);
    expect(r.ttftCdfMs[100]).toBe(200);
  });

  it('leaves failed requests out of the latency figures', () => {
    const m = new PolicyMetrics('random', 2);
    m.arrived(0, 0, '1:0');
    m.arrived(1, 0, '1:0');
    m.tokens(0, 10, 1);
    m.finished(0, 20, 100, 0);
    m.failedRequest(1, 5);
    const r = m.summarise([{ workerId: '1', dpRank: 0, busyMs: 0, preemptions: 0 }], 2);
    expect(r.completed).toBe(1);
    expect(r.failed).toBe(1);
    expect(r.ttftMs.p99).toBe(10);
    expect(r.kvEventErrors).toBe(2);
    expect(r.loadImbalance).toBe(1);
  });
});
