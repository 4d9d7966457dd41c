import { describe, expect, it } from 'vitest';
import { FREE_NODE, OWNER, PARENT, RECORD_STRIDE, RecordPool, ROOT } from '../../src/kv/radix/record-pool.ts';

describe('RecordPool', () => {
  it("puts a node's first entry in the node's own record and others in records of their own", () => {
    const pool = new RecordPool(4);
    const node = pool.allocNode(ROOT, 1, 2);
    const first = pool.allocEntry(node, 7, 10, 11);
    const second = pool.allocEntry(node, 8, 10, 11);
    expect(first).toBe(node);
    expect(second).not.toBe(node);
    expect(pool.isLiveNode(second)).toBe(false);
    expect(pool.liveNodes).toBe(1);
    expect(pool.data[first * RECORD_STRIDE + OWNER]).toBe(7);
    expect(pool.data[second * RECORD_STRIDE + OWNER]).toBe(8);
  });

  it('reuses a record only once both its node and its entry are gone', () => {
    const pool = new RecordPool(4);
    const node = pool.allocNode(ROOT, 1, 2);
    const entry = pool.allocEntry(node, 7, 10, 11);
    pool.freeEntry(entry);
    // The node still lives: its record is not free, but its entry part can be taken again.
    const other = pool.allocNode(ROOT, 3, 4);
    expect(other).not.toBe(node);
    expect(pool.allocEntry(node, 9, 12, 13)).toBe(node);
    pool.freeEntry(node);
    pool.freeNode(node);
    expect(pool.data[node * RECORD_STRIDE + PARENT]).toBe(FREE_NODE);
    expect(pool.data[node * RECORD_STRIDE + OWNER]).toBe(-1);
    expect(pool.allocNode(ROOT, 5, 6)).toBe(node);
  });

  it('frees an entry-only record with its entry', () => {
    const pool = new RecordPool(4);
    const node = pool.allocNode(ROOT, 1, 2);
    pool.allocEntry(node, 7, 10, 11);
    const extra = pool.allocEntry(node, 8, 10, 11);
    pool.freeEntry(extra);
    expect(pool.allocNode(ROOT, 3, 4)).toBe(extra);
  });

  it('hands a chain freed leaf first back root first, in ascending ids', () => {
    const pool = new RecordPool(4);
    const chain = [pool.allocNode(ROOT, 0, 0)];
    for (let i = 1; i < 6; i++) chain.push(pool.allocNode(chain[i - 1], i, 0));
    for (let i = chain.length - 1; i >= 0; i--) pool.freeNode(chain[i]);
    const again = [pool.allocNode(ROOT, 0, 0)];
    for (let i = 1; i < 6; i++) again.push(pool.allocNode(again[i - 1], i, 0));
    expect(again).toEqual(chain);
    expect(pool.capacity).toBeGreaterThanOrEqual(7);
  });

  it('keeps size class and flags per node through growth', () => {
    const pool = new RecordPool(2);
    const node = pool.allocNode(ROOT, 1, 2);
    pool.setOwnerClass(node, 3);
    pool.markMixedKeys(node);
    for (let i = 0; i < 100; i++) pool.allocNode(node, i, 0);
    expect(pool.ownerClass(node)).toBe(3);
    expect(pool.hasMixedKeys(node)).toBe(true);
    expect(pool.hasMixedKeys(node + 1)).toBe(false);
  });
});
