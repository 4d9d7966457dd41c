import { describe, expect, it } from 'vitest';
import { PrefixCacheOracle } from '../../src/bench/oracle.ts';
import { type TraceRequest, TraceTokenExpander } from '../../src/bench/trace.ts';
import { U64Set } from '../../src/bench/u64-set.ts';

const expander = new TraceTokenExpander();
const tokens = (inputLength: number, hashIds: number[]): Uint32Array =>
  expander.expand({ timestamp: 0, inputLength, outputLength: 1, hashIds } satisfies TraceRequest);

describe('infinite-cache oracle', () => {
  it('counts a block as a hit when an earlier request had the same prefix', () => {
    const oracle = new PrefixCacheOracle(64);
    expect(oracle.observe(tokens(1024, [1, 2]))).toBe(0);
    // Same first 512-token block, then a new one: 8 blocks of 64 hit.
    expect(oracle.observe(tokens(1024, [1, 3]))).toBe(512);
    // Identical prompt, the partial tail (1000 - 960 = 40 tokens) is never a full block.
    expect(oracle.observe(tokens(1000, [1, 2]))).toBe(960);
    // The same block after a different prefix is not a prefix hit.
    expect(oracle.observe(tokens(1024, [9, 2]))).toBe(0);
    expect(oracle.promptTokens).toBe(1024 * 3 + 1000);
    expect(oracle.hitTokens).toBe(512 + 960);
    expect(oracle.hitRate).toBeCloseTo((512 + 960) / (1024 * 3 + 1000), 12);
    expect(oracle.distinctBlocks).toBe(16 + 8 + 16);
  });

  it('works at any block size', () => {
    const oracle = new PrefixCacheOracle(100);
    oracle.observe(tokens(1024, [1, 2]));
    // 512 shared tokens hold 5 full blocks of 100.
    expect(oracle.observe(tokens(1024, [1, 7]))).toBe(500);
  });

  it('starts at zero', () => {
    expect(new PrefixCacheOracle(16).hitRate).toBe(0);
  });
});

describe('U64Set', () => {
  it('adds, finds and grows, keeping every 64-bit value distinct', () => {
    const set = new U64Set(4);
    for (let i = 0; i < 5000; i++) expect(set.add(i * 7919, i & 3)).toBe(true);
    expect(set.add(0, 0)).toBe(false);
    expect(set.size).toBe(5000);
    expect(set.has(7919 * 10, 2)).toBe(true);
    expect(set.has(7919 * 10, 3)).toBe(false);
    expect(set.add(0xffffffff, 0xffffffff)).toBe(true);
    expect(set.has(-1, -1)).toBe(true);
  });
});
