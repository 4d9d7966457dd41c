import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/util/clock.ts';

describe('ManualClock', () => {
  it('fires due timers in time order and skips cancelled ones', () => {
    const clock = new ManualClock(100);
    const fired: string[] = [];
    clock.setTimer(() => fired.push('b'), 20);
    clock.setTimer(() => fired.push('a'), 10);
    const c = clock.setTimer(() => fired.push('c'), 15);
    c.cancel();
    clock.advance(12);
    expect(fired).toEqual(['a']);
    expect(clock.now()).toBe(112);
    clock.advance(100);
    expect(fired).toEqual(['a', 'b']);
  });
});
