import { describe, expect, it } from 'vitest';
import { OwnerTable } from '../../src/kv/owners.ts';

describe('OwnerTable', () => {
  it('interns (worker, rank) pairs densely and keeps rank 0 distinct', () => {
    const owners = new OwnerTable();
    const a0 = owners.intern(7n, 0);
    const a1 = owners.intern(7n, 1);
    const b0 = owners.intern(18446744073709551615n, 0);
    expect(new Set([a0, a1, b0]).size).toBe(3);
    expect(owners.intern(7n, 0)).toBe(a0);
    expect(owners.pairOf(b0)).toEqual({ workerId: 18446744073709551615n, dpRank: 0 });
    expect(owners.find(7n, 2)).toBe(-1);
  });

  it('releases every rank of a worker and reuses the ids', () => {
    const owners = new OwnerTable();
    for (let r = 0; r < 4; r++) owners.intern(1n, r);
    owners.intern(2n, 0);
    const released = owners.releaseWorker(1n);
    expect(released.sort()).toEqual([0, 1, 2, 3]);
    expect(owners.ownersOf(1n)).toEqual([]);
    expect([...owners.live()]).toEqual([4]);
    expect(released).toContain(owners.intern(3n, 0));
  });
});
