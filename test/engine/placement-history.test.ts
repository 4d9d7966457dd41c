import { describe, expect, it } from 'vitest';
import { PlacementHistory } from '../../src/engine/placement-history.ts';

describe('PlacementHistory', () => {
  it('keeps the last `limit` entries, evicting the oldest first', () => {
    const history = new PlacementHistory<number>(3);
    for (let i = 0; i < 5; i++) history.set(`r${i}`, i);
    expect(history.size).toBe(3);
    expect(history.get('r0')).toBeUndefined();
    expect(history.get('r1')).toBeUndefined();
    expect([history.get('r2'), history.get('r3'), history.get('r4')]).toEqual([2, 3, 4]);
  });

  it('an id recorded again holds its newest value, and its older slot does not evict it', () => {
    const history = new PlacementHistory<string>(3);
    history.set('a', 'first');
    history.set('b', 'b');
    history.set('a', 'second');
    expect(history.get('a')).toBe('second');
    expect(history.size).toBe(2);
    history.set('c', 'c'); // overwrites a's first slot: a stays
    expect(history.get('a')).toBe('second');
    history.set('d', 'd'); // evicts b
    expect(history.get('b')).toBeUndefined();
    expect(history.get('a')).toBe('second');
    history.set('e', 'e'); // evicts a (its newest slot)
    expect(history.get('a')).toBeUndefined();
    expect(history.size).toBe(3);
  });

  it('remembers nothing with a limit of 0', () => {
    const history = new PlacementHistory<number>(0);
    history.set('a', 1);
    expect(history.get('a')).toBeUndefined();
    expect(history.size).toBe(0);
  });
});
