import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LoadOrder } from '../../src/routing/load-order.ts';

describe('LoadOrder', () => {
  it('keeps owners sorted by key under sets, moves and deletes', () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('set' as const),
        owner: fc.integer({ min: 0, max: 40 }),
        key: fc.integer({ min: 0, max: 12 }),
      }),
      fc.record({ kind: fc.constant('delete' as const), owner: fc.integer({ min: 0, max: 40 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const order = new LoadOrder();
        const model = new Map<number, number>();
        for (const o of ops) {
          if (o.kind === 'set') {
            order.set(o.owner, o.key / 4);
            model.set(o.owner, o.key / 4);
          } else {
            order.delete(o.owner);
            model.delete(o.owner);
          }
          expect(order.count).toBe(model.size);
          const listed = Array.from(order.owners.subarray(0, order.count));
          expect(new Set(listed)).toEqual(new Set(model.keys()));
          for (let i = 1; i < listed.length; i++)
            expect(model.get(listed[i - 1])!).toBeLessThanOrEqual(model.get(listed[i])!);
          for (let i = 0; i < listed.length; i++) expect(order.sortedKeys[i]).toBe(model.get(listed[i]));
          for (const [owner, key] of model) {
            expect(order.has(owner)).toBe(true);
            expect(order.keyByOwner[owner]).toBe(key);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
