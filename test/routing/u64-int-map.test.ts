import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { U64IntMap } from '../../src/routing/u64-int-map.ts';

const key = (lo: number, hi: number) => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

describe('U64IntMap', () => {
  it('keeps all 64 bits: keys differing only in the high half are distinct', () => {
    const map = new U64IntMap(4);
    map.set(7, 0, 1);
    map.set(7, 1, 2);
    map.set(7, 0x8000_0000, 3);
    expect(map.get(7, 0)).toBe(1);
    expect(map.get(7, 1)).toBe(2);
    expect(map.get(7, 0x8000_0000)).toBe(3);
    expect(map.get(7, 2)).toBe(-1);
    expect(map.size).toBe(3);
  });

  it('matches a Map<bigint, number> under random set/delete sequences (growth and backward shift)', () => {
    const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
    // A small key space forces collisions, overwrites and deletes of present keys.
    const smallKey = fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 3 }));
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('set' as const),
        k: fc.oneof(smallKey, fc.tuple(u32, u32)),
        v: fc.nat(1e6),
      }),
      fc.record({ kind: fc.constant('delete' as const), k: smallKey }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const map = new U64IntMap(2);
        const model = new Map<bigint, number>();
        for (const o of ops) {
          const [lo, hi] = o.k;
          if (o.kind === 'set') {
            map.set(lo, hi, o.v);
            model.set(key(lo, hi), o.v);
          } else {
            expect(map.delete(lo, hi)).toBe(model.delete(key(lo, hi)));
          }
        }
        expect(map.size).toBe(model.size);
        for (const [k, v] of model) expect(map.get(Number(k & 0xffff_ffffn), Number(k >> 32n))).toBe(v);
        for (let lo = 0; lo <= 40; lo++)
          for (let hi = 0; hi <= 3; hi++) expect(map.get(lo, hi)).toBe(model.get(key(lo, hi)) ?? -1);
      }),
      { numRuns: 200 },
    );
  });
});
