import { describe, expect, it } from 'vitest';
import { PlacementHistory } from '../../src/engine/placement-history.ts';

const entry = (requestId: string, n: number) => ({ requestId, n });

describe('PlacementHistory', () => {
  it('keeps the last `limit` entries, evicting the oldest first', () => {
    const history = new PlacementHistory<ReturnType<typeof entry>>(3);
    for (let i = 0; i < 5; i++) history.add(entry(`r${i}`, i));
    expect(history.get('r0')).toBeUndefined();
    expect(history.get('r1')).toBeUndefined();
    expect([history.get('r2')?.n, history.get('r3')?.n, history.get('r4')?.n]).toEqual([2, 3, 4]);
  });

  it('an id recorded again answers with its newest entry', () => {
    const history = new PlacementHistory<ReturnType<typeof entry>>(3);
    history.add(entry('a', 1));
    history.add(entry('b', 2));
    history.add(entry('a', 3));
    expect(history.get('a')?.n).toBe(3);
    history.add(entry('c', 4)); // evicts a's first entry
    expect(history.get('a')?.n).toBe(3);
    history.add(entry('d', 5));
    history.add(entry('e', 6)); // evicts a's newest entry
    expect(history.get('a')).toBeUndefined();
    expect(history.get('e')?.n).toBe(6);
  });

  it('answers undefined before anything is recorded, and remembers nothing with a limit of 0', () => {
    expect(new PlacementHistory<ReturnType<typeof entry>>(4).get('a')).toBeUndefined();
    const none = new PlacementHistory<ReturnType<typeof entry>>(0);
    none.add(entry('a', 1));
    expect(none.get('a')).toBeUndefined();
  });
});
