import { describe, expect, it } from 'vitest';
import { type BlockHashes, type KvBlock, KvManager } from '../../src/engine/kv-manager.ts';
import type { KvCacheEvent } from '../../src/kv/events.ts';

function chain(ids: number[]): BlockHashes {
  return { seqHashes: ids.map((i) => BigInt(i)), localHashes: ids.map((i) => BigInt(i + 1000)) };
}

function manager(capacity: number) {
  const events: KvCacheEvent[] = [];
  const kv = new KvManager({
    capacity,
    dpRank: 2,
    enablePrefixCaching: true,
    publishEvents: true,
    onEvent: (e) => events.push(e),
  });
  return { kv, events };
}

describe('KvManager', () => {
  it('follows the vLLM prefix-caching lifecycle (Dynamo mocker test, adapted)', () => {
    const { kv, events } = manager(10);
    const a: KvBlock[] = [];
    expect(kv.acquire(chain([0, 1, 2, 3, 4]), 0, 5, false, a)).toBe(0);
    const b: KvBlock[] = [];
    // Shares 0 and 1, adds 5 and 6 (a new run whose parent is block 1).
    expect(kv.acquire(chain([0, 1, 5, 6]), 0, 4, false, b)).toBe(2);
    expect([0n, 1n, 2n, 5n].map((h) => kv.refsOf(h))).toEqual([2, 2, 1, 1]);
    expect(events.map((e) => e.data)).toEqual([
      {
        kind: 'stored',
        parentHash: null,
        blocks: [0, 1, 2, 3, 4].map((i) => ({ blockHash: BigInt(i), tokensHash: BigInt(i + 1000) })),
      },
      {
        kind: 'stored',
        parentHash: 1n,
        blocks: [5, 6].map((i) => ({ blockHash: BigInt(i), tokensHash: BigInt(i + 1000) })),
      },
    ]);
    expect(events.map((e) => [e.eventId, e.dpRank])).toEqual([
      [0n, 2],
      [1n, 2],
    ]);
    kv.release(a);
    expect(kv).toMatchObject({ activeBlocks: 4, inactiveBlocks: 3 });
    kv.release(b);
    expect(kv).toMatchObject({ activeBlocks: 0, inactiveBlocks: 7 });
    // Reuse 0, 1, 2 and add 7, 8, 9, 10: 10 blocks in use, so one inactive block goes. Release
    // order made a's tail (4, then 3) least recently used.
    const c: KvBlock[] = [];
    expect(kv.acquire(chain([0, 1, 2, 7, 8, 9, 10]), 0, 7, false, c)).toBe(3);
    const removed = events.slice(2).filter((e) => e.data.kind === 'removed');
    expect(removed.map((e) => e.data)).toEqual([{ kind: 'removed', blockHashes: [4n] }]);
    expect(kv.usedBlocks).toBe(10);
    expect(kv.evictedBlocks).toBe(1);
  });

  it('is all or nothing when active blocks would exceed the capacity', () => {
    const { kv, events } = manager(4);
    const a: KvBlock[] = [];
    expect(kv.acquire(chain([1, 2, 3]), 0, 3, false, a)).toBe(0);
    const b: KvBlock[] = [];
    expect(kv.acquire(chain([1, 9]), 0, 2, true, b)).toBe(-1);
    expect(b).toHaveLength(0);
    expect(kv.refsOf(1n)).toBe(1);
    expect(events).toHaveLength(1);
    expect(kv.allocatePartial()).not.toBeNull();
    expect(kv.allocatePartial()).toBeNull();
  });

  it('promotes a partial block, or reuses a held block with the same hash', () => {
    const { kv, events } = manager(8);
    const first = kv.allocatePartial()!;
    const promoted = kv.promote(first, 42n, 4242n, 41n);
    expect(promoted).toBe(first);
    expect(events.at(-1)?.data).toEqual({
      kind: 'stored',
      parentHash: 41n,
      blocks: [{ blockHash: 42n, tokensHash: 4242n }],
    });
    const second = kv.allocatePartial()!;
    expect(kv.activeBlocks).toBe(2);
    const reused = kv.promote(second, 42n, 4242n, 41n);
    expect(reused).toBe(first);
    expect(kv.refsOf(42n)).toBe(2);
    expect(kv.activeBlocks).toBe(1);
    expect(events).toHaveLength(1);
  });

  it('clears only when nothing is active', () => {
    const { kv, events } = manager(8);
    const a: KvBlock[] = [];
    kv.acquire(chain([1, 2]), 0, 2, true, a);
    expect(kv.clear()).toBe(false);
    kv.release(a);
    expect(kv.inactiveBlocks).toBe(2); // the partial block was destroyed
    expect(kv.clear()).toBe(true);
    expect(events.at(-1)?.data).toEqual({ kind: 'cleared' });
    expect(kv.usedBlocks).toBe(0);
  });

  it('counts cached leading blocks only', () => {
    const { kv } = manager(8);
    kv.acquire(chain([1, 2, 3]), 0, 3, false, []);
    expect(kv.cachedPrefixBlocks([1n, 2n, 9n, 3n])).toBe(2);
    expect(kv.cachedPrefixBlocks([1n, 2n, 3n], 1)).toBe(1);
    expect(kv.cachedPrefixBlocks([7n])).toBe(0);
  });
});
