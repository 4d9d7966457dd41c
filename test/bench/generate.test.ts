import { describe, expect, it } from 'vitest';
import { generateTrace } from '../../src/bench/generate.ts';
import { formatTrace, parseTrace } from '../../src/bench/trace.ts';

describe('synthetic workload generator', () => {
  it('is deterministic per seed and writes valid Mooncake lines', () => {
    const a = formatTrace(
      generateTrace({ seed: 5, arrivals: 50, conversations: 3, bestOf: 4, bestOfFraction: 0.2 }),
    );
    const b = formatTrace(
      generateTrace({ seed: 5, arrivals: 50, conversations: 3, bestOf: 4, bestOfFraction: 0.2 }),
    );
    const c = formatTrace(
      generateTrace({ seed: 6, arrivals: 50, conversations: 3, bestOf: 4, bestOfFraction: 0.2 }),
    );
    expect(a).toBe(b);
    expect(a).not.toBe(c);
    expect(parseTrace(a).requests.length).toBeGreaterThanOrEqual(50);
  });

  it('builds shared-prefix groups: every prompt starts with one of N system prompts', () => {
    const trace = generateTrace({ seed: 1, arrivals: 100, groups: 4, prefixBlocks: 6, suffixBlocks: 3 });
    const prefixes = new Set(trace.map((r) => r.hashIds.slice(0, 6).join(',')));
    expect(prefixes.size).toBe(4);
    const suffixes = trace.map((r) => r.hashIds.slice(6).join(','));
    expect(new Set(suffixes).size).toBe(100);
    for (const r of trace) {
      expect(r.hashIds).toHaveLength(9);
      expect(r.inputLength).toBeGreaterThan(8 * 512);
      expect(r.inputLength).toBeLessThanOrEqual(9 * 512);
    }
  });

  it('extends each conversation turn from the previous turn', () => {
    const trace = generateTrace({
      seed: 2,
      arrivals: 60,
      groups: 2,
      prefixBlocks: 2,
      conversations: 1,
      conversationFraction: 1,
      turns: 3,
      turnBlocks: 2,
    });
    // One conversation at a time: turns 1, 2, 3 then a new conversation.
    for (let i = 0; i + 2 < trace.length; i += 3) {
      const [t1, t2, t3] = trace.slice(i, i + 3);
      expect(t1.hashIds).toHaveLength(4);
      expect(t2.hashIds.slice(0, 4)).toEqual(t1.hashIds);
      expect(t3.hashIds.slice(0, 6)).toEqual(t2.hashIds);
      expect(t3.hashIds).toHaveLength(8);
    }
  });

  it('emits best-of-N bursts as N identical prompts at one timestamp', () => {
    const trace = generateTrace({ seed: 3, arrivals: 40, bestOf: 5, bestOfFraction: 1 });
    expect(trace).toHaveLength(200);
    for (let i = 0; i < trace.length; i += 5) {
      const burst = trace.slice(i, i + 5);
      expect(new Set(burst.map((r) => r.timestamp)).size).toBe(1);
      expect(new Set(burst.map((r) => `${r.inputLength}:${r.hashIds.join(',')}`)).size).toBe(1);
    }
    expect(trace[5].timestamp).toBeGreaterThan(trace[0].timestamp);
  });

  it('spaces arrivals as a Poisson process at the given rate', () => {
    const trace = generateTrace({ seed: 4, arrivals: 4000, rate: 20 });
    const span = trace[trace.length - 1].timestamp - trace[0].timestamp;
    const meanGapMs = span / (trace.length - 1);
    expect(meanGapMs).toBeGreaterThan(45);
    expect(meanGapMs).toBeLessThan(55);
    const gaps = trace.slice(1).map((r, i) => r.timestamp - trace[i].timestamp);
    // Exponential gaps: about 1 - 1/e of them are shorter than the mean.
    const short = gaps.filter((g) => g < 50).length / gaps.length;
    expect(short).toBeGreaterThan(0.58);
    expect(short).toBeLessThan(0.68);
  });

  it('rejects bad options', () => {
    expect(() => generateTrace({ rate: 0 })).toThrow();
    expect(() => generateTrace({ groups: 0 })).toThrow();
    expect(() => generateTrace({ bogus: 1 } as never)).toThrow();
  });
});
