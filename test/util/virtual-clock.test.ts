import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../src/util/virtual-clock.ts';

describe('VirtualClock', () => {
  it('fires timers in (time, insertion) order and jumps time to each', () => {
    const clock = new VirtualClock(1000);
    const fired: string[] = [];
    clock.setTimer(() => fired.push(`c@${clock.now()}`), 30);
    clock.setTimer(() => fired.push(`a@${clock.now()}`), 10);
    clock.setTimer(() => fired.push(`b1@${clock.now()}`), 20);
    clock.setTimer(() => fired.push(`b2@${clock.now()}`), 20);
    expect(clock.pending).toBe(4);
    expect(clock.runUntilIdle()).toBe(4);
    expect(fired).toEqual(['a@1010', 'b1@1020', 'b2@1020', 'c@1030']);
    expect(clock.now()).toBe(1030);
    expect(clock.pending).toBe(0);
  });

  it('skips cancelled timers and fires timers set by timers', () => {
    const clock = new VirtualClock();
    const fired: number[] = [];
    const cancelled = clock.setTimer(() => fired.push(-1), 5);
    clock.setTimer(() => {
      fired.push(clock.now());
      clock.setTimer(() => fired.push(clock.now()), 0);
      clock.setTimer(() => fired.push(clock.now()), 7);
    }, 10);
    cancelled.cancel();
    cancelled.cancel();
    expect(clock.pending).toBe(1);
    clock.runUntilIdle();
    expect(fired).toEqual([10, 10, 17]);
  });

  it('runUntil and advance stop at the target time', () => {
    const clock = new VirtualClock();
    const fired: number[] = [];
    for (const t of [5, 15, 25]) clock.setTimer(() => fired.push(t), t);
    expect(clock.runUntil(15)).toBe(2);
    expect(clock.now()).toBe(15);
    expect(clock.nextDue()).toBe(25);
    clock.advance(5);
    expect(clock.now()).toBe(20);
    expect(fired).toEqual([5, 15]);
    clock.advance(100);
    expect(fired).toEqual([5, 15, 25]);
    expect(clock.now()).toBe(120);
    expect(clock.nextDue()).toBeUndefined();
  });

  it('orders many random timers like a sort would', () => {
    const clock = new VirtualClock();
    const delays = Array.from({ length: 2000 }, (_, i) => (i * 7919) % 997);
    const fired: number[] = [];
    delays.forEach((d, i) => {
      clock.setTimer(() => fired.push(i), d);
    });
    clock.runUntilIdle();
    const expected = delays.map((d, i) => [d, i]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    expect(fired).toEqual(expected.map(([, i]) => i));
  });

  it('bounds a runaway timer loop', () => {
    const clock = new VirtualClock();
    const rearm = () => clock.setTimer(rearm, 1);
    rearm();
    expect(() => clock.runUntilIdle(100)).toThrow(/more than 100 timers/);
  });

  it('settle lets promise callbacks run between timers', async () => {
    const clock = new VirtualClock();
    const seen: number[] = [];
    clock.setTimer(() => {
      void Promise.resolve().then(() => clock.setTimer(() => seen.push(clock.now()), 5));
    }, 10);
    clock.setTimer(() => seen.push(-1), 100);
    await clock.settle({ until: 50 });
    expect(seen).toEqual([15]);
    expect(clock.now()).toBe(50);
    await clock.settle();
    expect(seen).toEqual([15, -1]);
  });
});
