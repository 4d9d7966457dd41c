import { describe, expect, it } from 'vitest';
import { BlockHasher } from '../../src/tokens/block-hash.ts';
import { readPackedU64 } from '../../src/tokens/u64.ts';
import { collector, harness, range, storedEvents } from './helpers.ts';

const BS = 64;
const prefix = range(10_000, 4 * BS);
const promptA = [...prefix, ...range(50_000, 100)];
const promptB = [...prefix, ...range(60_000, 100)];

function sequenceHashes(tokens: number[]): bigint[] {
  const hasher = new BlockHasher({ blockSize: BS });
  const seq = hasher.sequenceHashes(hasher.localHashes(tokens));
  return Array.from({ length: seq.length / 2 }, (_, i) => readPackedU64(seq, i));
}

describe('prefix caching', () => {
  it('shares a 4-block prefix on the same rank: only the suffix is computed', () => {
    const { clock, engine, events } = harness({ dataParallelSize: 2 });
    const a = collector(clock);
    engine.submit({ requestId: 'a', tokenIds: promptA, sampling: { maxTokens: 2 }, dpRank: 0 }, a);
    clock.runUntilIdle();
    expect(a.result?.usage.cachedTokens).toBe(0);
    const storedA = storedEvents(events);
    expect(storedA).toHaveLength(1);
    expect(storedA[0].data.parentHash).toBeNull();
    expect(storedA[0].data.blocks.map((b) => b.blockHash)).toEqual(sequenceHashes(promptA));

    const b = collector(clock);
    engine.submit({ requestId: 'b', tokenIds: promptB, sampling: { maxTokens: 2 }, dpRank: 0 }, b);
    clock.runUntilIdle();
    expect(b.result?.usage).toEqual({
      promptTokens: promptB.length,
      completionTokens: 2,
      cachedTokens: 4 * BS,
    });
    const placement = engine.placement('b')!;
    expect(placement.cachedTokens).toBe(4 * BS);
    const storedB = storedEvents(events).slice(1);
    expect(storedB).toHaveLength(1);
    const hashesB = sequenceHashes(promptB);
    // Parent = the last shared block, which is A's 4th block.
    expect(storedB[0].data.parentHash).toBe(storedA[0].data.blocks[3].blockHash);
    expect(storedB[0].data.parentHash).toBe(hashesB[3]);
    expect(storedB[0].data.blocks.map((x) => x.blockHash)).toEqual([hashesB[4]]);
    expect(storedB[0].dpRank).toBe(0);
    expect(storedB[0].eventId).toBe(1n);
  });

  it('does not share across ranks: each rank has its own cache and event ids', () => {
    const { clock, engine, events } = harness({ dataParallelSize: 2 });
    engine.submit(
      { requestId: 'a', tokenIds: promptA, sampling: { maxTokens: 2 }, dpRank: 0 },
      collector(clock),
    );
    clock.runUntilIdle();
    const b = collector(clock);
    engine.submit({ requestId: 'b', tokenIds: promptB, sampling: { maxTokens: 2 }, dpRank: 1 }, b);
    clock.runUntilIdle();
    expect(b.result?.usage.cachedTokens).toBe(0);
    const onRank1 = storedEvents(events, 1);
    expect(onRank1).toHaveLength(1);
    expect(onRank1[0].eventId).toBe(0n);
    expect(onRank1[0].data.parentHash).toBeNull();
    expect(onRank1[0].data.blocks).toHaveLength(5);
    expect(engine.rankMetrics(1).prefixHitRate).toBe(0);
    expect(engine.rankMetrics(0).prefixHitRate).toBe(0);
  });

  it('reports the running prefix hit rate per rank', () => {
    const { clock, engine } = harness();
    engine.submit({ requestId: 'a', tokenIds: promptA, sampling: { maxTokens: 1 } }, collector(clock));
    clock.runUntilIdle();
    engine.submit({ requestId: 'b', tokenIds: promptB, sampling: { maxTokens: 1 } }, collector(clock));
    clock.runUntilIdle();
    expect(engine.rankMetrics(0).prefixHitRate).toBeCloseTo((0 + (4 * BS) / promptB.length) / 2, 10);
  });

  it('blocks completed while decoding are hashed like the whole sequence and published', () => {
    const bs = 16;
    const { clock, engine, events } = harness({ blockSize: bs });
    const prompt = range(1, 40);
    const sink = collector(clock);
    engine.submit({ requestId: 'g', tokenIds: prompt, sampling: { maxTokens: 30 } }, sink);
    clock.runUntilIdle();
    const all = [...prompt, ...sink.tokens];
    const hasher = new BlockHasher({ blockSize: bs });
    const local = hasher.localHashes(all);
    const seq = hasher.sequenceHashes(local);
    const stored = storedEvents(events);
    // Admission stores the 2 full prompt blocks; decoding completes blocks 3 and 4 one by one.
    expect(stored.map((e) => e.data.blocks.length)).toEqual([2, 1, 1]);
    const published = stored.flatMap((e) => e.data.blocks);
    expect(published.map((b) => b.blockHash)).toEqual([0, 1, 2, 3].map((i) => readPackedU64(seq, i)));
    expect(published.map((b) => b.tokensHash)).toEqual([0, 1, 2, 3].map((i) => readPackedU64(local, i)));
    expect(stored[1].data.parentHash).toBe(readPackedU64(seq, 1));
    expect(stored[2].data.parentHash).toBe(readPackedU64(seq, 2));
  });

  it('with prefix caching off nothing is shared or published', () => {
    const { clock, engine, events } = harness({ enablePrefixCaching: false });
    engine.submit({ requestId: 'a', tokenIds: promptA, sampling: { maxTokens: 2 } }, collector(clock));
    clock.runUntilIdle();
    const b = collector(clock);
    engine.submit({ requestId: 'b', tokenIds: promptB, sampling: { maxTokens: 2 } }, b);
    clock.runUntilIdle();
    expect(b.result?.usage.cachedTokens).toBe(0);
    expect(events).toHaveLength(0);
    expect(engine.rankMetrics(0).inactiveBlocks).toBe(0);
  });
});

describe('Uint32Array prompts (trace replay)', () => {
  it('hash, cache and decode exactly like number[] prompts', () => {
    const { clock, engine, events } = harness();
    const a = collector(clock);
    engine.submit(
      {
        requestId: 'a',
        tokenIds: Uint32Array.from(promptA) as unknown as number[],
        sampling: { maxTokens: 3, seed: 5 },
      },
      a,
    );
    clock.runUntilIdle();
    const b = collector(clock);
    engine.submit({ requestId: 'b', tokenIds: promptA, sampling: { maxTokens: 3, seed: 5 } }, b);
    clock.runUntilIdle();
    expect(storedEvents(events)[0].data.blocks.map((x) => x.blockHash)).toEqual(sequenceHashes(promptA));
    expect(b.result?.usage.cachedTokens).toBe(5 * BS);
    expect(b.tokens).toEqual(a.tokens);
  });
});
