import { describe, expect, it } from 'vitest';
import { RunQueue, runAll, truncate } from '../../src/util/run-all.ts';

describe('truncate', () => {
  it('shortens a list to the given length and leaves a shorter one as it is', () => {
    const list = [1, 2, 3, 4];
    truncate(list, 2);
    expect(list).toEqual([1, 2]);
    truncate(list, 5);
    expect(list).toEqual([1, 2]);
    truncate(list, 0);
    expect(list).toEqual([]);
  });
});

describe('runAll', () => {
  it('runs every item in order and empties the list', () => {
    const list = ['a', 'b', 'c'];
    const ran: string[] = [];
    runAll(list, (item) => ran.push(item));
    expect(ran).toEqual(['a', 'b', 'c']);
    expect(list).toEqual([]);
  });

  it('runs the items after one that throws and rethrows the first error', () => {
    const list = [1, 2, 3, 4];
    const ran: number[] = [];
    const run = (item: number): void => {
      ran.push(item);
      if (item % 2 === 0) throw new Error(`item ${item}`);
    };
    expect(() => runAll(list, run)).toThrow('item 2');
    expect(ran).toEqual([1, 2, 3, 4]);
    expect(list).toEqual([]);
  });
});

describe('RunQueue', () => {
  it('says which push is the first since the last drain', () => {
    const queue = new RunQueue<number>(() => {});
    expect(queue.push(1)).toBe(true);
    expect(queue.push(2)).toBe(false);
    queue.drain();
    expect(queue.push(3)).toBe(true);
  });

  it('runs what was queued before the drain; items queued while it runs wait for the next one', () => {
    const ran: string[] = [];
    const firsts: boolean[] = [];
    const queue: RunQueue<string> = new RunQueue<string>((item) => {
      ran.push(item);
      if (item === 'a') firsts.push(queue.push('later'));
    });
    queue.push('a');
    queue.push('b');
    queue.drain();
    expect(ran).toEqual(['a', 'b']);
    expect(firsts).toEqual([true]);
    queue.drain();
    expect(ran).toEqual(['a', 'b', 'later']);
    queue.drain();
    expect(ran).toEqual(['a', 'b', 'later']);
  });

  it('still empties and reuses its queues when an item throws', () => {
    const ran: number[] = [];
    const queue = new RunQueue<number>((item) => {
      ran.push(item);
      if (item === 1) throw new Error('boom');
    });
    queue.push(1);
    queue.push(2);
    expect(() => queue.drain()).toThrow('boom');
    expect(ran).toEqual([1, 2]);
    expect(queue.push(3)).toBe(true);
    queue.drain();
    expect(ran).toEqual([1, 2, 3]);
  });
});
